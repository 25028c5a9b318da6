"""Large values against small ones (issue 20): do small gets stall behind an 8 MiB transfer?

Run directly: ``python benchmarks/large_bench.py [--seconds S] [--rounds N] [--no-pin]``.

Its own valkey-server on loopback (this process and the server pinned to one
CPU, as the other benchmarks do). For each contender, two runs of ``--seconds``:

- **small only**: 32 tasks (async face) or 8 threads (sync face) each doing
  ``get`` of 100-byte values in a loop;
- **with a large reader**: the same, while one more task (thread) reads an
  8 MiB value in a loop.

``--rounds N`` alternates the two runs N times (each of ``--seconds``) and
adds them up: on a machine whose load moves (a shared one), the two sides
then see the same load.

It reports the small gets' throughput and p99 latency in both runs, and the
ratios: the target is that the large reader leaves the small gets at least 80 %
of their throughput and at most twice their p99. Contenders: our driver on
both faces, raw ``redis.asyncio`` and raw redis-py (pools of 10 connections).
Nothing is asserted: the exit code only says whether the harness ran.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis
import redis.asyncio
from report import load_average
from server import benchmark_server, find_valkey_server

from pevensie_cache import cache

TASKS = 32
THREADS = 8
SMALL = "v" * 100
LARGE = "L" * (8 * 1024 * 1024)
KEYS = [f"small-{i}" for i in range(256)]


def p99(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[int(len(ordered) * 0.99)] if ordered else float("nan")


async def async_run(
    get: Callable[[str], Awaitable[Any]], large: str | None, seconds: float, prefix: str
) -> tuple[list[float], int]:
    """Run 32 small readers (and one large one): the small gets' latencies, large reads done."""
    latencies: list[float] = []
    larges = [0]
    stop = time.monotonic() + seconds

    async def small(n: int) -> None:
        i = n
        while time.monotonic() < stop:
            started = time.perf_counter()
            await get(prefix + KEYS[i % len(KEYS)])
            latencies.append(time.perf_counter() - started)
            i += 1

    async def big() -> None:
        assert large is not None
        while time.monotonic() < stop:
            await get(large)
            larges[0] += 1

    jobs = [small(n) for n in range(TASKS)]
    if large is not None:
        jobs.append(big())
    await asyncio.gather(*jobs)
    return latencies, larges[0]


def sync_run(
    get: Callable[[str], Any], large: str | None, seconds: float, prefix: str
) -> tuple[list[float], int]:
    """Run 8 small reader threads (and one large one): the small gets' latencies, large reads."""
    latencies: list[list[float]] = [[] for _ in range(THREADS)]
    larges = [0]
    stop = time.monotonic() + seconds

    def small(n: int) -> None:
        mine = latencies[n]
        i = n
        while time.monotonic() < stop:
            started = time.perf_counter()
            get(prefix + KEYS[i % len(KEYS)])
            mine.append(time.perf_counter() - started)
            i += 1

    def big() -> None:
        assert large is not None
        while time.monotonic() < stop:
            get(large)
            larges[0] += 1

    threads = [threading.Thread(target=small, args=(n,)) for n in range(THREADS)]
    if large is not None:
        threads.append(threading.Thread(target=big))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [x for part in latencies for x in part], larges[0]


class Tally:
    """The small gets' latencies and the large reads of one side (alone or loaded), summed."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.larges = 0

    def add(self, run: tuple[list[float], int]) -> None:
        self.latencies.extend(run[0])
        self.larges += run[1]

    def result(self) -> tuple[int, float, int]:
        """Small gets done, their p99, large reads done."""
        return len(self.latencies), p99(self.latencies), self.larges


async def async_sides(
    get: Callable[[str], Awaitable[Any]], large: str, seconds: float, prefix: str, rounds: int
) -> tuple[tuple[int, float, int], tuple[int, float, int]]:
    """Alternate runs without and with the large reader, ``rounds`` times; sum each side."""
    alone, loaded = Tally(), Tally()
    for _ in range(rounds):
        alone.add(await async_run(get, None, seconds, prefix))
        loaded.add(await async_run(get, large, seconds, prefix))
    return alone.result(), loaded.result()


def sync_sides(
    get: Callable[[str], Any], large: str, seconds: float, prefix: str, rounds: int
) -> tuple[tuple[int, float, int], tuple[int, float, int]]:
    """Alternate runs without and with the large reader, ``rounds`` times; sum each side."""
    alone, loaded = Tally(), Tally()
    for _ in range(rounds):
        alone.add(sync_run(get, None, seconds, prefix))
        loaded.add(sync_run(get, large, seconds, prefix))
    return alone.result(), loaded.result()


def line(
    name: str, alone: tuple[int, float, int], loaded: tuple[int, float, int], seconds: float
) -> str:
    rate_alone, rate_loaded = alone[0] / seconds, loaded[0] / seconds
    return (
        f"| {name} | {rate_alone:,.0f} | {alone[1] * 1000:.2f} | {rate_loaded:,.0f} | "
        f"{loaded[1] * 1000:.2f} | {loaded[2] / seconds:.1f} | {rate_loaded / rate_alone:.0%} | "
        f"{loaded[1] / alone[1]:.1f}x |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)
    seconds, rounds = args.seconds, max(1, args.rounds)
    total = seconds * rounds
    print(f"load average at start: {load_average()}")
    with benchmark_server(find_valkey_server(), pin=not args.no_pin) as (server, notes):
        print("; ".join(notes))
        port = server.port
        raw = redis.Redis(host="127.0.0.1", port=port)
        for key in KEYS:
            raw.set(key, SMALL)
            raw.set("u:" + key, SMALL)
        raw.set("big", LARGE)
        raw.set("u:big", LARGE)
        rows = [
            "| contender | small gets/s alone | p99 ms | with an 8 MiB reader | p99 ms "
            "| 8 MiB reads/s | throughput kept | p99 ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]

        async def async_rows() -> None:
            ours = await cache.new_async(driver="redis", host="127.0.0.1", port=port).connect()
            try:
                alone, loaded = await async_sides(
                    lambda k: ours.get("u", k[2:], None), "u:big", seconds, "u:", rounds
                )
            finally:
                await ours.disconnect()
            rows.append(line(f"pevensie async ({TASKS} tasks)", alone, loaded, total))
            pool = redis.asyncio.BlockingConnectionPool(
                host="127.0.0.1", port=port, max_connections=10
            )
            client = redis.asyncio.Redis(connection_pool=pool)
            try:
                alone, loaded = await async_sides(client.get, "big", seconds, "", rounds)
            finally:
                await client.aclose()
            rows.append(line(f"redis.asyncio ({TASKS} tasks)", alone, loaded, total))

        asyncio.run(async_rows())
        sync = cache.new(driver="redis", host="127.0.0.1", port=port).connect()
        try:
            alone, loaded = sync_sides(
                lambda k: sync.get("u", k[2:], None), "u:big", seconds, "u:", rounds
            )
        finally:
            sync.disconnect()
        rows.append(line(f"pevensie sync ({THREADS} threads)", alone, loaded, total))
        client = redis.Redis(
            connection_pool=redis.BlockingConnectionPool(
                host="127.0.0.1", port=port, max_connections=10
            )
        )
        alone, loaded = sync_sides(client.get, "big", seconds, "", rounds)
        client.close()
        rows.append(line(f"raw redis-py ({THREADS} threads)", alone, loaded, total))
        raw.close()
    print("\n".join(rows))
    print(f"load average at the end: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
