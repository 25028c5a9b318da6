"""Helpers of the cache-aside suite: worker processes, raw key counts, the targets' URLs."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from pevensie_redis.testing import RedisServer
from pevensie_test_support import LocalCluster

HERE = Path(__file__).resolve().parent


@dataclass
class Target:
    """Where a test runs: a URL for the cache, raw clients for the checks."""

    name: str
    url: str
    _server: RedisServer | None = None
    _cluster: LocalCluster | None = None

    def nodes(self) -> list[redis.Redis]:
        """One raw client per primary (one for a single server); close them after use."""
        if self._server is not None:
            return [self._server.client()]
        assert self._cluster is not None
        return [node.client() for node in self._cluster.primaries()]

    def scan_keys(self) -> list[str]:
        """Every stored key, by SCAN on every primary with a raw client (duplicates kept)."""
        found: list[str] = []
        for client in self.nodes():
            with client:
                found.extend(_text(key) for key in client.scan_iter(count=1000))
        return found

    def write(self, items: Mapping[str, str]) -> None:
        """Store ``items`` (full keys) with a raw client, 1,000 keys a command."""
        keys = list(items)
        if self._server is not None:
            with self._server.client() as client:
                pipe = client.pipeline(transaction=False)
                for start in range(0, len(keys), 1000):
                    pipe.mset({key: items[key] for key in keys[start : start + 1000]})
                pipe.execute()
            return
        assert self._cluster is not None
        client = self.raw()
        try:
            for start in range(0, len(keys), 10_000):
                client.mset_nonatomic({key: items[key] for key in keys[start : start + 10_000]})
        finally:
            client.close()

    def raw(self) -> Any:
        """A raw client that routes any key (a ``RedisCluster`` on a cluster); close it after."""
        if self._server is not None:
            return self._server.client()
        assert self._cluster is not None
        return RedisCluster(host=self._cluster.host, port=self._cluster.port, decode_responses=True)


def _text(key: bytes | str) -> str:
    return key.decode() if isinstance(key, bytes) else key


START_TIMEOUT = 120.0
"""Seconds a worker may take to import and connect: the machine may be loaded."""


class Workers:
    """``count`` worker processes running :func:`aside_workers.serve` against ``url``.

    Use it as a context manager: every process is killed by its PID on exit,
    pass or fail. :meth:`call` sends one command to every worker at once and
    returns their replies, so the workers' calls race each other.
    """

    def __init__(self, url: str, count: int, calls_file: Path) -> None:
        self.url = url
        self.calls_file = calls_file
        env = dict(os.environ)
        env["PEVENSIE_CACHE_URL"] = url
        env["ASIDE_CALLS"] = str(calls_file)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        self.processes: list[subprocess.Popen[str]] = []
        self._lines: list[queue.Queue[str | None]] = []
        try:
            for _ in range(count):
                process = subprocess.Popen(
                    [sys.executable, "-c", "import aside_workers; aside_workers.serve()"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                    cwd=HERE,
                )
                self.processes.append(process)
                lines: queue.Queue[str | None] = queue.Queue()
                self._lines.append(lines)
                threading.Thread(target=_pump, args=(process, lines), daemon=True).start()
            for index in range(count):
                ready = self._reply(index, START_TIMEOUT)
                assert ready == {"ready": self.processes[index].pid}
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def send(self, command: dict[str, Any], indexes: Iterable[int] | None = None) -> None:
        """Write ``command`` to the workers (all by default), as close together as possible."""
        line = json.dumps(command) + "\n"
        chosen = range(len(self.processes)) if indexes is None else indexes
        for index in chosen:
            stdin = self.processes[index].stdin
            assert stdin is not None
            stdin.write(line)
            stdin.flush()

    def replies(self, indexes: Iterable[int] | None = None, timeout: float = 60.0) -> list[Any]:
        """Return the next reply of each worker (all by default), waiting at most ``timeout``."""
        chosen = range(len(self.processes)) if indexes is None else indexes
        deadline = time.monotonic() + timeout
        return [self._reply(index, max(0.0, deadline - time.monotonic())) for index in chosen]

    def call(self, command: dict[str, Any], timeout: float = 60.0) -> list[Any]:
        """Send ``command`` to every worker at once and return their replies."""
        self.send(command)
        return self.replies(timeout=timeout)

    def kill(self, index: int) -> None:
        """SIGKILL one worker by its PID and reap it."""
        self.processes[index].kill()
        self.processes[index].wait(timeout=10)

    def stop(self) -> None:
        """Kill every worker still alive, by PID."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()

    def _reply(self, index: int, timeout: float) -> Any:
        try:
            line = self._lines[index].get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"worker {index} said nothing for {timeout:.0f} s") from None
        if line is None:
            process = self.processes[index]
            process.wait(timeout=10)
            stderr = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"worker {index} exited ({process.returncode}): {stderr[-2000:]}")
        return json.loads(line)


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert process.stdout is not None
    try:
        for line in process.stdout:
            lines.put(line)
    except ValueError:  # the pipe was closed by stop()
        pass
    lines.put(None)


def read_calls(path: Path, what: str | None = None) -> list[dict[str, Any]]:
    """Return the calls the workers recorded (those of ``what`` only, when given)."""
    if not path.exists():
        return []
    calls = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [call for call in calls if what is None or call["what"] == what]


def wait_for_calls(path: Path, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Wait until the workers have recorded ``count`` calls; return them."""
    deadline = time.monotonic() + timeout
    while True:
        calls = read_calls(path)
        if len(calls) >= count:
            return calls
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(calls)} calls recorded after {timeout} s, wanted {count}")
        time.sleep(0.005)


def cluster_url(nodes: Sequence[tuple[str, int]], **query: str) -> str:
    """Return the URL of a cluster reached through its first node."""
    host, port = nodes[0]
    options = "&".join(f"{name}={value}" for name, value in {"cluster": "true", **query}.items())
    return f"redis://{host}:{port}/0?{options}"
