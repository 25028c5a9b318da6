"""A throwaway Sentinel topology on loopback, for tests.

:func:`start_sentinel` starts one primary, one replica (``replicaof`` the
primary) and three sentinels that monitor the primary under one service name
with a quorum of 2, each process on a free ``127.0.0.1`` port in its own
directory, and waits until every sentinel knows the replica and the two other
sentinels, so that a failover can happen. The returned :class:`LocalSentinel`
kills the primary by PID and waits for the sentinels to promote the replica;
:meth:`LocalSentinel.stop` kills every process by PID, and a finalizer does
the same at interpreter exit. A topology shared by the test processes of a run
is handed over with :meth:`LocalSentinel.release` (see
:mod:`pevensie_test_support.shared`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from pevensie_redis.testing import ProcessServer, RedisServer, TLSMaterial, find_server_binary
from pevensie_test_support.nodes import (
    HOST,
    SETTLE_TIMEOUT,
    OwnedTopology,
    TopologyError,
    find_tls_binaries_with_cli,
    new_node,
    retry_on_port_clash,
    start_nodes,
    wait_until,
)

__all__ = ["SERVICE_NAME", "LocalSentinel", "start_sentinel"]

SERVICE_NAME = "pevensie"


@dataclass(eq=False)
class LocalSentinel(OwnedTopology):
    """A running primary, replica and three sentinels, built by :func:`start_sentinel`.

    Its nodes are :class:`~pevensie_redis.testing.ProcessServer` objects, or,
    on a topology shared by a run's test processes, handles that cannot kill,
    pause or restart a node (:class:`~pevensie_test_support.shared.SharedNode`).
    """

    primary: RedisServer
    replica: RedisServer
    sentinel_nodes: list[RedisServer]
    service_name: str
    directory: str
    password: str | None = field(default=None, repr=False)

    def processes(self) -> list[RedisServer]:
        """The primary, the replica and the sentinels."""
        return [self.primary, self.replica, *self.sentinel_nodes]

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every sentinel."""
        return [node.address for node in self.sentinel_nodes]

    @property
    def data_nodes(self) -> list[RedisServer]:
        """The two data nodes, first the one that started as primary."""
        return [self.primary, self.replica]

    def reported_primary(self) -> tuple[str, int] | None:
        """Return the primary's address as the first answering sentinel reports it."""
        for node in self.sentinel_nodes:
            if not node.is_running():
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

    def current_primary(self) -> RedisServer:
        """Return the data node the sentinels currently report as primary."""
        address = self.reported_primary()
        for node in self.data_nodes:
            if address == node.address:
                return node
        raise TopologyError(f"the sentinels report no known primary ({address})")

    def kill_primary(self) -> RedisServer:
        """Kill the current primary by PID (SIGKILL) and return it."""
        node = self.current_primary()
        node.kill()
        return node

    def wait_for_failover(self, old: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Wait until the sentinels report a primary other than ``old`` that says it is one.

        It polls, so it ends once the sentinels have seen the primary down
        (``down_after_ms``), voted and promoted the replica: a few seconds; the
        ``timeout`` only bounds a failover that never happens.
        """
        promoted: list[RedisServer] = []

        def failed_over() -> bool:
            node = self.current_primary()
            if node is old or not node.is_running():
                return False
            with node.client() as client:
                if client.execute_command("ROLE")[0] != "master":
                    return False
            promoted[:] = [node]
            return True

        wait_until(failed_over, timeout, f"the sentinels to replace {old.name}")
        return promoted[0]

    def restart(self, node: RedisServer) -> None:
        """Start a killed data node again; the sentinels turn it into a replica."""
        node.restart()


def _replica_attached(replica: RedisServer) -> bool:
    with replica.client() as client:
        return bool(client.info("replication").get("master_link_status") == "up")


def _sentinels_ready(topology: LocalSentinel) -> bool:
    for node in topology.sentinel_nodes:
        with node.client() as client:
            # Not client.sentinel_master(): redis-py 6.4 to 7.0 break it on a plain client.
            state = client.execute_command("SENTINEL MASTER", topology.service_name)
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
    sentinel_password: str | None = None,
    sentinel_user: tuple[str, str] | None = None,
    tls: TLSMaterial | None = None,
    timeout: float = SETTLE_TIMEOUT,
) -> LocalSentinel:
    """Start a primary, a replica and three sentinels monitoring them as ``service_name``.

    ``sentinel_password`` makes the sentinels themselves require it
    (``requirepass``); ``sentinel_user`` (name, password) gives them an ACL user
    and turns the default user off, so only that user gets in. Either way the
    sentinels authenticate to each other with it.

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
            sentinel_password=sentinel_password,
            sentinel_user=sentinel_user,
            tls=tls,
            timeout=timeout,
        )
    )


def _sentinel_login(password: str | None, user: tuple[str, str] | None) -> dict[str, Any]:
    """The redis-py options a test client needs to get into a guarded sentinel."""
    if user is not None:
        return {"username": user[0], "password": user[1]}
    return {} if password is None else {"password": password}


def _start_sentinel_once(
    *,
    service_name: str,
    down_after_ms: int,
    failover_timeout_ms: int,
    password: str | None,
    sentinel_password: str | None,
    sentinel_user: tuple[str, str] | None,
    tls: TLSMaterial | None,
    timeout: float,
) -> LocalSentinel:
    binary = find_tls_binaries_with_cli()[0] if tls else find_server_binary()
    directory = tempfile.mkdtemp(prefix="pevensie-sentinel-")

    def data_node(name: str, settings: list[tuple[str, str]]) -> ProcessServer:
        settings = [("repl-diskless-sync-delay", "0"), *settings]  # a replica syncs at once
        return new_node(
            binary,
            name,
            Path(directory),
            settings=settings,
            password=password,
            tls=tls,
            timeout=timeout,
        )

    primary = data_node("primary", [])
    replica = data_node("replica", [("replicaof", f"{HOST} {primary.port}")])
    monitor = [
        ("sentinel monitor", f"{service_name} {HOST} {primary.port} 2"),
        ("sentinel down-after-milliseconds", f"{service_name} {down_after_ms}"),
        ("sentinel failover-timeout", f"{service_name} {failover_timeout_ms}"),
        ("sentinel parallel-syncs", f"{service_name} 1"),
    ]
    if password is not None:
        monitor.append(("sentinel auth-pass", f"{service_name} {password}"))
    guard: list[tuple[str, str]] = []
    if sentinel_password is not None:
        guard += [("requirepass", sentinel_password), ("sentinel sentinel-pass", sentinel_password)]
    if sentinel_user is not None:
        name, secret = sentinel_user
        guard += [
            ("user", f"{name} on >{secret} allchannels allkeys +@all"),
            ("user", "default off"),
            ("sentinel sentinel-user", name),
            ("sentinel sentinel-pass", secret),
        ]
    sentinels = [
        new_node(
            binary,
            f"sentinel{index}",
            Path(directory),
            settings=[*monitor, *guard],
            client_options=_sentinel_login(sentinel_password, sentinel_user),
            args=["--sentinel"],
            tls=tls,
            timeout=timeout,
        )
        for index in range(3)
    ]
    topology = LocalSentinel(
        primary, replica, list[RedisServer](sentinels), service_name, directory, password
    )
    try:
        start_nodes([primary, replica])
        # Sentinels learn of replicas from the primary's INFO, which they poll only
        # every 10 s: start them once the replica is attached, so the first poll sees it.
        wait_until(
            lambda: _replica_attached(replica), timeout, "the replica to sync with the primary"
        )
        start_nodes(sentinels)
        wait_until(
            lambda: _sentinels_ready(topology),
            timeout,
            "the sentinels to discover each other and the replica",
        )
    except BaseException:
        topology.stop()
        raise
    return topology
