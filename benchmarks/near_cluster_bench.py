"""Near cache on Redis Cluster (issue 23): hot-key gets against raw redis-py, and staleness.

Run with ``nox -s bench`` (``-- --quick`` for the CI smoke run) or directly:
``python benchmarks/near_cluster_bench.py [--quick] [--rounds N] [--writes N]``.

It starts its own 3-primary cluster on loopback (``pevensie_test_support``, the
development package in ``tests/support``; no replicas: clients read primaries
only) and measures, in this one process:

1. **get (hit)** of a hot set of 1,000 keys spread over every primary, sync and
   async, in interleaved rounds (the order rotates every round): raw redis-py
   ``RedisCluster.get`` and ``redis.asyncio.cluster.RedisCluster.get``
   (``decode_responses=True``; hiredis when installed), our Cluster driver, and
   our Cluster driver with ``near_cache=true`` (every key already held locally),
   through the facade. Median ops/s over the rounds and the ratio to the raw
   client of the face; also this process's CPU time per get (the servers do
   nothing for a local hit). This process and the three servers are pinned to
   one CPU, as ``near_bench.py`` pins its process and server (``--no-pin``:
   nothing pinned; the raw clients' round trips then overlap the servers' work
   on the other CPU).
2. **staleness**, sync and async, unpinned: another client (raw redis-py, on the key's own
   primary) writes a new value to a key the near cache holds; the time from that
   write's reply until a read through the near cache returns it, over
   ``--writes`` writes spread over keys on every primary (median, p99, max). The
   sync reader re-reads in a tight loop ("busy") and, in a second series, with a
   50 microsecond sleep between reads; the async reader yields to the event loop
   between reads (``await asyncio.sleep(0)``).

Prints a markdown report (load average included) and writes JSON (``--json``).
Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio.cluster
from redis.cluster import RedisCluster
from server import install_signal_handlers, pin_pid, pin_to_one_cpu

from pevensie_cache import cache
from pevensie_test_support import LocalCluster, start_cluster

HERE = Path(__file__).resolve().parent
RESOURCE = "bench"
VALUE = "v" * 100
KEYS = 1000
QUERY = "near_cache=true&near_cache_size=10000"
TARGET = 30.0
"""Issue 23: near-cache hits on a Cluster at least 30x raw ``RedisCluster``."""
NEAR = "pevensie cluster + near cache"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts (CI smoke run)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of get hits (default 15)")
    parser.add_argument("--writes", type=int, help="writes per staleness series (default 1000)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the get-hit rounds")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "near_cluster.json")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 15)
    args.writes = args.writes or (50 if args.quick else 1000)
    args.ops = 2_000 if args.quick else 50_000  # gets per sample for the near rows
    args.raw_ops = 200 if args.quick else 2_000  # gets per sample for network rows
    return args


Samples = dict[str, list[tuple[float, float]]]
"""contender -> one (ops/s, this process's CPU microseconds per get) per round."""


def timed(n: int, run: Callable[[], None]) -> tuple[float, float]:
    gc.disable()
    cpu = time.process_time()
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    used = time.process_time() - cpu
    gc.enable()
    return n / elapsed, used / n * 1e6


def names() -> list[str]:
    return [f"k{i}" for i in range(KEYS)]


def run_sync_hits(topology: LocalCluster, args: argparse.Namespace) -> Samples:
    url = f"redis://127.0.0.1:{topology.port}/0?cluster=true"
    raw = RedisCluster(host="127.0.0.1", port=topology.port, decode_responses=True)
    plain = cache.from_url(url).connect()
    near = cache.from_url(f"{url}&{QUERY}").connect()
    keys = names()
    plain.set_many(RESOURCE, dict.fromkeys(keys, VALUE))
    time.sleep(0.2)  # the writes' invalidations have arrived
    while near.driver.near_cache_stats().entries < KEYS:  # every key held locally
        near.get_many(RESOURCE, keys)
    full = [f"{RESOURCE}:{key}" for key in keys]
    contenders: dict[str, tuple[Callable[[str], Any], list[str]]] = {
        "raw RedisCluster": (raw.get, full),
        "pevensie cluster": (lambda k: plain.get(RESOURCE, k), keys),
        NEAR: (lambda k: near.get(RESOURCE, k), keys),
    }
    samples: Samples = {name: [] for name in contenders}
    order = list(contenders)
    try:
        for round_ in range(args.rounds):
            for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                get, chosen = contenders[name]
                n = args.ops if name == NEAR else args.raw_ops

                def run(
                    get: Callable[[str], Any] = get, chosen: list[str] = chosen, n: int = n
                ) -> None:
                    for i in range(n):
                        get(chosen[i % KEYS])

                samples[name].append(timed(n, run))
    finally:
        raw.close()
        plain.disconnect()
        near.disconnect()
    return samples


async def run_async_hits(topology: LocalCluster, args: argparse.Namespace) -> Samples:
    url = f"redis://127.0.0.1:{topology.port}/0?cluster=true"
    raw = redis.asyncio.cluster.RedisCluster(
        host="127.0.0.1", port=topology.port, decode_responses=True
    )
    await raw.initialize()
    plain = await cache.from_url_async(url).connect()
    near = await cache.from_url_async(f"{url}&{QUERY}").connect()
    keys = names()
    full = [f"{RESOURCE}:{key}" for key in keys]
    await plain.set_many(RESOURCE, dict.fromkeys(keys, VALUE))
    await asyncio.sleep(0.2)
    while near.driver.near_cache_stats().entries < KEYS:
        await near.get_many(RESOURCE, keys)
    contenders: dict[str, tuple[Callable[[str], Awaitable[Any]], list[str]]] = {
        "raw redis.asyncio RedisCluster": (raw.get, full),
        "pevensie cluster": (lambda k: plain.get(RESOURCE, k), keys),
        NEAR: (lambda k: near.get(RESOURCE, k), keys),
    }
    samples: Samples = {name: [] for name in contenders}
    order = list(contenders)
    try:
        for round_ in range(args.rounds):
            for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                get, chosen = contenders[name]
                n = args.ops if name == NEAR else args.raw_ops
                gc.disable()
                cpu = time.process_time()
                start = time.perf_counter()
                for i in range(n):
                    await get(chosen[i % KEYS])
                elapsed = time.perf_counter() - start
                used = time.process_time() - cpu
                gc.enable()
                samples[name].append((n / elapsed, used / n * 1e6))
    finally:
        await raw.aclose()
        await plain.disconnect()
        await near.disconnect()
    return samples


# -- staleness -----------------------------------------------------------------------------


def stale_keys(topology: LocalCluster) -> dict[str, Any]:
    """One key per primary, with a raw client of that primary (the foreign writer)."""
    owners: dict[int, Any] = {}
    found: dict[str, Any] = {}
    n = 0
    while len(found) < len(topology.primaries()):
        n += 1
        key = f"stale{n}"
        port = topology.primary_for_key(f"{RESOURCE}:{key}").port
        if port not in owners:
            owners[port] = redis.Redis(host="127.0.0.1", port=port)
            found[key] = owners[port]
    return found


def held(stats: Callable[[], Any], read: Callable[[], Any]) -> None:
    while True:
        hits = stats().hits
        read()
        if stats().hits > hits:
            return


def sync_staleness(topology: LocalCluster, writes: int, pause: float) -> list[float]:
    near = cache.from_url(f"redis://127.0.0.1:{topology.port}/0?cluster=true&{QUERY}").connect()
    writers = stale_keys(topology)
    keys = list(writers)
    stats = near.driver.near_cache_stats
    samples: list[float] = []
    try:
        for n in range(writes):
            key = keys[n % len(keys)]
            held(stats, lambda key=key: near.get(RESOURCE, key, None))
            value = str(n)
            writers[key].set(f"{RESOURCE}:{key}", value)
            written = time.perf_counter()
            while near.get(RESOURCE, key, None) != value:
                if pause:
                    time.sleep(pause)
            samples.append(time.perf_counter() - written)
    finally:
        for writer in writers.values():
            writer.close()
        near.disconnect()
    return samples


async def async_staleness(topology: LocalCluster, writes: int) -> list[float]:
    url = f"redis://127.0.0.1:{topology.port}/0?cluster=true&{QUERY}"
    near = await cache.from_url_async(url).connect()
    writers = stale_keys(topology)
    keys = list(writers)
    stats = near.driver.near_cache_stats
    samples: list[float] = []
    try:
        for n in range(writes):
            key = keys[n % len(keys)]
            while True:
                hits = stats().hits
                await near.get(RESOURCE, key, None)
                if stats().hits > hits:
                    break
                await asyncio.sleep(0)
            value = str(n)
            writers[key].set(f"{RESOURCE}:{key}", value)  # blocking: the loop waits for it
            written = time.perf_counter()
            while await near.get(RESOURCE, key, None) != value:
                await asyncio.sleep(0)
            samples.append(time.perf_counter() - written)
    finally:
        for writer in writers.values():
            writer.close()
        await near.disconnect()
    return samples


# -- report --------------------------------------------------------------------------------------


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def hits_table(title: str, raw_name: str, samples: Samples) -> list[str]:
    rate = {name: statistics.median(r for r, _ in values) for name, values in samples.items()}
    cpu = {name: statistics.median(c for _, c in values) for name, values in samples.items()}
    lines = [
        f"#### get (hit), {title}",
        "",
        "| contender | median ops/s | min ops/s | vs raw | CPU us per get (this process) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in samples.items():
        lines.append(
            f"| {name} | {rate[name]:,.0f} | {min(r for r, _ in values):,.0f} "
            f"| {rate[name] / rate[raw_name]:.1f}x | {cpu[name]:.2f} |"
        )
    ratio = rate[NEAR] / rate[raw_name]
    verdict = "PASS" if ratio >= TARGET else "MISS"
    lines += ["", f"Target: >= {TARGET:.0f}x {raw_name}: {ratio:.1f}x ({verdict}).", ""]
    return lines


def staleness_row(name: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return (
        f"| {name} | {len(ms)} | {statistics.median(ms):.3f} | {percentile(ms, 99):.3f} "
        f"| {max(ms):.3f} |"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_handlers()
    load = os.getloadavg()
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    topology = start_cluster(3, 0)
    try:
        pinned = "not pinned"
        if not args.no_pin:
            pin = pin_to_one_cpu()
            if pin.cpu is not None:
                for node in topology.nodes:
                    if node.pid is not None:
                        pin_pid(node.pid, pin.cpu)
            pinned = f"{pin.note}; the 3 servers too"
        sync_rates = run_sync_hits(topology, args)
        async_rates = asyncio.run(run_async_hits(topology, args))
        if allowed:  # staleness unpinned: the listeners, the reader and the servers anywhere
            os.sched_setaffinity(0, allowed)
            for node in topology.nodes:
                if node.pid is not None:
                    for tid in os.listdir(f"/proc/{node.pid}/task"):
                        os.sched_setaffinity(int(tid), allowed)
        stale = {
            "sync, busy reader": sync_staleness(topology, args.writes, 0.0),
            "sync, pausing reader (50 us)": sync_staleness(topology, args.writes, 50e-6),
            "async (await asyncio.sleep(0) between reads)": asyncio.run(
                async_staleness(topology, args.writes)
            ),
        }
        binary = topology.nodes[0].binary.describe()
    finally:
        topology.stop()
    end_load = os.getloadavg()
    lines = [
        "### Near cache on Redis Cluster",
        "",
        f"- 3 primaries, no replicas ({binary}); Python {platform.python_version()}; "
        f"redis-py {redis.__version__}",
        f"- load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; at the end: "
        f"{end_load[0]:.2f} {end_load[1]:.2f} {end_load[2]:.2f} (1, 5, 15 min); "
        f"{os.cpu_count()} CPUs",
        f"- get-hit rounds: {args.rounds}; {KEYS} keys over every primary; {pinned}",
        "",
    ]
    lines += hits_table("sync", "raw RedisCluster", sync_rates)
    lines += hits_table("async", "raw redis.asyncio RedisCluster", async_rates)
    lines += [
        "#### Staleness: another client's write until a near-cached read returns it",
        "",
        "| reader | writes | median ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [staleness_row(name, samples) for name, samples in stale.items()]
    print("\n".join(lines))
    report = {
        "load_average": [load, end_load],
        "pinned": pinned,
        "quick": args.quick,
        "sync_hits": sync_rates,
        "async_hits": async_rates,
        "staleness_seconds": stale,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
