"""A throwaway Sentinel topology on loopback, for tests.

:func:`start_sentinel` starts one primary, one replica (``replicaof`` the
primary) and three sentinels that monitor the primary under one service name
with a quorum of 2, each process on a free ``127.0.0.1`` port in its own
temporary directory, and waits until every sentinel knows the replica and the
two other sentinels, so that a failover can happen. The returned
:class:`LocalSentinel` kills the primary by PID and waits for the sentinels
to promote the replica; :meth:`LocalSentinel.stop` kills every process by
PID, and a finalizer does the same at interpreter exit.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from pevensie_redis.testing.binaries import find_server_binary, free_port
from pevensie_redis.testing.cluster import (
    HOST,
    NodeProcess,
    TopologyError,
    base_settings,
    find_tls_cluster_binaries,
    retry_on_port_clash,
    start_nodes,
    tls_client_options,
    tls_settings,
    wait_until,
    write_config,
)
from pevensie_redis.testing.tls import TLSMaterial

__all__ = ["LocalSentinel", "start_sentinel"]

SERVICE_NAME = "pevensie"


def _kill_all(nodes: list[NodeProcess], directory: str) -> None:
    for node in nodes:
        node.kill()
    shutil.rmtree(directory, ignore_errors=True)


@dataclass(eq=False)
class LocalSentinel:
    """A running primary, replica and three sentinels, built by :func:`start_sentinel`."""

    primary: NodeProcess
    replica: NodeProcess
    sentinel_nodes: list[NodeProcess]
    service_name: str
    directory: str
    password: str | None = field(default=None, repr=False)
    _finalizer: weakref.finalize[Any, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Runs stop() at interpreter exit too (weakref.finalize registers with atexit).
        self._finalizer = weakref.finalize(
            self, _kill_all, [self.primary, self.replica, *self.sentinel_nodes], self.directory
        )

    def __enter__(self) -> LocalSentinel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every sentinel."""
        return [node.address for node in self.sentinel_nodes]

    @property
    def data_nodes(self) -> list[NodeProcess]:
        """The two data nodes, first the one that started as primary."""
        return [self.primary, self.replica]

    def reported_primary(self) -> tuple[str, int] | None:
        """Return the primary's address as the first answering sentinel reports it."""
        for node in self.sentinel_nodes:
            if not node.alive:
                continue
            try:
                with node.client() as client:
                    answer = client.execute_command(
                        "SENTINEL GET-MASTER-ADDR-BY-NAME", self.service_name
                    )
            except redis.RedisError:
                continue
            if answer:
                return str(answer[0]), int(answer[1])
        return None

    def current_primary(self) -> NodeProcess:
        """Return the data node the sentinels currently report as primary."""
        address = self.reported_primary()
        for node in self.data_nodes:
            if address == node.address:
                return node
        raise TopologyError(f"the sentinels report no known primary ({address})")

    def kill_primary(self) -> NodeProcess:
        """Kill the current primary by PID (SIGKILL) and return it."""
        node = self.current_primary()
        node.kill()
        return node

    def wait_for_failover(self, old: NodeProcess, timeout: float = 30.0) -> NodeProcess:
        """Wait until the sentinels report a primary other than ``old`` that says it is one."""
        promoted: list[NodeProcess] = []

        def failed_over() -> bool:
            node = self.current_primary()
            if node is old or not node.alive:
                return False
            with node.client() as client:
                if client.execute_command("ROLE")[0] != "master":
                    return False
            promoted[:] = [node]
            return True

        wait_until(failed_over, timeout, f"the sentinels to replace {old.name}")
        return promoted[0]

    def restart(self, node: NodeProcess, timeout: float = 15.0) -> None:
        """Start a killed data node again; the sentinels turn it into a replica."""
        start_nodes([node], timeout)

    def stop(self) -> None:
        """Kill every process by PID and remove their directories."""
        if self._finalizer is not None:
            self._finalizer()


def _replica_attached(replica: NodeProcess) -> bool:
    with replica.client() as client:
        return bool(client.info("replication").get("master_link_status") == "up")


def _sentinels_ready(topology: LocalSentinel) -> bool:
    for node in topology.sentinel_nodes:
        with node.client() as client:
            state = client.sentinel_master(topology.service_name)
        if int(state.get("num-other-sentinels", 0)) != len(topology.sentinel_nodes) - 1:
            return False
        if int(state.get("num-slaves", 0)) < 1:
            return False
    return _replica_attached(topology.replica)


def start_sentinel(
    *,
    service_name: str = SERVICE_NAME,
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 3000,
    password: str | None = None,
    tls: TLSMaterial | None = None,
    timeout: float = 30.0,
    binaries: tuple[str, str] | None = None,
) -> LocalSentinel:
    """Start a primary, a replica and three sentinels monitoring them as ``service_name``.

    ``down_after_ms`` is how long the primary must be silent before a
    sentinel considers it down; with ``password`` the data nodes require it
    (the sentinels are told it). With ``tls``, every process, sentinels
    included, speaks only TLS (the binary must support it: Debian's
    ``redis-server`` does). Raises :class:`TopologyError` when the topology
    does not settle within ``timeout`` seconds; nothing is left running then.
    """
    return retry_on_port_clash(
        lambda: _start_sentinel_once(
            service_name=service_name,
            down_after_ms=down_after_ms,
            failover_timeout_ms=failover_timeout_ms,
            password=password,
            tls=tls,
            timeout=timeout,
            binaries=binaries,
        )
    )


def _start_sentinel_once(
    *,
    service_name: str,
    down_after_ms: int,
    failover_timeout_ms: int,
    password: str | None,
    tls: TLSMaterial | None,
    timeout: float,
    binaries: tuple[str, str] | None,
) -> LocalSentinel:
    if binaries:
        server = binaries[0]
    elif tls:
        server = find_tls_cluster_binaries()[0]
    else:
        server = find_server_binary().path
    tls_options = tls_client_options(tls) if tls else {}
    directory = tempfile.mkdtemp(prefix="pevensie-sentinel-")

    def node(name: str, extra: list[tuple[str, str]], sentinel: bool = False) -> NodeProcess:
        port = free_port()
        node_dir = Path(directory) / name
        node_dir.mkdir()
        settings = base_settings(node_dir, port, None if sentinel else password)
        if sentinel:
            keep = ("port", "bind", "dir", "daemonize")
            settings = [(name, value) for name, value in settings if name in keep]
        if tls:
            settings += tls_settings(tls, port, cluster=False)
        write_config(node_dir / "node.conf", [*settings, *extra])
        argv = [server, str(node_dir / "node.conf"), *(["--sentinel"] if sentinel else [])]
        return NodeProcess(
            name,
            port,
            node_dir,
            argv,
            None if sentinel else password,
            client_options=tls_options,
        )

    primary = node("primary", [])
    replica = node("replica", [("replicaof", f"{HOST} {primary.port}")])
    monitor = [
        ("sentinel monitor", f"{service_name} {HOST} {primary.port} 2"),
        ("sentinel down-after-milliseconds", f"{service_name} {down_after_ms}"),
        ("sentinel failover-timeout", f"{service_name} {failover_timeout_ms}"),
        ("sentinel parallel-syncs", f"{service_name} 1"),
    ]
    if password is not None:
        monitor.append(("sentinel auth-pass", f"{service_name} {password}"))
    sentinels = [node(f"sentinel{index}", monitor, sentinel=True) for index in range(3)]
    topology = LocalSentinel(primary, replica, sentinels, service_name, directory, password)
    try:
        start_nodes([primary, replica], timeout)
        # Sentinels learn of replicas from the primary's INFO, which they poll only
        # every 10 s: start them once the replica is attached, so the first poll sees it.
        wait_until(
            lambda: _replica_attached(replica), timeout, "the replica to sync with the primary"
        )
        start_nodes(sentinels, timeout)
        wait_until(
            lambda: _sentinels_ready(topology),
            timeout,
            "the sentinels to discover each other and the replica",
        )
    except BaseException:
        topology.stop()
        raise
    return topology
