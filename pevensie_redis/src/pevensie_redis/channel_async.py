"""The async driver's I/O: commands to one server over a few multiplexed pipes.

The twin of :mod:`~pevensie_redis.channel` (same names, same guarantees), for
one event loop. A :class:`Channel` keeps up to ``pool_size``
:class:`~pevensie_redis.pipe.Pipe` connections; each carries the commands of
many tasks at once, so no task ever waits for a free connection. A new pipe
is opened only when every open one has many commands outstanding: the fewer
the pipes, the more commands share each write and read.

- retries: a connection error or timeout closes the pipe; the command is sent
  again on a fresh pipe after an exponential backoff, up to ``retries`` times
  (a command that is not idempotent only when it cannot have reached the
  server);
- timeouts: connecting, and each reply, are bounded by ``timeout``; a server
  that stalls fails every command waiting on that pipe;
- health: a pipe idle for :data:`~pevensie_redis.pool.HEALTH_CHECK_INTERVAL`
  seconds is checked with ``PING`` before a command that is not idempotent;
- Sentinel: each new pipe goes to the primary the sentinels name; a ``READONLY``
  reply (the primary became a replica) retires that pipe and retries. While
  the channel is used it asks the sentinels again about once a second
  (:class:`~pevensie_redis.primary_check.PrimaryCheck`, in a task of its own:
  no caller waits for it); when they name another server, the pipes to the
  former one are retired, so writes leave a former primary that stays up
  (``SENTINEL FAILOVER``) before it is turned into a replica.

A channel is bound to the event loop it was opened on: using it from another
loop raises :class:`~pevensie_cache.WrongEventLoop` at once instead of hanging.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, InvalidResponse, ReadOnlyError, RedisError
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import TimeoutError as RedisPyTimeoutError

from pevensie_cache.errors import WrongEventLoop
from pevensie_redis.config import RedisConfig
from pevensie_redis.errors import RedisConnectionError, map_error, near_cache_refused
from pevensie_redis.listener_async import InvalidationListener
from pevensie_redis.lock_releases_async import LockReleases
from pevensie_redis.near import NearStore, heartbeat
from pevensie_redis.pipe import Endpoint, Pipe, open_pipe
from pevensie_redis.pool import HEALTH_CHECK_INTERVAL
from pevensie_redis.primary_check import PrimaryCheck
from pevensie_redis.protocol.commands import PING, PING_REPLY, Shape, describe, pack_handshake
from pevensie_redis.sentinel import find_primary, find_replicas

__all__ = [
    "SPREAD_AT",
    "Channel",
    "endpoint",
    "not_connected_channel",
    "open_channel",
    "open_lock_releases",
    "open_replica_channel",
    "replica_finder",
]

SPREAD_AT = 32
"""Commands outstanding on every open pipe before another pipe is opened (up to ``pool_size``)."""

_T = TypeVar("_T")
_RETRYABLE = (RedisPyConnectionError, RedisPyTimeoutError)
_FAILURES = (RedisError, OSError)


class _PrimaryMoved(RedisPyConnectionError):
    """A ``READONLY`` reply through Sentinel: the pipe's server is no longer the primary."""


class Channel:
    """Commands to one server over multiplexed pipes, for the tasks of one event loop."""

    def __init__(
        self,
        resolve: Callable[[], Awaitable[Endpoint]],
        pool_size: int,
        retries: int,
        *,
        follows_primary: bool = False,
    ) -> None:
        """Open pipes to what ``resolve()`` names, at most ``pool_size`` of them."""
        self._resolve = resolve
        self._pool_size = pool_size
        self._retries = retries
        self._follows_primary = follows_primary
        self._backoff = ExponentialBackoff()
        self._loop = asyncio.get_running_loop()
        self._pipes: list[Pipe] = []
        self._retired: list[Pipe] = []
        self._opening: asyncio.Future[Pipe] | None = None
        self._closed = False
        self._listener: InvalidationListener | None = None
        self._primary_check = PrimaryCheck() if follows_primary else None
        self._asking: asyncio.Task[None] | None = None
        self.near: NearStore | None = None
        """The near cache's store, when ``near_cache`` is on."""

    pool = None
    """No redis-py pool: the async face has its own pipes."""

    @property
    def pipes(self) -> list[Pipe]:
        """The open pipes (for tests and statistics)."""
        return list(self._pipes)

    async def close(self) -> None:
        """Close every pipe; commands still waiting fail with a connection error.

        Called from another event loop, it leaves the closing to the channel's
        own loop (transports and tasks are not thread-safe); when that loop has
        already ended, nothing can close them through it, and their sockets are
        released with the transports.
        """
        if asyncio.get_running_loop() is not self._loop:
            closing = self.close()
            try:
                asyncio.run_coroutine_threadsafe(closing, self._loop)
            except RuntimeError:  # that loop is closed
                closing.close()
            return
        if self._listener is not None:
            await self._listener.stop()
        self._closed = True
        if self._asking is not None:
            self._asking.cancel()
        pipes, self._pipes = self._pipes + self._retired, []
        self._retired = []
        for pipe in pipes:
            pipe.close()

    # -- commands ----------------------------------------------------------------------

    async def execute(self, packed: bytes, command: str, shape: Shape | None = None) -> Any:
        """Send one packed command and return its reply; an error reply is raised mapped.

        A reply that does not have ``shape`` closes the pipe it came on and
        raises :class:`~pevensie_redis.RedisProtocolError`.
        """
        if asyncio.get_running_loop() is not self._loop:
            raise _wrong_loop()
        try:
            try:  # opening a pipe is part of the attempt: a failed connect is retried too
                pipe = self._ready() or await self._fresh()
                reply = await pipe.send(packed)
                if reply.__class__ is ReadOnlyError and self._follows_primary:
                    raise self._moved(pipe)
                if shape is not None and not shape(reply) and not isinstance(reply, Exception):
                    raise _misshapen(pipe, command, reply)
            except _RETRYABLE as exc:
                reply = await self._retry(lambda p: _send(p, packed, command, shape), exc, True)
        except _FAILURES as exc:
            raise map_error(exc, command) from exc
        if isinstance(reply, Exception):
            raise map_error(reply, command) from reply
        return reply

    async def pipeline(
        self,
        commands: Sequence[bytes],
        command: str,
        *,
        idempotent: bool = True,
        fill: bool = False,
        shapes: Sequence[Shape | None] | None = None,
    ) -> list[Any]:
        """Send every command at once, then read every reply, in order.

        Error replies come back in place as ``ResponseError`` instances. A
        command that is not ``idempotent`` is not sent twice. ``fill``: the
        replies fill the near cache, so they must come from the server its
        listener hears. ``shapes`` (parallel to ``commands``, ``None`` for
        any): a reply without its command's shape closes the pipe and raises
        :class:`~pevensie_redis.RedisProtocolError`.
        """
        if fill and self._follows_primary:
            return await self._fill(commands, command, shapes)
        if asyncio.get_running_loop() is not self._loop:
            raise _wrong_loop()
        try:
            try:
                pipe = self._ready() or await self._fresh()
                if not idempotent and self._loop.time() - pipe.last_reply > HEALTH_CHECK_INTERVAL:
                    await _send(pipe, PING, "PING", PING_REPLY)
                return await self._send_many(pipe, commands, command, shapes)
            except _RETRYABLE as exc:
                return await self._retry(
                    lambda p: self._send_many(p, commands, command, shapes), exc, idempotent
                )
        except _FAILURES as exc:
            raise map_error(exc, command) from exc

    async def _fill(
        self, commands: Sequence[bytes], command: str, shapes: Sequence[Shape | None] | None
    ) -> list[Any]:
        """Run a near-cache read through Sentinel, and check it ran where the listener listens.

        After a failover the listener and this pipe may have followed the
        primary at different moments: invalidations from one server say nothing
        of the other's values, so the read is not kept, and the listener moves.
        """
        listener = self._listener

        async def attempt(pipe: Pipe) -> list[Any]:
            replies = await self._send_many(pipe, commands, command, shapes)
            if listener is not None and listener.server != pipe.endpoint.label:
                listener.moved()
            return replies

        if asyncio.get_running_loop() is not self._loop:
            raise _wrong_loop()
        try:
            try:
                pipe = self._ready() or await self._fresh()
                return await attempt(pipe)
            except _RETRYABLE as exc:
                return await self._retry(attempt, exc, True)
        except _FAILURES as exc:
            raise map_error(exc, command) from exc

    async def _send_many(
        self,
        pipe: Pipe,
        commands: Sequence[bytes],
        command: str,
        shapes: Sequence[Shape | None] | None,
    ) -> list[Any]:
        futures = pipe.send_many(commands)
        try:
            if pipe.load > SPREAD_AT:
                await pipe.drained()
            replies = [await future for future in futures]
        except BaseException:
            for future in futures:  # a cancelled caller: drop the replies it will not read
                future.cancel()
            raise
        if self._follows_primary and any(reply.__class__ is ReadOnlyError for reply in replies):
            raise self._moved(pipe)
        if shapes is not None:
            for reply, shape in zip(replies, shapes, strict=True):
                if shape is not None and not shape(reply) and not isinstance(reply, Exception):
                    raise _misshapen(pipe, command, reply)
        return replies

    async def _retry(
        self, attempt: Callable[[Pipe], Awaitable[_T]], error: Exception, idempotent: bool
    ) -> _T:
        """Retry after ``error`` on a fresh pipe, with backoff, up to ``retries`` times."""
        failures = 1
        while True:
            # READONLY (the primary moved), or a pipe that failed to open: the command did not run.
            unsent = isinstance(error, _PrimaryMoved) or getattr(error, "pevensie_not_sent", False)
            if (
                failures > self._retries
                or (not idempotent and not unsent)
                or isinstance(error, AuthenticationError)
            ):
                raise error
            delay = self._backoff.compute(failures)
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                return await attempt(await self._fresh())
            except _RETRYABLE as exc:
                error = exc
                failures += 1

    # -- pipes -------------------------------------------------------------------------

    def _ready(self) -> Pipe | None:
        """Return the least loaded open pipe, unless a new one should be opened first."""
        check = self._primary_check
        if check is not None and check.due():
            self._asking = self._loop.create_task(self._ask_for_primary(check))
            self._asking.add_done_callback(_consume)
        pipes = self._pipes
        if not pipes:
            return None
        pipe = pipes[0] if len(pipes) == 1 else min(pipes, key=_load)
        if pipe.closed:
            return None
        if pipe.load < SPREAD_AT or len(pipes) >= self._pool_size:
            return pipe
        if self._opening is None:
            self._opening = self._loop.create_task(self._open())
            self._opening.add_done_callback(_consume)
        return pipe

    async def _fresh(self) -> Pipe:
        """Return an open pipe, opening one when none is usable (callers share one opening)."""
        self._pipes = [pipe for pipe in self._pipes if not pipe.closed]
        pipe = self._ready()
        if pipe is not None:
            return pipe
        if self._closed:
            raise RedisPyConnectionError("the channel was closed")
        if self._opening is None:
            self._opening = self._loop.create_task(self._open())
            self._opening.add_done_callback(_consume)
        return await asyncio.shield(self._opening)

    async def _open(self) -> Pipe:
        try:
            endpoint = await self._resolve()
            pipe = await open_pipe(endpoint)
        except _RETRYABLE as exc:
            # Nothing reached the server: even a command that must run once may be retried.
            setattr(exc, "pevensie_not_sent", True)  # noqa: B010
            raise
        finally:
            self._opening = None
        if self._closed:
            pipe.close()
            raise RedisPyConnectionError("the channel was closed")
        self._retire_all_but(endpoint.label)
        self._pipes.append(pipe)
        return pipe

    async def _ask_for_primary(self, check: PrimaryCheck) -> None:
        """Ask the sentinels for the primary; retire the pipes to any other server."""
        try:
            primary = await self._resolve()
        except _FAILURES:
            return  # no sentinel answered: keep the primary we know
        finally:
            check.done()
        if not self._closed:
            self._retire_all_but(primary.label)

    def _retire_all_but(self, label: str) -> None:
        """Send no new command to a server other than ``label``; close idle retired pipes."""
        stale = [p for p in self._pipes if p.endpoint.label != label]
        if stale:  # the primary moved: no new command goes to the old one
            self._pipes = [p for p in self._pipes if p not in stale]
            self._retired.extend(stale)
        self._retired = [p for p in self._retired if not _close_if_idle(p)]

    def _moved(self, pipe: Pipe) -> _PrimaryMoved:
        pipe.close()
        return _PrimaryMoved(f"{pipe.endpoint.label} is no longer the primary (READONLY)")


def _load(pipe: Pipe) -> int:
    return pipe.load


def _close_if_idle(pipe: Pipe) -> bool:
    if pipe.load == 0 or pipe.closed:
        pipe.close()
        return True
    return False


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a finished opening's error, so asyncio does not report it as never retrieved."""
    if not task.cancelled():
        task.exception()


async def _send(pipe: Pipe, packed: bytes, command: str, shape: Shape | None) -> Any:
    reply = await pipe.send(packed)
    if shape is not None and not shape(reply) and not isinstance(reply, Exception):
        raise _misshapen(pipe, command, reply)
    return reply


def _misshapen(pipe: Pipe, command: str, reply: Any) -> InvalidResponse:
    """Close ``pipe``, whose reply to ``command`` is not of its shape; return the error to raise.

    Such a pipe is out of step (or not talking to a Redis server): every later
    reply on it would be wrong too.
    """
    pipe.close()
    return InvalidResponse(f"{pipe.endpoint.label}: {command} got {describe(reply)} in reply")


def _wrong_loop() -> WrongEventLoop:
    return WrongEventLoop(
        "this cache was connected on another event loop: connect a cache in each loop "
        "(or thread) that uses it"
    )


class _NotConnected:
    """The channel of a driver that is not connected: every call says so."""

    pool = None
    near = None

    async def execute(self, packed: bytes, command: str, shape: Shape | None = None) -> Any:
        raise RedisConnectionError("the Redis driver is not connected")

    async def pipeline(
        self,
        commands: Sequence[bytes],
        command: str,
        *,
        idempotent: bool = True,
        fill: bool = False,
        shapes: Sequence[Shape | None] | None = None,
    ) -> list[Any]:
        raise RedisConnectionError("the Redis driver is not connected")

    async def close(self) -> None:
        pass


not_connected_channel = _NotConnected()
"""Stands in for a channel while a driver is disconnected."""


def endpoint(config: RedisConfig, host: str | None = None, port: int | None = None) -> Endpoint:
    """Return the :class:`Endpoint` of the server ``config`` names (or of ``host:port``)."""
    handshake = tuple(
        pack_handshake(config.username, config.password, config.db, config.client_name)
    )
    if config.unix_socket_path is not None and host is None:
        return Endpoint(
            label=config.unix_socket_path,
            path=config.unix_socket_path,
            handshake=handshake,
            timeout=config.timeout_seconds,
        )
    host = config.host if host is None else host
    port = config.port if port is None else port
    return Endpoint(
        label=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        host=host,
        port=port,
        tls=tls_context(config) if config.tls else None,
        server_hostname=host if config.tls and config.tls_verify else None,
        handshake=handshake,
        timeout=config.timeout_seconds,
    )


def tls_context(config: RedisConfig) -> ssl.SSLContext:
    """Return the TLS settings of ``config`` as an ``ssl.SSLContext`` (verifying by default)."""
    context = ssl.create_default_context(cafile=config.tls_ca_file)
    if config.tls_cert_file is not None:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    if not config.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def open_channel(config: RedisConfig) -> Channel:
    """Open the first pipe to the server ``config`` names (through the sentinels, if any).

    Raises the driver's errors when it cannot: one connection attempt, without
    retries, so a dead server fails within the timeout.
    """
    if config.sentinels:
        assert config.service_name is not None  # RedisConfig requires it with sentinels
        service = config.service_name
        sentinels = _sentinel_endpoints(config)

        async def resolve() -> Endpoint:
            host, port = await find_primary(sentinels, service)
            return endpoint(config, host, port)

    else:
        fixed = endpoint(config)

        async def resolve() -> Endpoint:
            return fixed

    channel = Channel(
        resolve, config.pool_size, config.retries, follows_primary=bool(config.sentinels)
    )
    try:
        pipe = await channel._fresh()
        reply = await _send(pipe, PING, "PING", PING_REPLY)
        if isinstance(reply, Exception):
            raise reply
        if config.near_cache:
            await _start_near_cache(channel, resolve, config)
    except _FAILURES as exc:
        await channel.close()
        raise map_error(exc, f"connecting to {config.display_url()}") from exc
    except BaseException:
        # A ConfigError (the server refuses the near cache), or cancelled: the pipe
        # still opening (shielded) is closed as soon as it opens.
        await channel.close()
        raise
    return channel


def open_lock_releases(config: RedisConfig, channel: Channel) -> LockReleases:
    """Return the lease waiters' subscriber for ``channel``'s server (it connects when asked).

    Its pipe goes where the channel's would (through Sentinel: the primary).
    """

    async def connect() -> Pipe:
        return await open_pipe(await channel._resolve())

    return LockReleases(connect, heartbeat=heartbeat(config.timeout_seconds))


def open_replica_channel(config: RedisConfig, host: str, port: int) -> Channel:
    """Return a channel to the replica at ``host:port`` (it connects on first use).

    The data nodes' credentials and TLS settings; no retries: a read that
    fails on a replica goes to the primary instead.
    """
    fixed = endpoint(config, host, port)

    async def resolve() -> Endpoint:
        return fixed

    return Channel(resolve, config.pool_size, 0)


def replica_finder(
    config: RedisConfig, channel: Channel
) -> Callable[[], Awaitable[list[tuple[str, int]]]]:
    """Return how to ask the sentinels which replicas of the service to read from.

    ``channel`` is the primary's (the sync twin asks through its sentinels; here
    each question opens its own pipe to a sentinel).
    """
    service = config.service_name
    if not config.sentinels or service is None:
        raise ValueError("replica_finder needs a configuration with sentinels")
    sentinels = _sentinel_endpoints(config)

    async def find() -> list[tuple[str, int]]:
        return await find_replicas(sentinels, service)

    return find


async def _start_near_cache(
    channel: Channel, resolve: Callable[[], Awaitable[Endpoint]], config: RedisConfig
) -> None:
    """Start the near cache's listener (key tracking needs Redis 6+ or Valkey)."""

    async def connect() -> Pipe:
        return await open_pipe(await resolve())

    near = NearStore(config.near_cache_size, config.near_cache_max_bytes)
    listener = InvalidationListener(connect, near, heartbeat=heartbeat(config.timeout_seconds))
    channel.near, channel._listener = near, listener
    # Bounded by the connect and reply timeouts of the listener's own first attempt.
    if not await listener.start(wait=2 * config.timeout_seconds + 1):
        failure = listener.failure or RedisPyTimeoutError("the invalidation channel did not start")
        refused = near_cache_refused(failure)
        if refused is not None:
            raise refused from failure
        raise failure


def _sentinel_endpoints(config: RedisConfig) -> list[Endpoint]:
    return [_sentinel_endpoint(config, host, port) for host, port in config.sentinels]


def _sentinel_endpoint(config: RedisConfig, host: str, port: int) -> Endpoint:
    """Return a sentinel's endpoint: the driver's timeout and TLS, the sentinels' credentials."""
    plain = endpoint(config, host, port)
    handshake = tuple(
        pack_handshake(config.sentinel_username, config.sentinel_password, 0, config.client_name)
    )
    return Endpoint(
        label=plain.label,
        host=host,
        port=port,
        tls=plain.tls,
        server_hostname=plain.server_hostname,
        handshake=handshake,
        timeout=plain.timeout,
    )
