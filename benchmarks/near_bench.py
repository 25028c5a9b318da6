"""Near cache rows (issue 12): get hits against raw redis-py, staleness, invalidation cost.

Run with ``nox -s bench`` (``-- --quick`` for the CI smoke run) or directly:
``python benchmarks/near_bench.py [--quick] [--rounds N] [--writes N]``.

It starts its own valkey-server on loopback (``--server-binary`` picks another)
and measures, in this one process:

1. **get (hit)**, sync and async, in interleaved rounds (the order rotates
   every round): raw redis-py ``Redis.get`` and raw ``redis.asyncio``
   ``Redis.get`` (a blocking pool of 10, hiredis, ``decode_responses=True``),
   our plain Redis driver, our Redis driver with ``near_cache=true`` (every key
   already held locally) and our memory driver, all through the facade. The
   process and the server are pinned to one CPU, as in ``benchmarks/run.py``.
   Median ops/s over the rounds, and each one's ratio to the raw client of its
   face; also by CPU time (this process's and the server's, per get), which
   other processes on a busy machine do not inflate the way they inflate a
   round trip's wall time.
2. **staleness**, sync and async, unpinned (the server and the listener on
   their own CPUs): another client (raw redis-py) writes a new value to a key
   the near cache holds; the time from that write's reply until a read through
   the near cache returns the new value, over ``--writes`` writes (median, p99,
   max). The sync reader re-reads in a tight loop ("busy") and, in a second
   series, with a 50 microsecond sleep between reads ("pausing": the listener
   thread then gets the GIL at once); the async reader yields to the event loop
   between reads (``await asyncio.sleep(0)``), without which the listener task
   never runs.
3. **invalidation cost**: the CPU time this process spends per key written on
   the server by someone else (the listener is told of every key written),
   while it does nothing else.

Prints a markdown report (load average included) and writes JSON
(``--json``). Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
from server import ValkeyServer, install_signal_handlers, pin_pid, pin_to_one_cpu, server_version

from pevensie_cache import cache

HERE = Path(__file__).resolve().parent
RESOURCE = "bench"
VALUE = "v" * 100
KEYS = 1000
QUERY = "near_cache=true&near_cache_size=10000"
TARGET = 30.0
"""Issue 12: a near-cache hit at least 30x raw redis-py's ``get`` (each face)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts (CI smoke run)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of get hits (default 15)")
    parser.add_argument("--writes", type=int, help="writes per staleness series (default 1000)")
    parser.add_argument("--server-binary", type=Path, help="server to start")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the get-hit rounds")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "near.json")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 15)
    args.writes = args.writes or (50 if args.quick else 1000)
    args.ops = 2_000 if args.quick else 20_000  # gets per sample for the near/memory rows
    args.raw_ops = 200 if args.quick else 2_000  # gets per sample for network rows
    args.foreign = 2_000 if args.quick else 100_000  # keys written for the invalidation cost
    return args


# -- 1. get hits -----------------------------------------------------------------------------


def sync_contenders(url: str, port: int) -> dict[str, tuple[Callable[[], Any], Callable[[], None]]]:
    """name -> (a function doing one get of a held key, close)."""
    raw = redis.Redis(
        connection_pool=redis.BlockingConnectionPool(
            host="127.0.0.1", port=port, max_connections=10, decode_responses=True
        )
    )
    plain = cache.from_url(url).connect()
    near = cache.from_url(f"{url}?{QUERY}").connect()
    memory = cache.new(driver="memory").connect()
    for c in (plain, memory):
        c.set_many(RESOURCE, {f"k{i}": VALUE for i in range(KEYS)})
    names = [f"k{i}" for i in range(KEYS)]
    time.sleep(0.2)  # the writes' invalidations have arrived: nothing drops what is read now
    while near.driver.near_cache_stats().entries < KEYS:  # every key held locally
        near.get_many(RESOURCE, names)
    full = [f"{RESOURCE}:{name}" for name in names]
    return {
        "raw redis-py": (_cycle(raw.get, full), raw.close),
        "pevensie redis": (_cycle(lambda k: plain.get(RESOURCE, k), names), plain.disconnect),
        "pevensie redis + near cache": (
            _cycle(lambda k: near.get(RESOURCE, k), names),
            near.disconnect,
        ),
        "pevensie memory": (_cycle(lambda k: memory.get(RESOURCE, k), names), memory.disconnect),
    }


def _cycle(get: Callable[[str], Any], keys: list[str]) -> Callable[[], Any]:
    state = {"i": 0}

    def one() -> Any:
        i = state["i"]
        state["i"] = (i + 1) % len(keys)
        return get(keys[i])

    return one


Samples = dict[str, list[tuple[float, float]]]
"""contender -> one (ops/s, CPU microseconds per get, client and server) per round."""


def _timed(server: ValkeyServer, n: int, run: Callable[[], None]) -> tuple[float, float]:
    gc.disable()
    cpu, server_cpu = time.process_time(), server.cpu_ns() or 0
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    used = time.process_time() - cpu + ((server.cpu_ns() or 0) - server_cpu) / 1e9
    gc.enable()
    return n / elapsed, used / n * 1e6


def run_sync_hits(url: str, server: ValkeyServer, args: argparse.Namespace) -> Samples:
    contenders = sync_contenders(url, server.port)
    samples: Samples = {name: [] for name in contenders}
    names = list(contenders)
    try:
        for round_ in range(args.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                get = contenders[name][0]
                n = args.raw_ops if "raw" in name or name == "pevensie redis" else args.ops

                def run(get: Callable[[], Any] = get, n: int = n) -> None:
                    for _ in range(n):
                        get()

                samples[name].append(_timed(server, n, run))
    finally:
        for _, close in contenders.values():
            close()
    return samples


async def run_async_hits(url: str, server: ValkeyServer, args: argparse.Namespace) -> Samples:
    port = server.port
    raw = redis.asyncio.Redis(
        connection_pool=redis.asyncio.BlockingConnectionPool(
            host="127.0.0.1", port=port, max_connections=10, decode_responses=True
        )
    )
    plain = await cache.from_url_async(url).connect()
    near = await cache.from_url_async(f"{url}?{QUERY}").connect()
    memory = await cache.new_async(driver="memory").connect()
    names = [f"k{i}" for i in range(KEYS)]
    full = [f"{RESOURCE}:{name}" for name in names]
    for c in (plain, memory):
        await c.set_many(RESOURCE, {name: VALUE for name in names})
    await asyncio.sleep(0.2)  # the writes' invalidations have arrived
    while near.driver.near_cache_stats().entries < KEYS:
        await near.get_many(RESOURCE, names)
    contenders: dict[str, tuple[Callable[[str], Awaitable[Any]], list[str]]] = {
        "raw redis.asyncio": (raw.get, full),
        "pevensie redis": (lambda k: plain.get(RESOURCE, k), names),
        "pevensie redis + near cache": (lambda k: near.get(RESOURCE, k), names),
        "pevensie memory": (lambda k: memory.get(RESOURCE, k), names),
    }
    samples: Samples = {name: [] for name in contenders}
    order = list(contenders)
    try:
        for round_ in range(args.rounds):
            for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                get, keys = contenders[name]
                n = args.raw_ops if "raw" in name or name == "pevensie redis" else args.ops
                gc.disable()
                cpu, server_cpu = time.process_time(), server.cpu_ns() or 0
                start = time.perf_counter()
                for i in range(n):
                    await get(keys[i % KEYS])
                elapsed = time.perf_counter() - start
                used = time.process_time() - cpu + ((server.cpu_ns() or 0) - server_cpu) / 1e9
                gc.enable()
                samples[name].append((n / elapsed, used / n * 1e6))
    finally:
        await raw.aclose()
        for c in (plain, near, memory):
            await c.disconnect()
    return samples


# -- 2. staleness ----------------------------------------------------------------------------


def held(stats: Callable[[], Any], read: Callable[[], Any]) -> None:
    """Read until a read is a local hit: the key is held before the next write."""
    while True:
        hits = stats().hits
        read()
        if stats().hits > hits:
            return


def sync_staleness(url: str, port: int, writes: int, pause: float) -> list[float]:
    near = cache.from_url(f"{url}?{QUERY}").connect()
    writer = redis.Redis(host="127.0.0.1", port=port)
    stats = near.driver.near_cache_stats
    samples: list[float] = []
    try:
        writer.set(f"{RESOURCE}:stale", "start")
        for n in range(writes):
            held(stats, lambda: near.get(RESOURCE, "stale", None))
            value = str(n)
            writer.set(f"{RESOURCE}:stale", value)
            written = time.perf_counter()
            while near.get(RESOURCE, "stale", None) != value:
                if pause:
                    time.sleep(pause)
            samples.append(time.perf_counter() - written)
    finally:
        writer.close()
        near.disconnect()
    return samples


async def async_staleness(url: str, port: int, writes: int) -> list[float]:
    near = await cache.from_url_async(f"{url}?{QUERY}").connect()
    writer = redis.asyncio.Redis(host="127.0.0.1", port=port)
    stats = near.driver.near_cache_stats
    samples: list[float] = []
    try:
        await writer.set(f"{RESOURCE}:stale", "start")
        for n in range(writes):
            while True:
                hits = stats().hits
                await near.get(RESOURCE, "stale", None)
                if stats().hits > hits:
                    break
                await asyncio.sleep(0)
            value = str(n)
            await writer.set(f"{RESOURCE}:stale", value)
            written = time.perf_counter()
            while await near.get(RESOURCE, "stale", None) != value:
                await asyncio.sleep(0)
            samples.append(time.perf_counter() - written)
    finally:
        await writer.aclose()
        await near.disconnect()
    return samples


# -- 3. invalidation cost ----------------------------------------------------------------------

WRITER = """
import sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]))
total = int(sys.argv[2])
for start in range(0, total, 1000):
    pipe = r.pipeline(transaction=False)
    for i in range(start, min(total, start + 1000)):
        pipe.set(f"elsewhere:{i}", "x")
    pipe.execute()
"""


def invalidation_cost(url: str, port: int, total: int, face: str) -> float:
    """CPU microseconds this process spends per key another process writes."""

    def foreign_writes() -> None:
        subprocess.run([sys.executable, "-c", WRITER, str(port), str(total)], check=True)

    if face == "sync":
        near = cache.from_url(f"{url}?{QUERY}").connect()
        try:
            before_inv = near.driver.near_cache_stats().invalidations
            cpu = time.process_time()
            foreign_writes()
            while near.driver.near_cache_stats().invalidations < before_inv + total:
                time.sleep(0.01)
            return (time.process_time() - cpu) / total * 1e6
        finally:
            near.disconnect()

    async def measure() -> float:
        near = await cache.from_url_async(f"{url}?{QUERY}").connect()
        try:
            before_inv = near.driver.near_cache_stats().invalidations
            cpu = time.process_time()
            await asyncio.get_running_loop().run_in_executor(None, foreign_writes)
            while near.driver.near_cache_stats().invalidations < before_inv + total:
                await asyncio.sleep(0.01)
            return (time.process_time() - cpu) / total * 1e6
        finally:
            await near.disconnect()

    return asyncio.run(measure())


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
        "| contender | median ops/s | vs raw | CPU us per get (client + server) | vs raw, by CPU |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in samples:
        lines.append(
            f"| {name} | {rate[name]:,.0f} | {rate[name] / rate[raw_name]:.2f}x "
            f"| {cpu[name]:.2f} | {cpu[raw_name] / cpu[name]:.2f}x |"
        )
    near = "pevensie redis + near cache"
    by_rate, by_cpu = rate[near] / rate[raw_name], cpu[raw_name] / cpu[near]
    verdict = "PASS" if min(by_rate, by_cpu) >= TARGET else "MISS"
    lines += [
        "",
        f"Target: near-cache hit >= {TARGET:.0f}x {raw_name}: {by_rate:.1f}x by ops/s, "
        f"{by_cpu:.1f}x by CPU time: {verdict}.",
        "",
    ]
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
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    load = os.getloadavg()
    pin = pin_to_one_cpu() if not args.no_pin else None
    report: dict[str, Any] = {"load_average": load, "quick": args.quick}
    with ValkeyServer(args.server_binary) as server:
        assert server.pid is not None
        pinned = pin_pid(server.pid, pin.cpu) if pin and pin.cpu is not None else "not pinned"
        url = f"redis://127.0.0.1:{server.port}/0"
        port = server.port
        sync_rates = run_sync_hits(url, server, args)
        async_rates = asyncio.run(run_async_hits(url, server, args))
        # Staleness and cost, unpinned: the listener, the reader and the server on any CPU.
        if allowed:
            os.sched_setaffinity(0, allowed)
            for tid in os.listdir(f"/proc/{server.pid}/task"):
                os.sched_setaffinity(int(tid), allowed)
        stale = {
            "sync, busy reader": sync_staleness(url, port, args.writes, 0.0),
            "sync, pausing reader (50 us)": sync_staleness(url, port, args.writes, 50e-6),
            "async (await asyncio.sleep(0) between reads)": asyncio.run(
                async_staleness(url, port, args.writes)
            ),
        }
        cost = {
            face: invalidation_cost(url, port, args.foreign, face) for face in ("sync", "async")
        }
        binary = server_version(Path(server.binary.path))
    lines = [
        "### Near cache",
        "",
        f"- server: {binary}; Python {platform.python_version()}; redis-py {redis.__version__}",
        f"- load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min); "
        f"{os.cpu_count()} CPUs",
        f"- get-hit rounds: {args.rounds}, pinned: {pin.note if pin else 'no'}; server: {pinned}",
        "",
    ]
    lines += hits_table("sync", "raw redis-py", sync_rates)
    lines += hits_table("async", "raw redis.asyncio", async_rates)
    lines += [
        "#### Staleness: another client's write until a near-cached read returns it",
        "",
        "| reader | writes | median ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [staleness_row(name, samples) for name, samples in stale.items()]
    lines += [
        "",
        "#### Invalidation cost: CPU per key written on the server by another process",
        "",
        f"sync: {cost['sync']:.2f} us per key; async: {cost['async']:.2f} us per key "
        f"({args.foreign:,} keys written).",
    ]
    text = "\n".join(lines)
    print(text)
    report.update(
        sync_hits=sync_rates,
        async_hits=async_rates,
        staleness_seconds=stale,
        invalidation_cpu_us=cost,
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
