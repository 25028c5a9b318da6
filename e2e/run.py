"""End to end, as deployed: two apps serving a cached endpoint under load from locust.

``python e2e/run.py [--app fastapi|django|all] [--seconds S] [--users N] [--report FILE]``
(``nox -s e2e`` installs the pinned stack and runs it; CI: 10 s per app).

For each app: a throwaway valkey-server, the app under its production server
(FastAPI under ``uvicorn --loop uvloop --http httptools``, Django under
``gunicorn -k gevent``), ``locust --headless`` driving ``/items/{n}`` over
5,000 items (each cached 30 s: hits and misses), and the app's resident memory
(its whole process tree) sampled every second. An app passes when it served
every request without one failure, and its memory's floor did not rise by more
than ``RSS_BOUND`` after the warm-up (the first 30% of the run). Every process
started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pevensie_redis.testing import ProcessServer, find_server_binary, free_port

HERE = Path(__file__).resolve().parent
WARM_UP_SHARE = 0.3
RUNTIMES = {"fastapi": "uvloop", "django": "gevent"}
"""What each app must report running on (its /health says)."""
RSS_BOUND = 15 * 1024 * 1024
"""How much the floor of an app's resident memory may rise after the warm-up."""


@dataclass
class Outcome:
    app: str
    server: str
    seconds: float
    users: int
    requests: int = 0
    failures: int = 0
    rps: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    rss: list[tuple[float, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def growth(self) -> int:
        judged = [rss for t, rss in self.rss if t >= WARM_UP_SHARE * self.seconds]
        if len(judged) < 2:
            return 0
        window = max(2, len(judged) // 4)
        return min(judged[-window:]) - min(judged[:window])


def command(app: str, port: int) -> tuple[list[str], str]:
    python = sys.executable
    if app == "fastapi":
        return [
            python, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1",
            "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning",
        ], "uvicorn, uvloop, httptools, 1 process"  # fmt: skip
    return [
        python, "-m", "gunicorn", "-k", "gevent", "-w", "1", "--worker-connections", "1000",
        "-b", f"127.0.0.1:{port}", "--log-level", "warning", "django_site:application",
    ], "gunicorn -k gevent, 1 worker"  # fmt: skip


def tree_rss(process: psutil.Process) -> int:
    """Resident memory of ``process`` and its children (gunicorn's master and worker)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += member.memory_info().rss
    return total


def wait_healthy(port: int, app: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
    """Wait until ``/health`` answers; return the runtime it names (event loop or gevent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise RuntimeError(f"the app exited with {app.returncode} before it answered")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return str(json.load(answer)["runtime"])
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the app did not answer /health within {timeout:g} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM by PID (a graceful stop), then SIGKILL after 15 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def locust_totals(prefix: Path) -> dict[str, str]:
    with open(f"{prefix}_stats.csv", newline="", encoding="utf-8") as stats:
        rows = list(csv.DictReader(stats))
    return next(row for row in rows if row["Name"] == "Aggregated")


def run_app(app: str, seconds: float, users: int, work: Path) -> Outcome:
    server = ProcessServer(find_server_binary(), []).start()
    port = free_port()
    argv, described = command(app, port)
    outcome = Outcome(app, described, seconds, users)
    env = {**os.environ, "E2E_REDIS_URL": f"{server.url}?client_name=e2e-{app}"}
    log = open(work / f"{app}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(argv, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        runtime = wait_healthy(port, process)
        if not runtime.startswith(RUNTIMES[app]):
            outcome.problems.append(f"{app} runs on {runtime!r}, not {RUNTIMES[app]!r}")
        watched = psutil.Process(process.pid)
        done = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            while not done.wait(1.0):
                outcome.rss.append((time.monotonic() - started, tree_rss(watched)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        prefix = work / app
        load = subprocess.run(
            [
                sys.executable, "-m", "locust", "-f", "locustfile.py", "--headless",
                "-u", str(users), "-r", str(users), "-t", f"{seconds:g}s",
                "--host", f"http://127.0.0.1:{port}", "--csv", str(prefix),
                "--only-summary", "--stop-timeout", "5", "--loglevel", "WARNING",
            ],
            cwd=HERE, capture_output=True, text=True, timeout=seconds + 120, check=False,
        )  # fmt: skip
        done.set()
        sampler.join(5)
        totals = locust_totals(prefix)
        outcome.requests = int(totals["Request Count"])
        outcome.failures = int(totals["Failure Count"])
        outcome.rps = float(totals["Requests/s"])
        outcome.p50, outcome.p95, outcome.p99 = (float(totals[q]) for q in ("50%", "95%", "99%"))
        if outcome.failures:
            failures = Path(f"{prefix}_failures.csv").read_text(encoding="utf-8")
            outcome.problems.append(f"{outcome.failures} failed requests:\n{failures[:2000]}")
        if load.returncode not in (0, 1):  # locust exits 1 when a request failed
            outcome.problems.append(f"locust exited with {load.returncode}: {load.stderr[-2000:]}")
        if process.poll() is not None:
            outcome.problems.append(f"the app died during the run (exit {process.returncode})")
    except Exception as exc:
        outcome.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        stop(process)
        log.close()
        server.stop()
    if outcome.requests == 0:
        outcome.problems.append("no request was served")
    if outcome.growth > RSS_BOUND:
        outcome.problems.append(f"resident memory grew by {outcome.growth / 2**20:.1f} MiB")
    if outcome.problems:
        outcome.problems.append(f"app log:\n{(work / f'{app}.log').read_text()[-3000:]}")
    return outcome


def table(outcomes: list[Outcome]) -> str:
    lines = [
        "| app | server | seconds | users | requests | failures | requests/s | "
        "p50 / p95 / p99 (ms) | RSS (MiB) | RSS growth after warm-up |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for o in outcomes:
        first = o.rss[0][1] / 2**20 if o.rss else 0.0
        last = o.rss[-1][1] / 2**20 if o.rss else 0.0
        lines.append(
            f"| {o.app} | {o.server} | {o.seconds:g} | {o.users} | {o.requests:,} | "
            f"{o.failures} | {o.rps:,.0f} | {o.p50:g} / {o.p95:g} / {o.p99:g} | "
            f"{first:.1f} → {last:.1f} | {o.growth / 2**20:+.1f} MiB |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=["fastapi", "django", "all"], default="all")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--report", type=Path)
    options = parser.parse_args()
    apps = ["fastapi", "django"] if options.app == "all" else [options.app]
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pevensie-e2e-") as work:
        outcomes = [run_app(app, options.seconds, options.users, Path(work)) for app in apps]
    load_end = os.getloadavg()
    loads = (
        f"load average {' '.join(f'{v:.2f}' for v in load_start)} at the start, "
        f"{' '.join(f'{v:.2f}' for v in load_end)} at the end"
    )
    text = f"{table(outcomes)}\n\n{loads}"
    print(text)
    if options.report is not None:
        options.report.write_text(text + "\n", encoding="utf-8")
    failed = [o for o in outcomes if o.problems]
    for o in failed:
        print(f"\nFAILED {o.app}:\n" + "\n".join(o.problems), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
