"""Cluster rows of the benchmark: our cluster mode against raw redis-py ``RedisCluster``.

Run directly (``python benchmarks/cluster_bench.py [--quick] [--rounds N] [--seconds S]``)
or from the main runner. It starts its own 3-primary / 3-replica cluster on
loopback (``pevensie_test_support``, the development package in ``tests/support``),
and runs every contender in this one process in interleaved rounds (the order
rotates every round), as the single-server benchmark does. Contenders:

- ``raw RedisCluster``: ``get``/``set(ex=)``/``delete``; ``mget_nonatomic`` for
  batch reads (a plain MGET of keys in several slots is refused with CROSSSLOT);
  a cluster pipeline of ``SET ... EX`` for batch writes;
- ``pevensie cluster``: ``cache.from_url("redis://...?cluster=true")``;
- ``pevensie cluster+tag``: the same with ``cluster_hash_tag=true`` (one slot per
  resource type, so a batch is one command on one node).

The servers are not pinned: six server processes do not fit one CPU. Prints a
markdown table of median (and min) ops/s with each contender's ratio to raw
``RedisCluster``, and writes JSON (``--json``). Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
from contenders import RESOURCE, TTL, VALUE  # the single-server benchmark's workload
from redis.cluster import RedisCluster

from pevensie_cache import PevensieCache, cache
from pevensie_test_support import LocalCluster, start_cluster

HERE = Path(__file__).resolve().parent
BATCH = 100
KEYSPACE = 1000
RAW = "raw RedisCluster"
WORKLOADS = [  # (name, unit, label)
    ("set", "ops/s", "set with TTL"),
    ("get_hit", "ops/s", "get (hit)"),
    ("get_miss", "ops/s", "get (miss)"),
    ("delete", "ops/s", "delete"),
    ("set_many", "keys/s", "set_many 100, TTL"),
    ("get_many", "keys/s", "get_many 100"),
]
TARGETS = {"set": 1.3, "get_hit": 1.3, "get_miss": 1.3, "delete": 1.3, "set_many": 4.0,
           "get_many": 1.0}  # fmt: skip
"""The single-server targets of issue 4, applied to the cluster rows."""


class Raw:
    """redis-py's RedisCluster used directly."""

    name = RAW

    def __init__(self, port: int) -> None:
        self.client = RedisCluster(host="127.0.0.1", port=port, decode_responses=True)

    def key(self, name: str) -> str:
        return f"raw:{name}"

    def close(self) -> None:
        self.client.close()

    def set(self, keys: Sequence[str]) -> None:
        op = self.client.set
        for k in keys:
            op(k, VALUE, ex=TTL)

    def get_hit(self, keys: Sequence[str]) -> None:
        op = self.client.get
        for k in keys:
            op(k)

    get_miss = get_hit

    def delete(self, keys: Sequence[str]) -> None:
        op = self.client.delete
        for k in keys:
            op(k)

    def set_many(self, batches: Sequence[Sequence[str]]) -> None:
        for keys in batches:
            pipe = self.client.pipeline()
            for k in keys:
                pipe.set(k, VALUE, ex=TTL)
            pipe.execute()

    def get_many(self, batches: Sequence[Sequence[str]]) -> None:
        op = self.client.mget_nonatomic
        for keys in batches:
            op(keys)


class Ours:
    """Our cluster mode through the facade."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.cache: PevensieCache = cache.from_url(url).connect()

    def key(self, name: str) -> str:
        return name

    def close(self) -> None:
        self.cache.disconnect()

    def set(self, keys: Sequence[str]) -> None:
        op = self.cache.set
        for k in keys:
            op(RESOURCE, k, VALUE, TTL)

    def get_hit(self, keys: Sequence[str]) -> None:
        op = self.cache.get
        for k in keys:
            op(RESOURCE, k)

    def get_miss(self, keys: Sequence[str]) -> None:
        op = self.cache.get
        for k in keys:
            op(RESOURCE, k, None)

    def delete(self, keys: Sequence[str]) -> None:
        op = self.cache.delete
        for k in keys:
            op(RESOURCE, k)

    def set_many(self, batches: Sequence[Sequence[str]]) -> None:
        op = self.cache.set_many
        for keys in batches:
            op(RESOURCE, dict.fromkeys(keys, VALUE), TTL)

    def get_many(self, batches: Sequence[Sequence[str]]) -> None:
        op = self.cache.get_many
        for keys in batches:
            op(RESOURCE, keys)


Contender = Raw | Ours


def arguments(contender: Contender, workload: str, n: int, serial: int) -> Any:
    """The input of one sample: ``n`` keys, or ``n`` batches of ``BATCH`` keys."""
    k = contender.key
    if workload in ("set", "get_hit"):
        return [k(f"k{i % KEYSPACE}") for i in range(n)]
    if workload == "get_miss":
        return [k(f"miss{i}") for i in range(n)]
    if workload == "delete":
        return [k(f"d{serial}.{i}") for i in range(n)]
    return [[k(f"k{(b * BATCH + i) % KEYSPACE}") for i in range(BATCH)] for b in range(n)]


def sample(contender: Contender, workload: str, n: int, serial: int) -> float:
    """Run one sample and return its rate (operations or keys per second)."""
    arg = arguments(contender, workload, n, serial)
    if workload == "delete":
        contender.set(arg)
    method: Callable[[Any], None] = getattr(contender, workload)
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        method(arg)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    units = n * BATCH if workload in ("set_many", "get_many") else n
    return units / max(elapsed, 1e-9)


def run(rounds: int, seconds: float, quick: bool) -> dict[str, Any]:
    """Start a cluster, measure every contender on every workload, and stop the cluster."""
    topology: LocalCluster = start_cluster()
    contenders: list[Contender] = []
    try:
        base = f"redis://127.0.0.1:{topology.port}/0?cluster=true"
        contenders = [
            Raw(topology.port),
            Ours("pevensie cluster", base),
            Ours("pevensie cluster+tag", base + "&cluster_hash_tag=true"),
        ]
        for contender in contenders:  # the keys the hit workloads read
            contender.set_many(arguments(contender, "set_many", KEYSPACE // BATCH, 0))
        counts: dict[tuple[str, str], int] = {}
        serial = 0
        for workload, _, _ in WORKLOADS:
            for contender in contenders:
                serial += 1
                n0 = 2 if workload in ("set_many", "get_many") else 50
                rate = sample(contender, workload, n0, serial)
                per = BATCH if workload in ("set_many", "get_many") else 1
                counts[workload, contender.name] = max(n0, int(rate * seconds / per))
        samples: dict[str, dict[str, list[float]]] = {
            w: {c.name: [] for c in contenders} for w, _, _ in WORKLOADS
        }
        for r in range(rounds):
            order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
            for workload, _, _ in WORKLOADS:
                for contender in order:
                    serial += 1
                    n = counts[workload, contender.name]
                    samples[workload][contender.name].append(sample(contender, workload, n, serial))
        with topology.nodes[0].client() as client:
            server = (
                str(client.info("server").get("server_name", "redis"))
                + " "
                + str(
                    client.info("server").get("valkey_version")
                    or client.info("server")["redis_version"]
                )
            )
    finally:
        for contender in contenders:
            contender.close()
        topology.stop()
    return {
        "quick": quick,
        "rounds": rounds,
        "seconds": seconds,
        "server": server,
        "redis_py": redis.__version__,
        "python": sys.version.split()[0],
        "samples": samples,
    }


def table(results: dict[str, Any]) -> str:
    """The markdown table: median ops/s (min) and the ratio to raw RedisCluster."""
    samples = results["samples"]
    names = list(next(iter(samples.values())))
    lines = [
        "| workload | " + " | ".join(names) + " | target |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for workload, unit, label in WORKLOADS:
        raw = statistics.median(samples[workload][RAW])
        cells = []
        for name in names:
            values = samples[workload][name]
            median = statistics.median(values)
            cell = f"{median:,.0f} (min {min(values):,.0f})"
            if name != RAW:
                cell += f" **{median / raw:.2f}x**"
            cells.append(cell)
        lines.append(
            f"| {label} ({unit}) | " + " | ".join(cells) + f" | {TARGETS[workload]}x raw |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, tiny samples (CI smoke)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 7; quick 1)")
    parser.add_argument("--seconds", type=float, help="length of one sample (default 0.2)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 7)
    seconds = args.seconds or (0.02 if args.quick else 0.2)
    results = run(rounds, seconds, args.quick)
    print(
        f"# Cluster rows{' (quick)' if args.quick else ''}: 3 primaries + 3 replicas on "
        f"127.0.0.1, {results['server']}, redis-py {results['redis_py']}, "
        f"Python {results['python']}; {rounds} rounds of ~{seconds}s; not pinned\n"
    )
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
