"""The pure-Python reply reader (used without hiredis) before and after issue 19's fix.

Run: ``python benchmarks/reader_bench.py [--baseline COMMIT] [--rounds N] [--markdown FILE]``
from a checkout (the baseline's ``resp.py`` comes from ``git show``).

Both readers run in this one process, in interleaved rounds, on the replies an
async connection feeds them: ``data_received`` feeds what the socket gave and
calls ``gets()`` until it returns ``False``, so every read ends on an
incomplete reply at least once. Throughput is replies per second (median and
best of the rounds); then each reader reads 100,000 replies in pieces under
``tracemalloc`` and the heap it kept is reported. Between the baseline's
samples its module-level exception's traceback is cleared, so what it kept
does not slow the other reader's rounds (in production nothing clears it).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESP = "pevensie_redis/src/pevensie_redis/protocol/resp.py"
BASELINE_RESP = "pevensie_redis/src/pevensie_redis/resp.py"
"""Where the reader was at the baseline commit (before it moved into ``protocol/``)."""


def baseline_imports() -> None:
    """Give the baseline reader the ``pevensie_redis.compat`` it imported (since removed).

    It used one thing of it, ``parse_error`` (an error reply's text to an
    exception), which the driver's own error table does now.
    """
    from pevensie_redis.protocol.error_codes import error_reply

    shim = ModuleType("pevensie_redis.compat")
    shim.parse_error = error_reply  # type: ignore[attr-defined]
    sys.modules.setdefault("pevensie_redis.compat", shim)


def load(name: str, source: str) -> ModuleType:
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def bulk(size: int) -> bytes:
    return b"$%d\r\n%s\r\n" % (size, b"v" * size)


def stream_of(kind: str) -> tuple[list[bytes], int]:
    """Return the reads (as the socket hands them) and how many replies they hold."""
    if kind == "get, whole replies":
        return [bulk(100)] * 200, 200
    if kind == "get 300 B, 64-byte pieces":
        data = bulk(300) * 200
        return [data[i : i + 64] for i in range(0, len(data), 64)], 200
    if kind == "64 pipelined gets per read":
        return [bulk(100) * 64] * 4, 256
    if kind == "MGET of 100 x 100 B, 4 KiB pieces":
        data = (b"*100\r\n" + bulk(100) * 100) * 20
        return [data[i : i + 4096] for i in range(0, len(data), 4096)], 20
    raise ValueError(kind)


WORKLOADS = [
    "get, whole replies",
    "get 300 B, 64-byte pieces",
    "64 pipelined gets per read",
    "MGET of 100 x 100 B, 4 KiB pieces",
]


def drive(reader: Any, reads: list[bytes]) -> int:
    """What Pipe.data_received does: feed, then take replies until none is whole."""
    got = 0
    feed, gets = reader.feed, reader.gets
    for data in reads:
        feed(data)
        reply = gets()
        while reply is not False:
            got += 1
            reply = gets()
    return got


def sample(module: ModuleType, reads: list[bytes], replies: int, seconds: float) -> float:
    reader = module.Resp2Reader()
    done = 0
    started = time.perf_counter()
    while True:
        done += drive(reader, reads)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def kept(module: ModuleType) -> float:
    """MiB of heap a reader keeps after 100,000 replies of 300 B fed in 64-byte pieces."""
    reads, replies = stream_of("get 300 B, 64-byte pieces")
    reader = module.Resp2Reader()
    drive(reader, reads)  # warm-up
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(100_000 // replies):
        drive(reader, reads)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return grown / 2**20


def reset(module: ModuleType) -> None:
    incomplete = getattr(module, "_INCOMPLETE", None)
    if incomplete is not None:
        incomplete.__traceback__ = None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default="1d11d4b", help="the commit before the fix")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=0.2, help="per sample")
    parser.add_argument("--markdown", type=Path)
    options = parser.parse_args()

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True)
        return done.stdout

    baseline = git("rev-parse", "--short", options.baseline).strip()
    head = git("rev-parse", "--short", "HEAD").strip()
    dirty = " (with uncommitted changes)" if git("status", "--porcelain", RESP).strip() else ""
    baseline_imports()
    before = git("show", f"{options.baseline}:{BASELINE_RESP}")
    readers = {
        f"before ({baseline})": load("resp_before", before),
        f"after ({head}{dirty})": load("resp_after", (ROOT / RESP).read_text(encoding="utf-8")),
    }
    load_start = os.getloadavg()
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(options.rounds):
        for workload in WORKLOADS:
            reads, replies = stream_of(workload)
            for name, module in readers.items():
                rates.setdefault((workload, name), []).append(
                    sample(module, reads, replies, options.seconds)
                )
                reset(module)
    retained = {name: kept(module) for name, module in readers.items()}
    load_end = os.getloadavg()

    names = list(readers)
    lines = [
        f"- machine: {os.cpu_count()} CPUs; CPython {platform.python_version()}; "
        f"{platform.platform()}",
        f"- load average: {' '.join(f'{v:.2f}' for v in load_start)} at the start, "
        f"{' '.join(f'{v:.2f}' for v in load_end)} at the end (1, 5, 15 min)",
        f"- rounds: {options.rounds}, {options.seconds:g} s per sample, interleaved",
        "",
        "| workload (replies/s, median; best in brackets) | "
        f"{' | '.join(names)} | after / before |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for workload in WORKLOADS:
        cells = []
        medians = []
        for name in names:
            values = rates[(workload, name)]
            medians.append(statistics.median(values))
            cells.append(f"{medians[-1]:,.0f} ({max(values):,.0f})")
        lines.append(f"| {workload} | {' | '.join(cells)} | {medians[1] / medians[0]:.2f}x |")
    lines.append(
        "| heap kept after 100,000 replies of 300 B in 64-byte pieces (MiB) | "
        + " | ".join(f"{retained[name]:.2f}" for name in names)
        + " | |"
    )
    text = "\n".join(lines)
    print(text)
    if options.markdown is not None:
        options.markdown.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
