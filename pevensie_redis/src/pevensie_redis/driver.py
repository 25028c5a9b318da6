"""The Redis driver: a bounded redis-py connection pool and a thin, fast command path.

Single ``get``/``set``/``delete`` calls skip redis-py's generic command layer
(argument normalisation, response callbacks, per-call closures) and talk to a
pooled connection directly: take it from the pool, send a pre-packed command,
read the reply, give it back. They keep what that layer guarantees:

- retries: a connection error or timeout disconnects the connection and
  retries the command (every command here is idempotent) up to
  ``config.retries`` times, with exponential backoff;
- health checks: the pool checks a connection before handing it out, and the
  connection PINGs first when it has been idle longer than the check interval;
- a broken connection is closed before it goes back to the pool;
- timeouts: ``config.timeout`` bounds connecting, each read and write, and the
  wait for a free pooled connection.

Batch operations send one multi-key command per chunk of keys: ``MGET``,
``MSET``, ``UNLINK``, and for ``set_many`` with a TTL one ``EVALSHA`` of a
cached script that sets every key with ``EX``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    NoScriptError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import TimeoutError as RedisPyTimeoutError
from redis.retry import Retry

from pevensie_redis.commands import (
    BATCH_SIZE,
    SET_EX_SCRIPT,
    SET_EX_SCRIPT_SHA,
    pack,
)
from pevensie_redis.config import RedisConfig, default_config
from pevensie_redis.errors import (
    RedisConnectionError,
    RedisDriverError,
    map_error,
)
from pevensie_redis.pool import CachePool

if TYPE_CHECKING:
    from pevensie_redis.cluster import RedisClusterDriver

__all__ = ["HEALTH_CHECK_INTERVAL", "RedisDriver", "new_cache_driver", "pool_options"]

HEALTH_CHECK_INTERVAL = 30
"""Seconds a pooled connection may sit idle before it PINGs the server before its next command."""

_T = TypeVar("_T")
_RETRYABLE = (RedisPyConnectionError, RedisPyTimeoutError)
_FAILURES = (RedisError, OSError)


class _Connection(Protocol):
    """The part of a redis-py connection the command path uses (redis-py is untyped here)."""

    def send_packed_command(self, command: Sequence[bytes], check_health: bool = True) -> None:
        """Send already packed bytes, reconnecting and health-checking first if needed."""

    def read_response(self) -> Any:
        """Read one reply; an error reply is raised as ``ResponseError``."""

    def disconnect(self) -> None:
        """Close the socket; the next send reconnects."""


class RedisDriver:
    """A Pevensie Cache driver for Redis-compatible servers; see :class:`RedisConfig`.

    Thread-safe: any number of threads share the pool of ``config.pool_size``
    connections. Build it with :func:`new_cache_driver` and hand it to
    ``cache.new(driver=...)``, or let ``cache.new(driver="redis", ...)`` do both.
    """

    def __init__(self, config: RedisConfig) -> None:
        """Prepare a driver for ``config``; nothing connects before ``connect()``."""
        if not isinstance(config, RedisConfig):
            raise TypeError(f"config must be a RedisConfig, not {type(config).__name__}")
        self.config = config
        self._pool: CachePool | None = None
        # The pool's acquire and release, bound once at connect and read together,
        # so a connection always goes back to the pool it came from.
        self._pool_ops: tuple[Callable[[], _Connection], Callable[[_Connection], None]] = (
            _not_connected,
            _ignore,
        )
        self._retries = config.retries
        self._backoff = ExponentialBackoff()
        self._scripting = True

    def __repr__(self) -> str:
        return f"RedisDriver({self.config.display_url()!r})"

    @property
    def connection_pool(self) -> CachePool | None:
        """The live redis-py pool while connected, else ``None``."""
        return self._pool

    # -- lifecycle -------------------------------------------------------------------

    def connect(self) -> None:
        """Build the pool, then check the server answers PING with these credentials.

        Raises :class:`RedisConnectionError`, :class:`RedisTimeoutError` or
        :class:`RedisAuthenticationError` (and closes everything) when it does not.
        """
        pool = self._make_pool()
        # One probe connection without retries: the check takes one attempt, so a
        # dead server fails within the timeout instead of once per retry.
        probe = pool.connection_class(**{**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)})
        try:
            probe.connect()
            probe.send_command("PING")
            probe.read_response()
        except _FAILURES as exc:
            pool.disconnect()
            raise map_error(exc, f"connecting to {self.config.display_url()}") from exc
        finally:
            probe.disconnect()
        self._scripting = True
        self._pool_ops = (pool.get_connection, pool.release)
        self._pool = pool

    def _make_pool(self) -> CachePool:
        """Build the connection pool for ``config`` (the Sentinel mode builds its own)."""
        return CachePool(**pool_options(self.config))

    def disconnect(self) -> None:
        """Close every connection of the pool, including those in use."""
        pool, self._pool = self._pool, None
        self._pool_ops = (_not_connected, _ignore)
        if pool is not None:
            pool.disconnect()

    # -- single operations: the hot path ---------------------------------------------

    def get(self, resource_type: str, key: str) -> str | None:
        """``GET <resource_type>:<key>``; ``None`` when absent or expired."""
        full = f"{resource_type}:{key}".encode()
        value = self._execute(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(full), full), "GET")
        if value is None:
            return None
        return _decode(value)

    def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """One atomic ``SET`` round trip: ``SET k v EX ttl``, or ``SET k v`` clearing any TTL."""
        full = f"{resource_type}:{key}".encode()
        data = value.encode()
        if ttl_seconds is None:
            packed = b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
                len(full),
                full,
                len(data),
                data,
            )
        else:
            ttl = b"%d" % ttl_seconds
            packed = b"*5\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$2\r\nEX\r\n$%d\r\n%b\r\n" % (
                len(full),
                full,
                len(data),
                data,
                len(ttl),
                ttl,
            )
        self._execute(packed, "SET")

    def delete(self, resource_type: str, key: str) -> None:
        """``UNLINK <resource_type>:<key>``; an absent key is fine."""
        full = f"{resource_type}:{key}".encode()
        self._execute(b"*2\r\n$6\r\nUNLINK\r\n$%d\r\n%b\r\n" % (len(full), full), "UNLINK")

    # -- batch operations ------------------------------------------------------------

    def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """One ``MGET`` per chunk of keys; misses are absent from the result."""
        prefix = f"{resource_type}:"
        chunks = _chunks(list(keys))
        commands = [pack(["MGET", *[prefix + key for key in chunk]]) for chunk in chunks]
        replies = self._run(lambda connection: _pipeline(connection, commands), "MGET")
        found: dict[str, str] = {}
        try:
            for chunk, values in zip(chunks, replies, strict=True):
                found.update(
                    {
                        key: value.decode()
                        for key, value in zip(chunk, values, strict=True)
                        if value is not None
                    }
                )
        except UnicodeDecodeError as exc:
            raise RedisDriverError(_NOT_TEXT) from exc
        return found

    def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        """``MSET`` without a TTL; with one, ``EVALSHA`` of a script doing ``SET ... EX``.

        A server that refuses scripts (ACL, renamed commands) gets a pipeline of
        ``SET ... EX`` instead, from then on.
        """
        prefix = f"{resource_type}:"
        pairs = [(prefix + key, value) for key, value in items.items()]
        if ttl_seconds is None:
            commands = [
                pack(["MSET", *[part for pair in chunk for part in pair]])
                for chunk in _chunks(pairs)
            ]
            self._run(lambda connection: _pipeline(connection, commands), "MSET")
            return
        ttl = str(ttl_seconds)
        if self._scripting:
            scripted = [
                pack(
                    [
                        "EVALSHA",
                        SET_EX_SCRIPT_SHA,
                        str(len(chunk)),
                        *[full for full, _ in chunk],
                        ttl,
                        *[value for _, value in chunk],
                    ]
                )
                for chunk in _chunks(pairs)
            ]
            try:
                self._run(
                    lambda connection: _run_script(connection, scripted),
                    "EVALSHA",
                    map_server_errors=False,
                )
                return
            except ResponseError as exc:
                if not _refuses_scripting(exc):
                    raise map_error(exc, "EVALSHA") from exc
                self._scripting = False
        commands = [pack(["SET", full, value, "EX", ttl]) for full, value in pairs]
        self._run(lambda connection: _pipeline(connection, commands), "SET EX (pipeline)")

    def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """One ``UNLINK`` per chunk of keys; absent keys are fine."""
        prefix = f"{resource_type}:"
        full = [prefix + key for key in keys]
        commands = [pack(["UNLINK", *chunk]) for chunk in _chunks(full)]
        self._run(lambda connection: _pipeline(connection, commands), "UNLINK")

    # -- the command path ------------------------------------------------------------

    def _execute(self, packed: bytes, command: str) -> Any:
        """Send one packed command on a pooled connection and return its reply."""
        acquire, release = self._pool_ops
        try:
            connection = acquire()
        except _FAILURES as exc:
            raise map_error(exc, command) from exc
        try:
            # Nested, so an error reply to a retried attempt is mapped too.
            try:
                # A sequence of buffers: send_packed_command iterates what it is given.
                connection.send_packed_command((packed,))
                return connection.read_response()
            except _RETRYABLE as exc:
                return self._retry(connection, lambda c: _send_read(c, packed), command, exc)
        except _FAILURES as exc:
            raise map_error(exc, command) from exc
        finally:
            release(connection)

    def _run(
        self,
        attempt: Callable[[_Connection], _T],
        command: str,
        *,
        map_server_errors: bool = True,
    ) -> _T:
        """Run ``attempt(connection)`` on a pooled connection, with the same guarantees.

        With ``map_server_errors=False`` an error reply (:class:`ResponseError`) is
        raised as redis-py's, for the caller to react to; every other failure is mapped.
        """
        acquire, release = self._pool_ops
        try:
            connection = acquire()
        except _FAILURES as exc:
            raise map_error(exc, command) from exc
        try:
            try:
                return attempt(connection)
            except _RETRYABLE as exc:
                return self._retry(connection, attempt, command, exc)
        except ResponseError as exc:
            if not map_server_errors:
                raise
            raise map_error(exc, command) from exc
        except _FAILURES as exc:
            raise map_error(exc, command) from exc
        finally:
            release(connection)

    def _retry(
        self,
        connection: _Connection,
        attempt: Callable[[_Connection], _T],
        command: str,
        error: Exception,
    ) -> _T:
        """Retry after ``error``: disconnect, back off, try again, up to ``retries`` times."""
        failures = 1
        while True:
            # The connection may hold half a reply: close it; the next send reconnects.
            connection.disconnect()
            if failures > self._retries or isinstance(error, AuthenticationError):
                raise map_error(error, command) from error
            delay = self._backoff.compute(failures)
            if delay > 0:
                time.sleep(delay)
            try:
                _connect_once(connection)
                return attempt(connection)
            except _RETRYABLE as exc:
                error = exc
                failures += 1


def new_cache_driver(config: RedisConfig | None = None) -> RedisDriver | RedisClusterDriver:
    """Return a Redis driver for ``cache.new(driver=...)``; ``None`` means the defaults.

    ``config.cluster`` gives the Redis Cluster driver, ``config.sentinels`` the
    Sentinel one; each mode's module is imported only when it is asked for.
    """
    config = default_config() if config is None else config
    if config.cluster:
        from pevensie_redis.cluster import RedisClusterDriver

        return RedisClusterDriver(config)
    if config.sentinels:
        from pevensie_redis.sentinel import RedisSentinelDriver

        return RedisSentinelDriver(config)
    return RedisDriver(config)


def pool_options(config: RedisConfig) -> dict[str, Any]:
    """Return the keyword arguments of the connection pool (:class:`CachePool`) for ``config``."""
    seconds = config.timeout_seconds
    options: dict[str, Any] = {
        "max_connections": config.pool_size,
        "timeout": seconds,
        "db": config.db,
        "username": config.username,
        "password": config.password,
        "socket_timeout": seconds,
        "socket_connect_timeout": seconds,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": Retry(ExponentialBackoff(), config.retries),
        "retry_on_error": [RedisPyConnectionError, RedisPyTimeoutError],
        "client_name": config.client_name,
        "decode_responses": False,
        # RESP2: every command we send has the same reply in both protocols, and RESP2
        # spares each new connection the HELLO and maintenance-notification handshakes
        # redis-py 8 sends under RESP3, and works with servers older than Redis 6.
        "protocol": 2,
    }
    if config.unix_socket_path is not None:
        options["connection_class"] = UnixDomainSocketConnection
        options["path"] = config.unix_socket_path
        return options
    options["host"] = config.host
    options["port"] = config.port
    options["socket_keepalive"] = True
    if not config.tls:
        options["connection_class"] = Connection
        return options
    options["connection_class"] = SSLConnection
    options["ssl_ca_certs"] = config.tls_ca_file
    options["ssl_certfile"] = config.tls_cert_file
    options["ssl_keyfile"] = config.tls_key_file
    options["ssl_cert_reqs"] = "required" if config.tls_verify else "none"
    options["ssl_check_hostname"] = config.tls_verify
    return options


def _not_connected() -> _Connection:
    raise RedisConnectionError("the Redis driver is not connected")


def _ignore(connection: _Connection) -> None:
    """Drop a connection handed back after the pool was closed."""


_ONE_CONNECT = Retry(NoBackoff(), 0)


def _connect_once(connection: Any) -> None:
    """Open ``connection`` with one connect attempt: the driver's retry loop is the only one.

    The connection's own ``retry`` would retry the TCP connect inside each of
    the driver's retries, so one call could cost ``(retries + 1) ** 2`` timeouts
    against a server that stops accepting. This thread alone holds the
    connection, so swapping its ``retry`` for the connect is safe.
    """
    if connection._sock is not None:
        return
    saved = connection.retry
    connection.retry = _ONE_CONNECT
    try:
        connection.connect()
    finally:
        connection.retry = saved


def _send_read(connection: _Connection, packed: bytes) -> Any:
    connection.send_packed_command((packed,))
    return connection.read_response()


def _pipeline(connection: _Connection, commands: list[bytes]) -> list[Any]:
    """Send every command at once, then read every reply; the first error reply is raised.

    Every reply is read before raising, so the connection stays in step.
    """
    connection.send_packed_command((commands[0] if len(commands) == 1 else b"".join(commands),))
    replies: list[Any] = []
    error: ResponseError | None = None
    for _ in commands:
        try:
            replies.append(connection.read_response())
        except ResponseError as exc:
            error = error or exc
            replies.append(None)
    if error is not None:
        raise error
    return replies


def _chunks(items: list[_T]) -> list[list[_T]]:
    return [items[start : start + BATCH_SIZE] for start in range(0, len(items), BATCH_SIZE)]


_NOT_TEXT = "the stored value is not UTF-8 text (written by another client?)"


def _decode(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise RedisDriverError(_NOT_TEXT) from exc


def _run_script(connection: _Connection, commands: list[bytes]) -> None:
    """Run packed ``EVALSHA`` commands, loading the script first if the server lacks it."""
    try:
        _pipeline(connection, commands)
    except NoScriptError:
        # First use on this server, or its script cache was flushed: load it once.
        _pipeline(connection, [pack(["SCRIPT", "LOAD", SET_EX_SCRIPT])])
        _pipeline(connection, commands)


def _refuses_scripting(exc: ResponseError) -> bool:
    """Whether an error reply means scripts are unavailable here (ACL, renamed or unknown)."""
    if isinstance(exc, NoPermissionError):
        return True
    text = str(exc).lower()
    return "unknown command" in text or "disabled" in text
