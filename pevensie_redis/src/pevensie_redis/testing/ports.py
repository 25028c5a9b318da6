"""Free loopback ports for test servers, never handed out twice at once on one machine.

A port the kernel picks with ``bind(("127.0.0.1", 0))`` comes from the
ephemeral range, the same range outgoing connections take their source ports
from, and nothing keeps it for the caller once the probe socket closes. Under a
parallel test run two processes can then be given the same port before either
server binds it; one server fails to start while the other process's readiness
check reaches the first one's server and mistakes it for its own (a Cluster
node that "already knows other nodes" is how that shows).

:func:`free_port` instead picks a port below the ephemeral range, where
outgoing connections never land, and records it in a machine-wide reservation
file under an exclusive ``flock``: no other caller on the machine is given that
port for :data:`RESERVATION_SECONDS`, which covers a server's start. A port
still bound by a running server fails the bind probe and is skipped too.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
import time
from pathlib import Path

__all__ = ["RESERVATION_SECONDS", "free_port"]

RESERVATION_SECONDS = 300.0
"""How long a port handed out stays reserved for its caller (its server binds it sooner)."""

PORTS_FILE_ENV_VAR = "PEVENSIE_TEST_PORTS_FILE"
"""Where the reservations are kept (default: ``pevensie-test-ports`` in the temp directory)."""

_LOWEST = 20000
_ATTEMPTS = 500


def _ephemeral_floor() -> int:
    """Return the first port of the kernel's ephemeral range (32768 when unknown)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _kernel_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _reservations_path() -> Path:
    configured = os.environ.get(PORTS_FILE_ENV_VAR)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / "pevensie-test-ports"


def _read(handle: int) -> dict[int, float]:
    os.lseek(handle, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(handle, 65536):
        chunks.append(chunk)
    reserved: dict[int, float] = {}
    for line in b"".join(chunks).decode("ascii", "replace").splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0].isdigit():
            try:
                reserved[int(fields[0])] = float(fields[1])
            except ValueError:
                continue
    return reserved


def _write(handle: int, reserved: dict[int, float]) -> None:
    text = "".join(f"{port} {at:.3f}\n" for port, at in sorted(reserved.items()))
    os.lseek(handle, 0, os.SEEK_SET)
    os.ftruncate(handle, 0)
    os.write(handle, text.encode("ascii"))


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port free on ``host``, reserved for this caller across the machine.

    The port lies below the kernel's ephemeral range and no other caller of
    this function (in any process) is given it for :data:`RESERVATION_SECONDS`.
    Falls back to a port the kernel picks when the range below is too small.
    """
    highest = _ephemeral_floor() - 1
    if highest - _LOWEST < 1000:
        return _kernel_port(host)
    path = _reservations_path()
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        now = time.time()
        reserved = {
            port: at for port, at in _read(handle).items() if now - at < RESERVATION_SECONDS
        }
        chooser = random.SystemRandom()
        for _attempt in range(_ATTEMPTS):
            port = chooser.randint(_LOWEST, highest)
            if port in reserved or not _bindable(host, port):
                continue
            reserved[port] = now
            _write(handle, reserved)
            return port
        return _kernel_port(host)
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)
