"""The handle every test server is used through, and the exit-time cleanup.

:class:`RedisServer` is what :func:`~pevensie_redis.testing.providers.start_server`
and the pytest fixtures return, whichever provider made the server: a child
process (:mod:`~pevensie_redis.testing.process`, with TLS in
:mod:`~pevensie_redis.testing.tls`), a container
(:mod:`~pevensie_redis.testing.container`) or the server named by
``PEVENSIE_TEST_REDIS_URL`` (:mod:`~pevensie_redis.testing.providers`). Every
server started here is stopped by its PID or container id when its handle is
stopped, and at interpreter exit as a backup (:func:`stop_all`).

>>> with start_server() as server:                     # doctest: +SKIP
...     server.client().set("k", "v")
...     server.kill(); server.restart()                # same port, same settings
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from pevensie_cache.urls import mask_url
from pevensie_redis.testing.binaries import ping
from pevensie_redis.testing.errors import ServerNotControllable

if TYPE_CHECKING:
    import redis

__all__ = [
    "READY_TIMEOUT",
    "ProviderKind",
    "RedisServer",
    "live_servers",
    "stop_all",
]

READY_TIMEOUT = 10.0
"""Seconds a new server has to answer PING."""

ProviderKind = Literal["env", "container", "binary"]
"""Where a server comes from: ``PEVENSIE_TEST_REDIS_URL``, a container, a binary."""

RAW_CLIENT_DEFAULTS: dict[str, Any] = {
    "decode_responses": True,
    "socket_timeout": 5.0,
    "socket_connect_timeout": 5.0,
}
"""The settings of :meth:`RedisServer.client` (any keyword argument overrides them)."""


def no_retry() -> Any:
    """Return a redis-py retry policy that never retries (assertions must see every error)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


class RedisServer:
    """A handle on one Redis-compatible server used by tests.

    ``url`` is ``redis://127.0.0.1:PORT/0`` (``rediss://`` for TLS) and never
    carries a password; ``provider`` says in words where the server comes
    from. Use it as a context manager, or call :meth:`stop` (idempotent).
    """

    kind: ProviderKind
    controllable: bool = True
    scheme = "redis"

    def __init__(self, *, host: str, port: int, provider: str, name: str = "") -> None:
        self.host = host
        self.port = port
        self.provider = provider
        self.name = name
        """A label for messages and the ``repr`` (a topology names its nodes)."""
        self.version = "unknown"
        self.server_name = "unknown"
        self._stopped = False

    # -- description -------------------------------------------------------------
    @property
    def url(self) -> str:
        """The server's URL, database 0, without credentials."""
        return f"{self.scheme}://{self.host}:{self.port}/0"

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of the server."""
        return self.host, self.port

    @property
    def pid(self) -> int | None:
        """The server's process id on this host, when known."""
        return None

    def __repr__(self) -> str:
        label = f" {self.name}" if self.name else ""
        return f"<{type(self).__name__}{label} {mask_url(self.url)} [{self.provider}]>"

    # -- control -----------------------------------------------------------------
    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL / ``docker kill``); :meth:`restart` brings it back."""
        raise ServerNotControllable(f"cannot kill {self!r}")

    def restart(self) -> None:
        """Start the server again on the same port and arguments; wait until it answers."""
        raise ServerNotControllable(f"cannot restart {self!r}")

    def pause(self) -> None:
        """Freeze the server (SIGSTOP / ``docker pause``): sockets stay open, nothing answers."""
        raise ServerNotControllable(f"cannot pause {self!r}")

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        raise ServerNotControllable(f"cannot resume {self!r}")

    def stop(self) -> None:
        """Stop the server for good and free its resources. Safe to call twice."""
        self._stopped = True
        _LIVE.discard(self)

    def release(self) -> None:
        """Give the server up without stopping it: it keeps running after this process exits.

        The exit-time cleanup (:func:`stop_all`) forgets it; :meth:`stop` still
        stops it. For a server another process takes over and stops by its PID.
        """
        _LIVE.discard(self)

    def is_running(self) -> bool:
        """Return True while the server process or container is alive (paused counts)."""
        return not self._stopped

    def logs(self, lines: int = 30) -> str:
        """Return the last ``lines`` lines of the server's log ('' when unknown)."""
        return ""

    def ensure_running(self) -> None:
        """Bring a paused or killed server back (a test may have left it so)."""
        if not self.controllable:
            return
        self.resume()
        if not self.is_running() or not self._answers():
            self.restart()

    # -- use ---------------------------------------------------------------------
    def client_options(self) -> dict[str, Any]:
        """Return the ``redis.Redis`` keyword arguments to reach this server."""
        return {"host": self.host, "port": self.port, "db": 0}

    def client(self, **options: Any) -> redis.Redis:
        """Return a raw redis-py client for assertions.

        It decodes responses, waits at most 5 s and never retries, so a test sees
        every error as it happens; any ``redis.Redis`` keyword overrides these.
        """
        import redis

        settings: dict[str, Any] = {
            **self.client_options(),
            **RAW_CLIENT_DEFAULTS,
            "retry": no_retry(),
        }
        settings.update(options)
        return redis.Redis(**settings)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers for subclasses --------------------------------------------------
    def _track(self) -> None:
        """Remember a started server for :func:`stop_all` (:meth:`stop` forgets it)."""
        _LIVE.add(self)

    def _answers(self) -> bool:
        return ping(self.host, self.port, timeout=1.0, **self._ping_options())

    def _ping_options(self) -> dict[str, Any]:
        options = self.client_options()
        for name in ("host", "port", "db"):
            options.pop(name, None)
        return options

    def _read_version(self) -> None:
        try:
            with self.client(socket_timeout=2.0) as client:
                info = client.info("server")
        except Exception:  # a server that hides INFO still works for tests
            return
        if "valkey_version" in info:
            self.server_name, self.version = "valkey", str(info["valkey_version"])
        else:
            self.server_name, self.version = "redis", str(info.get("redis_version", "unknown"))


# -- cleanup --------------------------------------------------------------------
_LIVE_LOCK = threading.Lock()


class _LiveSet:
    """The servers started and not yet stopped, for the exit-time cleanup."""

    def __init__(self) -> None:
        self._servers: dict[int, RedisServer] = {}

    def add(self, server: RedisServer) -> None:
        with _LIVE_LOCK:
            self._servers[id(server)] = server

    def discard(self, server: RedisServer) -> None:
        with _LIVE_LOCK:
            self._servers.pop(id(server), None)

    def snapshot(self) -> list[RedisServer]:
        with _LIVE_LOCK:
            return list(self._servers.values())


_LIVE = _LiveSet()


def live_servers() -> list[RedisServer]:
    """Return the servers started by this process and not stopped yet."""
    return _LIVE.snapshot()


def stop_all() -> None:
    """Stop every server this process started and has not stopped (runs at exit too)."""
    for server in _LIVE.snapshot():
        with contextlib.suppress(Exception):  # keep stopping the others
            server.stop()


atexit.register(stop_all)
