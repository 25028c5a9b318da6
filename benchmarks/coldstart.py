"""Cold start: whole-process wall time of building a Redis cache vs ``import redis``.

Each command is a fresh ``python -c`` process; the commands run alternately,
many times, and the median wall time of each is compared, so disk caches and
CPU frequency drift hit them all alike.

The programs run as an installed application does: with bytecode. An
installer (pip) compiles it; an environment set up otherwise may hold none,
and with ``PYTHONDONTWRITEBYTECODE`` set (as on some CI machines) every run
would compile every module from source, which measures the compiler. So that
variable is left out of the programs' environment, and the warm-up runs write
the bytecode the measured runs then read.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from typing import Any

__all__ = ["commands", "measure"]


def commands(port: int) -> dict[str, str]:
    """The measured programs by name: the baseline, ours, and bare interpreter start."""
    return {
        "import redis": "import redis",
        "pevensie cache.new(driver='redis')": (
            "from pevensie_cache import cache; "
            f"cache.new(driver='redis', host='127.0.0.1', port={port})"
        ),
        "python -c pass": "pass",
    }


def _run_once(code: str) -> tuple[float, int, str]:
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - start
    lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return elapsed, done.returncode, lines[-1] if lines else ""


def measure(port: int, runs: int, warmup: int = 2) -> dict[str, Any]:
    """Run every command ``warmup`` + ``runs`` times, alternating, and summarise."""
    programs = commands(port)
    names = list(programs)
    times: dict[str, list[float]] = {name: [] for name in names}
    failures: dict[str, str] = {}
    for i in range(warmup + runs):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            if name in failures:
                continue
            elapsed, code, last_line = _run_once(programs[name])
            if code != 0:
                missing = "DriverNotFound" in last_line or "No module named" in last_line
                failures[name] = (
                    "driver not installed" if missing else (last_line or f"exit {code}")
                )
                continue
            if i >= warmup:
                times[name].append(elapsed)
    result: dict[str, Any] = {"runs": runs, "programs": {}}
    for name in names:
        entry: dict[str, Any] = {"code": programs[name]}
        if name in failures:
            entry["error"] = failures[name]
        elif times[name]:
            entry["median_ms"] = statistics.median(times[name]) * 1000
            entry["min_ms"] = min(times[name]) * 1000
        result["programs"][name] = entry
    base = result["programs"]["import redis"].get("median_ms")
    ours = result["programs"]["pevensie cache.new(driver='redis')"].get("median_ms")
    result["ratio"] = ours / base if base and ours else None
    return result
