"""The sync driver's I/O: send packed commands to one server over a pool, read the replies.

The async twin is :mod:`~pevensie_redis.channel_async`: the same names, over
multiplexed pipes. The driver logic (``driver_async.py``, and ``driver.py``
generated from it) sees only :func:`open_channel` and a :class:`Channel`.

A :class:`Channel` takes a connection from a
:class:`~pevensie_redis.pool.CachePool`, writes already packed bytes, reads the
replies and gives the connection back, keeping what redis-py's command layer
guarantees without its per-call cost:

- retries: a connection error or timeout closes the connection (it may hold
  half a reply), backs off exponentially and tries again on a fresh
  connection, up to ``retries`` times; a command that is not idempotent is
  retried only when it cannot have reached the server;
- health checks: the pool checks a connection before handing it out, and the
  connection PINGs first when it has been idle longer than the check interval;
- timeouts: the pool's ``timeout`` bounds connecting, each read and write, and
  the wait for a free pooled connection.

Failures are raised as the driver's own errors
(:func:`~pevensie_redis.errors.map_error`). Error *replies* of a pipeline are
returned in place, as redis-py's ``ResponseError`` instances, for the driver
logic to interpret; :meth:`PoolChannel.execute` raises them mapped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import AuthenticationError, InvalidResponse, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import TimeoutError as RedisPyTimeoutError
from redis.retry import Retry

from pevensie_cache import ConfigError
from pevensie_redis import compat
from pevensie_redis.config import RedisConfig
from pevensie_redis.errors import RedisConnectionError, map_error, near_cache_refused
from pevensie_redis.listener import InvalidationListener
from pevensie_redis.lock_releases import LockReleases
from pevensie_redis.near import NearStore, heartbeat
from pevensie_redis.pool import CachePool, pool_options
from pevensie_redis.protocol.commands import Shape, describe
from pevensie_redis.sentinel import ClearSentinel, sentinel_pool

__all__ = [
    "Channel",
    "not_connected_channel",
    "open_channel",
    "open_lock_releases",
    "open_replica_channel",
    "replica_finder",
]

_T = TypeVar("_T")
_RETRYABLE = (RedisPyConnectionError, RedisPyTimeoutError)
_FAILURES = (RedisError, OSError, ValueError)


class _Connection(Protocol):
    """The part of a redis-py connection the channel uses (redis-py is untyped here)."""

    def send_packed_command(self, command: Sequence[bytes], check_health: bool = True) -> None:
        """Send already packed bytes, reconnecting and health-checking first if needed."""

    def read_response(self) -> Any:
        """Read one reply; an error reply is raised as ``ResponseError``."""

    def disconnect(self) -> None:
        """Close the socket; the next send reconnects."""


class Channel:
    """Commands to one server through a pool of its connections; thread-safe."""

    __slots__ = (
        "_acquire",
        "_backoff",
        "_listener",
        "_release",
        "_retries",
        "_sentinel",
        "near",
        "pool",
    )

    def __init__(
        self,
        pool: CachePool,
        retries: int,
        sentinel: ClearSentinel | None = None,
        listener: InvalidationListener | None = None,
        near: NearStore | None = None,
    ) -> None:
        """Send through ``pool``, retrying a failed attempt up to ``retries`` times.

        With a near cache, ``listener`` keeps ``near`` coherent.
        """
        self.pool = pool
        self._acquire: Callable[[], _Connection] = pool.get_connection
        self._release: Callable[[_Connection], None] = pool.release
        self._retries = retries
        self._backoff = ExponentialBackoff()
        self._sentinel = sentinel
        self._listener = listener
        self.near = near

    def close(self) -> None:
        """Close the pool (connections in use as their call ends), the sentinels and listener."""
        if self._listener is not None:
            self._listener.stop()
        self.pool.disconnect()
        if self._sentinel is not None:
            self._sentinel.close()

    def execute(self, packed: bytes, command: str, shape: Shape | None = None) -> Any:
        """Send one packed command and return its reply; an error reply is raised mapped.

        A reply that does not have ``shape`` closes the connection it came on
        and raises :class:`~pevensie_redis.RedisProtocolError`.
        """
        try:
            connection = self._acquire()
        except _FAILURES as exc:
            raise map_error(exc, command) from exc
        try:
            # Nested, so an error reply to a retried attempt is mapped too.
            try:
                # A sequence of buffers: send_packed_command iterates what it is given.
                connection.send_packed_command((packed,))
                reply = connection.read_response()
            except _RETRYABLE as exc:
                reply = self._retry(connection, lambda c: _send_read(c, packed), exc, True)
            if shape is not None and not shape(reply):
                raise _misshapen(connection, command, reply)
            return reply
        except _FAILURES as exc:
            raise map_error(exc, command) from exc
        finally:
            self._release(connection)

    def pipeline(
        self,
        commands: Sequence[bytes],
        command: str,
        *,
        idempotent: bool = True,
        fill: bool = False,
        shapes: Sequence[Shape | None] | None = None,
    ) -> list[Any]:
        """Send every command at once, then read every reply, in order.

        Error replies come back in place as ``ResponseError`` instances; every
        reply is read, so the connection stays in step. A command that is not
        ``idempotent`` is not sent twice. ``fill``: the replies fill the near
        cache, so they must come from the server its listener hears.
        ``shapes`` (parallel to ``commands``, ``None`` for any): a reply
        without its command's shape closes the connection and raises
        :class:`~pevensie_redis.RedisProtocolError`.
        """
        if fill and self._listener is not None:
            self._listener.ensure_running()  # after a fork: the child listens on its own
        try:
            connection = self._acquire()
        except _FAILURES as exc:
            raise map_error(exc, command) from exc
        send = self._fill if fill and self._sentinel is not None else _pipeline
        try:
            try:
                replies = send(connection, commands)
            except _RETRYABLE as exc:
                replies = self._retry(connection, lambda c: send(c, commands), exc, idempotent)
            if shapes is not None:
                for reply, shape in zip(replies, shapes, strict=True):
                    if shape is not None and not shape(reply) and not isinstance(reply, Exception):
                        raise _misshapen(connection, command, reply)
            return replies
        except _FAILURES as exc:
            raise map_error(exc, command) from exc
        finally:
            self._release(connection)

    def _fill(self, connection: _Connection, commands: Sequence[bytes]) -> list[Any]:
        """Run a near-cache read; through Sentinel, check it ran where the listener listens.

        After a failover the listener and this connection may have followed the
        primary at different moments: invalidations from one server say nothing
        of the other's values, so the read is not kept, and the listener moves.
        """
        replies = _pipeline(connection, commands)
        listener = self._listener
        if listener is not None and listener.server != compat.server_of(connection):
            listener.moved()
        return replies

    def _retry(
        self,
        connection: _Connection,
        attempt: Callable[[_Connection], _T],
        error: Exception,
        idempotent: bool,
    ) -> _T:
        """Retry after ``error``: disconnect, back off, try again, up to ``retries`` times."""
        failures = 1
        while True:
            # The connection may hold half a reply: close it; the next send reconnects.
            connection.disconnect()
            if failures > self._retries or not idempotent or isinstance(error, AuthenticationError):
                raise error
            delay = self._backoff.compute(failures)
            if delay > 0:
                time.sleep(delay)
            try:
                compat.connect_once(connection)
                return attempt(connection)
            except _RETRYABLE as exc:
                error = exc
                failures += 1


def open_channel(config: RedisConfig) -> Channel:
    """Build the pool for ``config``, check the server answers PING, and return the channel.

    With ``config.sentinels`` the pool's connections go to the primary the
    sentinels name. The check takes one connection attempt without retries, so
    a dead server fails within the timeout instead of once per retry. Raises
    the driver's errors (and closes everything) when the server cannot be used.
    """
    sentinel: ClearSentinel | None = None
    if config.sentinels:
        pool: CachePool
        pool, sentinel = sentinel_pool(config)
    else:
        pool = CachePool(**pool_options(config))
    probe = pool.connection_class(**{**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)})
    listener: InvalidationListener | None = None
    near: NearStore | None = None
    try:
        probe.connect()
        probe.send_command("PING")
        probe.read_response()
        if config.near_cache:
            near = NearStore(config.near_cache_size, config.near_cache_max_bytes)
            listener = _start_listener(pool, near, config)
    except BaseException as exc:
        if listener is not None:
            listener.stop()
        pool.disconnect()
        if sentinel is not None:
            sentinel.close()
        if isinstance(exc, _FAILURES) and not isinstance(exc, ConfigError):
            raise map_error(exc, f"connecting to {config.display_url()}") from exc
        raise  # a ConfigError (the server refuses the near cache), or interrupted
    finally:
        probe.disconnect()
    return Channel(pool, config.retries, sentinel, listener, near)


def open_lock_releases(config: RedisConfig, channel: Channel) -> LockReleases:
    """Return the lease waiters' subscriber for ``channel``'s server (it connects when asked).

    Its connection goes where the pool's would (through Sentinel: the primary).
    """
    pool = channel.pool

    def connect() -> Any:
        connection = pool.connection_class(**pool.connection_kwargs)
        connection.connect()
        return connection

    return LockReleases(connect, heartbeat=heartbeat(config.timeout_seconds))


def open_replica_channel(config: RedisConfig, host: str, port: int) -> Channel:
    """Return a channel to the replica at ``host:port`` (it connects on first use).

    The data nodes' credentials and TLS settings; one connection attempt and no
    retries: a read that fails on a replica goes to the primary instead.
    """
    options = pool_options(config)
    options.update(host=host, port=port, retry=Retry(NoBackoff(), 0))
    return Channel(CachePool(**options), 0)


def replica_finder(config: RedisConfig, channel: Channel) -> Callable[[], list[tuple[str, int]]]:
    """Return how to ask the sentinels of ``channel`` which replicas of the service to read from."""
    sentinel = channel._sentinel
    service = config.service_name
    if sentinel is None or service is None:
        raise ValueError("replica_finder needs a channel opened through sentinels")

    def find() -> list[tuple[str, int]]:
        return sentinel.replicas(service)

    return find


def _start_listener(pool: CachePool, near: NearStore, config: RedisConfig) -> InvalidationListener:
    """Start the near cache's invalidation listener; it must be listening within the timeout."""

    def connect() -> Any:
        connection = pool.connection_class(**pool.connection_kwargs)
        connection.connect()
        return connection

    listener = InvalidationListener(connect, near, heartbeat=heartbeat(config.timeout_seconds))
    # Bounded by the connect and read timeouts of the listener's own first attempt.
    if not listener.start(wait=2 * config.timeout_seconds + 1):
        listener.stop()
        failure = listener.failure or RedisPyTimeoutError("the invalidation channel did not start")
        refused = near_cache_refused(failure)
        if refused is not None:
            raise refused from failure
        raise failure
    return listener


class _NotConnected:
    """The channel of a driver that is not connected: every call says so."""

    __slots__ = ()

    pool = None
    near = None

    def close(self) -> None:
        pass

    def execute(self, packed: bytes, command: str, shape: Shape | None = None) -> Any:
        raise RedisConnectionError("the Redis driver is not connected")

    def pipeline(
        self,
        commands: Sequence[bytes],
        command: str,
        *,
        idempotent: bool = True,
        fill: bool = False,
        shapes: Sequence[Shape | None] | None = None,
    ) -> list[Any]:
        raise RedisConnectionError("the Redis driver is not connected")


not_connected_channel = _NotConnected()
"""Stands in for a channel while a driver is disconnected."""


def _misshapen(connection: _Connection, command: str, reply: Any) -> InvalidResponse:
    """Close ``connection``, whose reply to ``command`` is not of its shape; return the error.

    Such a connection is out of step (or not talking to a Redis server): every
    later reply on it would be wrong too. It reconnects when next used.
    """
    connection.disconnect()
    return InvalidResponse(
        f"{compat.server_of(connection)}: {command} got {describe(reply)} in reply"
    )


def _send_read(connection: _Connection, packed: bytes) -> Any:
    connection.send_packed_command((packed,))
    return connection.read_response()


def _pipeline(connection: _Connection, commands: Sequence[bytes]) -> list[Any]:
    connection.send_packed_command((commands[0] if len(commands) == 1 else b"".join(commands),))
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(connection.read_response())
        except ResponseError as exc:
            replies.append(exc)
    return replies
