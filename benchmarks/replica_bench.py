"""Replica-read rows: read throughput of a 3+3 cluster with and without ``read_from_replicas``.

Run directly (``python benchmarks/replica_bench.py [--quick] [--rounds N] [--seconds S]``).
It starts its own 3-primary / 3-replica cluster on loopback
(``pevensie_test_support``), stores the keys the reads hit, waits until every
write reached the replicas and ``CLUSTER SLOTS`` lists them, then measures in
this one process, in interleaved rounds (the order rotates every round):

- ``get (hit)``: one caller, sync face;
- ``get_many 100``: one caller, sync face (keys in about 100 slots: one
  command per slot, every node's pipelined);
- ``async get x32``: 32 tasks of one event loop reading at once (async face).

for ``primaries`` (``?cluster=true``) and ``replicas`` (the same with
``&read_from_replicas=true``). It checks, on the servers, that the second
really read from the replicas (``INFO commandstats``), and prints a markdown
table of median (and min) ops/s with the ratio, and the load average before
and after. The six servers and the client share the machine: a single client
is usually the bottleneck here, so these rows show what the replica path costs
a caller, not how far replicas lift a cluster whose primaries are saturated.
Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from contenders import RESOURCE, VALUE  # the single-server benchmark's workload

from pevensie_cache import cache
from pevensie_test_support import LocalCluster, start_cluster, wait_until

BATCH = 100
KEYSPACE = 1000
TASKS = 32
WORKLOADS = [  # (name, unit, label)
    ("get_hit", "ops/s", "get (hit), sync"),
    ("get_many", "keys/s", "get_many 100, sync"),
    ("async_get", "ops/s", f"get (hit), async, {TASKS} tasks"),
]
KEYS = [f"k{i}" for i in range(KEYSPACE)]


class Contender:
    """Our cluster mode, both faces, reading the same keys."""

    def __init__(self, name: str, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.loop = loop
        self.sync = cache.from_url(url).connect()
        self.async_ = loop.run_until_complete(cache.from_url_async(url).connect())

    def close(self) -> None:
        self.sync.disconnect()
        self.loop.run_until_complete(self.async_.disconnect())

    def get_hit(self, n: int) -> int:
        op = self.sync.get
        for i in range(n):
            op(RESOURCE, KEYS[i % KEYSPACE])
        return n

    def get_many(self, n: int) -> int:
        op = self.sync.get_many
        for b in range(n):
            start = (b * BATCH) % KEYSPACE
            op(RESOURCE, KEYS[start : start + BATCH])
        return n * BATCH

    def async_get(self, n: int) -> int:
        op = self.async_.get

        async def task(t: int) -> None:
            for i in range(t, n, TASKS):
                await op(RESOURCE, KEYS[i % KEYSPACE])

        async def run() -> None:
            await asyncio.gather(*(task(t) for t in range(TASKS)))

        self.loop.run_until_complete(run())
        return n


def sample(contender: Contender, workload: str, n: int) -> float:
    """Run one sample and return its rate (operations or keys per second)."""
    method = getattr(contender, workload)
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        units = method(n)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return float(units / max(elapsed, 1e-9))


def prepare(topology: LocalCluster) -> None:
    """Store every key, wait until the replicas have them and CLUSTER SLOTS lists them."""
    with cache.from_url(f"redis://127.0.0.1:{topology.port}/0?cluster=true") as plain:
        plain.set_many(RESOURCE, dict.fromkeys(KEYS, VALUE))
    for primary in topology.primaries():
        with primary.client() as raw:
            raw.execute_command("WAIT", 1, 5000)

    def listed() -> bool:
        with topology.nodes[0].client() as raw:
            return all(len(entry) >= 4 for entry in raw.execute_command("CLUSTER SLOTS"))

    wait_until(listed, 30, "every replica listed by CLUSTER SLOTS")


def reads_on(nodes: list[Any]) -> int:
    total = 0
    for node in nodes:
        with node.client() as raw:
            stats = raw.info("commandstats")
        total += sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("get", "mget"))
    return total


def run(rounds: int, seconds: float, quick: bool) -> dict[str, Any]:
    """Start a cluster, measure both contenders on every workload, and stop the cluster."""
    load_before = os.getloadavg()
    topology = start_cluster()
    loop = asyncio.new_event_loop()
    contenders: list[Contender] = []
    try:
        prepare(topology)
        base = f"redis://127.0.0.1:{topology.port}/0?cluster=true"
        contenders = [
            Contender("primaries", base, loop),
            Contender("replicas", base + "&read_from_replicas=true", loop),
        ]
        replicas, primaries = topology.replicas(), topology.primaries()
        for node in topology.live_nodes():
            with node.client() as raw:
                raw.config_resetstat()
        contenders[1].get_hit(300)  # the replica contender reads from replicas only
        where = {"replicas": reads_on(replicas), "primaries": reads_on(primaries)}
        if where != {"replicas": 300, "primaries": 0}:
            raise RuntimeError(f"replica reads did not go to the replicas: {where}")
        counts: dict[tuple[str, str], int] = {}
        for workload, _, _ in WORKLOADS:
            for contender in contenders:
                n0 = 5 if workload == "get_many" else 200
                rate = sample(contender, workload, n0)
                per = BATCH if workload == "get_many" else 1
                counts[workload, contender.name] = max(n0, int(rate * seconds / per))
        samples: dict[str, dict[str, list[float]]] = {
            w: {c.name: [] for c in contenders} for w, _, _ in WORKLOADS
        }
        for r in range(rounds):
            order = contenders[r % 2 :] + contenders[: r % 2]
            for workload, _, _ in WORKLOADS:
                for contender in order:
                    n = counts[workload, contender.name]
                    samples[workload][contender.name].append(sample(contender, workload, n))
        with topology.nodes[0].client() as client:
            info = client.info("server")
            version = info.get("valkey_version") or info["redis_version"]
            server = f"{info.get('server_name', 'redis')} {version}"
    finally:
        for contender in contenders:
            contender.close()
        loop.close()
        topology.stop()
    return {
        "quick": quick,
        "rounds": rounds,
        "seconds": seconds,
        "server": server,
        "redis_py": redis.__version__,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "samples": samples,
    }


def table(results: dict[str, Any]) -> str:
    """The markdown table: median ops/s (min) and the ratio of replicas to primaries."""
    samples = results["samples"]
    lines = [
        "| workload | primaries | read_from_replicas | ratio |",
        "|---|---|---|---|",
    ]
    for workload, unit, label in WORKLOADS:
        cells = []
        for name in ("primaries", "replicas"):
            values = samples[workload][name]
            cells.append(f"{statistics.median(values):,.0f} (min {min(values):,.0f})")
        ratio = statistics.median(samples[workload]["replicas"]) / statistics.median(
            samples[workload]["primaries"]
        )
        lines.append(f"| {label} ({unit}) | {cells[0]} | {cells[1]} | {ratio:.2f}x |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, tiny samples (CI smoke)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 7; quick 1)")
    parser.add_argument("--seconds", type=float, help="length of one sample (default 0.3)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 7)
    seconds = args.seconds or (0.02 if args.quick else 0.3)
    results = run(rounds, seconds, args.quick)
    before = " ".join(f"{x:.2f}" for x in results["load_before"])
    after = " ".join(f"{x:.2f}" for x in results["load_after"])
    print(
        f"# Replica reads{' (quick)' if args.quick else ''}: 3 primaries + 3 replicas on "
        f"127.0.0.1, {results['server']}, redis-py {results['redis_py']}, "
        f"Python {results['python']}, {results['cpus']} CPUs; {rounds} rounds of ~{seconds}s; "
        f"load average {before} before, {after} after; not pinned\n"
    )
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
