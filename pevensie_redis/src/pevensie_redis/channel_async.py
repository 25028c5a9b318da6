"""The driver's I/O, async face: commands to one server over a few multiplexed pipes.

This module is the source of the sync face too: ``channel.py`` is generated
from it by ``.ci/unasync.py`` (the pipes are then
:class:`~pevensie_redis.pipe.Pipe`, shared by threads, and background work
runs in short-lived threads: :mod:`~pevensie_redis.runtime`). Edit this
file, then run ``nox -s generate``.

One set of rules for both faces:

- **pipes**: a :class:`Channel` keeps up to ``pool_size`` pipes to the server
  its locator names; each carries the commands of many callers at once, so no
  caller waits for a free connection. A new pipe is opened, in the background,
  only when every open one has :data:`SPREAD_AT` commands outstanding, or is
  receiving a large reply, and commands go to the first pipe with room (in the
  order the pipes were opened): the fewer the pipes in use, the more commands
  share each write and read;
- **large traffic**: a command carrying more than
  :data:`~pevensie_redis.pipe_core.LARGE_REPLY` bytes, or a read whose reply
  was that large not long ago (a small memory of such reads), goes to a pipe
  of its own (while ``pool_size`` allows), so small commands never queue
  behind a transfer of megabytes; that pipe reads in the background while
  small commands are in flight on the others (at most
  ``large_read_rate`` bytes a second, full speed
  otherwise or once a read has waited half its timeout: see
  :class:`~pevensie_redis.pipe_core.Pacer`), so the transfer leaves their
  replies the CPU they need;
- **retries**: a connection error or timeout closes the pipe; the command is
  sent again on a fresh pipe after an exponential backoff
  (:func:`backoff`), up to ``retries`` times (a command that is not idempotent
  only when it cannot have reached the server);
- **timeouts**: connecting, and each reply, are bounded by ``timeout``; a
  server that stalls fails every command waiting on that pipe;
- **health**: a pipe idle for :data:`HEALTH_CHECK_INTERVAL` seconds is checked
  with ``PING`` before a command that is not idempotent;
- **a moving primary** (Sentinel, ``follows_primary``): each new pipe goes to
  the primary the locator names; a ``READONLY`` reply (the primary became a
  replica) retires that pipe and retries. While the channel is used it asks
  the locator again about once a second
  (:class:`~pevensie_redis.primary_check.PrimaryCheck`, in the background: no
  caller waits for it, except the commands that come after an idle spell,
  until its answer); when it names another server, the pipes to the former
  one are retired (closed once their last command has its reply);
- **fork safety**: in a forked child the parent's pipes are dropped, their
  sockets left alone (the parent still uses them), and the child opens its own;
- **exclusive connections**: :attr:`Channel.pool` lends a pipe to one caller
  for commands of its own (:class:`Leases`), counted in ``pool_size``.

On the async face a channel is bound to the event loop it was opened on:
using it from another loop raises :class:`~pevensie_cache.WrongEventLoop` at
once instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from redis.exceptions import AuthenticationError, InvalidResponse, ReadOnlyError, RedisError
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import TimeoutError as RedisPyTimeoutError

from pevensie_cache import forks
from pevensie_cache.errors import WrongEventLoop
from pevensie_redis import runtime_async
from pevensie_redis.config import RedisConfig
from pevensie_redis.endpoint import Endpoint, endpoint
from pevensie_redis.errors import RedisConnectionError, map_error
from pevensie_redis.near import NearStore
from pevensie_redis.pipe_async import Pipe, open_pipe
from pevensie_redis.pipe_core import LARGE_REPLY, Pacer, not_sent
from pevensie_redis.primary_check import PrimaryCheck
from pevensie_redis.protocol.commands import (
    PING,
    PING_REPLY,
    Shape,
    command_keys,
    describe,
    pack,
)

__all__ = [
    "HEALTH_CHECK_INTERVAL",
    "SPREAD_AT",
    "Channel",
    "Lease",
    "Leases",
    "PoolWaitTimeout",
    "backoff",
    "endpoint",
    "not_connected_channel",
    "open_channel",
]

logger = logging.getLogger("pevensie_redis")

SPREAD_AT = 32
"""Commands outstanding on every open pipe before another pipe is opened (up to ``pool_size``)."""

HEALTH_CHECK_INTERVAL = 30
"""Seconds a pipe may sit idle before a command that is not idempotent PINGs first."""

LARGE_READS = 64
"""How many reads with a large reply the channel remembers, to send them to the large pipe."""

ABANDONED_KEYS = 4096
"""Keys of abandoned commands whose pipe the channel remembers (see ``Channel._abandoned``)."""

SWEEP_EVERY = 0.05
"""Seconds between two sweeps of the abandoned commands that have run their course."""

SMALL_RECENT = 0.05
"""Seconds after a shared pipe's last reply during which the large-traffic pipe still yields."""

_T = TypeVar("_T")
_RETRYABLE = (RedisPyConnectionError, RedisPyTimeoutError)
_FAILURES = (RedisError, OSError)
_FREE_RETRIES = 3


class PoolWaitTimeout(RedisPyConnectionError):
    """Every connection was lent out (:class:`Leases`) for the whole ``timeout``."""

    pool_wait = True
    """Marks the error for :func:`~pevensie_redis.errors.map_error` (a pool wait, not a fault)."""


class _PrimaryMoved(RedisPyConnectionError):
    """A ``READONLY`` reply through Sentinel: the pipe's server is no longer the primary."""


class Listening(Protocol):
    """What the channel knows of the near cache's invalidation listener."""

    server: str | None

    def moved(self) -> None:
        """Listen again from scratch: a read ran on another server than the one listened to."""

    def ensure_running(self) -> None:
        """Start listening unless it listens (in a forked child, it does not)."""

    async def stop(self) -> None:
        """Stop listening."""


def backoff(failures: int) -> float:
    """Return the seconds before retry number ``failures`` (8 ms doubling, 512 ms at most)."""
    return float(min(0.512, 0.008 * 2**failures))


class Channel:
    """Commands to one server over multiplexed pipes, for many callers at once."""

    def __init__(
        self,
        resolve: Callable[[], Awaitable[Endpoint]],
        pool_size: int,
        retries: int,
        *,
        follows_primary: bool = False,
        timeout: float | None = None,
        large_read_rate: int = 0,
    ) -> None:
        """Open pipes to what ``resolve()`` names, at most ``pool_size`` of them.

        ``timeout``: how long a caller waits for a connection while every one
        is lent out (default: the endpoint's timeout, once known).
        ``large_read_rate``: bytes a second the pipe for large traffic reads while
        small commands are served (0: never slowed).
        """
        self._large_read_rate = large_read_rate
        self._resolve = resolve
        self._pool_size = pool_size
        self._retries = retries
        self._follows_primary = follows_primary
        self._wait_timeout = timeout
        self._loop = asyncio.get_running_loop()  # unasync: remove
        self._lock = threading.Lock()
        self._pipes: list[Pipe] = []
        self._bulk: Pipe | None = None
        self._retired: list[Pipe] = []
        self._lent: list[Pipe | None] = []
        """Pipes lent out (``None`` while one is opening for a borrower)."""
        self._opening: runtime_async.Flight[Pipe] | None = None
        self._opening_bulk: runtime_async.Flight[Pipe] | None = None
        self._asking: runtime_async.Flight[None] | None = None
        self._closed = False
        self._primary: str | None = None
        """The server the last pipe opened to (``host:port``)."""
        self._large: OrderedDict[bytes, None] = OrderedDict()
        self._after: dict[bytes, tuple[Pipe, int, float]] = {}
        """Keys of commands their callers abandoned: the pipe, its mark, until when."""
        self._sweep_at = 0.0
        self._primary_check = PrimaryCheck() if follows_primary else None
        self.listener: Listening | None = None
        """The near cache's invalidation listener, when ``near_cache`` is on."""
        self.near: NearStore | None = None
        """The near cache's store, when ``near_cache`` is on."""
        self.pool = Leases(self)
        """Connections lent to one caller at a time, for commands of its own."""
        forks.renew_after_fork(self)

    @property
    def pipes(self) -> list[Pipe]:
        """The open shared pipes (for tests and statistics)."""
        return list(self._pipes)

    async def close(self) -> None:
        """Close the channel: idle pipes now, the others once their last reply has come.

        Commands already sent get their replies (or fail with the pipe's
        timeout); new commands fail with a connection error.
        """
        if asyncio.get_running_loop() is not self._loop:  # unasync: remove
            closing = self.close()  # unasync: remove
            try:  # unasync: remove
                asyncio.run_coroutine_threadsafe(closing, self._loop)  # unasync: remove
            except RuntimeError:  # that loop is closed  # unasync: remove
                closing.close()  # unasync: remove
            return  # unasync: remove
        try:
            if self.listener is not None:
                await self.listener.stop()
        finally:  # the pipes close even when stopping the listener was interrupted
            with self._lock:
                self._closed = True
                pipes = [*self._pipes, *self._retired, *([self._bulk] if self._bulk else [])]
                self._pipes, self._bulk = [], None
                self._retired = [pipe for pipe in pipes if not _close_if_idle(pipe)]
                for pipe in self._retired:
                    pipe.retired = True

    # -- commands ----------------------------------------------------------------------

    async def execute(self, packed: bytes, command: str, shape: Shape | None = None) -> Any:
        """Send one packed command and return its reply; an error reply is raised mapped.

        A reply that does not have ``shape`` closes the pipe it came on and
        raises :class:`~pevensie_redis.RedisProtocolError`.
        """
        if asyncio.get_running_loop() is not self._loop:  # unasync: remove
            raise _wrong_loop()  # unasync: remove
        check = self._primary_check
        if check is not None and check.hold(self._wait_timeout or 5.0):
            await self._confirm(check)
        try:
            try:  # opening a pipe is part of the attempt: a failed connect is retried too
                after = self._pipe_after((packed,)) if self._after else None
                if after is not None:
                    pipe = after
                elif len(packed) > LARGE_REPLY or (self._large and packed in self._large):
                    pipe = await self._large_lane()
                else:
                    pipe = self._ready() or await self._fresh()
                try:
                    reply = await pipe.call(packed)
                except _RETRYABLE:
                    raise
                except BaseException:
                    self._abandoned(pipe, (packed,))  # cancelled, interrupted: it may still run
                    raise
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
        if reply.__class__ is bytes and len(reply) > LARGE_REPLY:
            self._remember_large(packed)
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
        if asyncio.get_running_loop() is not self._loop:  # unasync: remove
            raise _wrong_loop()  # unasync: remove
        listener = self.listener if fill and self._follows_primary else None
        check = self._primary_check
        if check is not None and check.hold(self._wait_timeout or 5.0):
            await self._confirm(check)
        try:
            try:
                after = self._pipe_after(commands) if self._after else None
                if after is not None:
                    pipe = after
                elif (self._large and commands[0] in self._large) or sum(
                    map(len, commands)
                ) > LARGE_REPLY:
                    pipe = await self._large_lane()
                else:
                    pipe = self._ready() or await self._fresh()
                if not idempotent and time.monotonic() - pipe.last_reply > HEALTH_CHECK_INTERVAL:
                    await self._check_health(pipe)
                try:
                    return await self._send_many(pipe, commands, command, shapes, listener)
                except _RETRYABLE:
                    raise
                except BaseException:
                    self._abandoned(pipe, commands)
                    raise
            except _RETRYABLE as exc:
                return await self._retry(
                    lambda p: self._send_many(p, commands, command, shapes, listener),
                    exc,
                    idempotent,
                )
        except _FAILURES as exc:
            raise map_error(exc, command) from exc

    async def _send_many(
        self,
        pipe: Pipe,
        commands: Sequence[bytes],
        command: str,
        shapes: Sequence[Shape | None] | None,
        listener: Listening | None,
    ) -> list[Any]:
        replies = await pipe.call_many(commands)
        if self._follows_primary and any(reply.__class__ is ReadOnlyError for reply in replies):
            raise self._moved(pipe)
        if shapes is not None:
            for reply, shape in zip(replies, shapes, strict=True):
                if shape is not None and not shape(reply) and not isinstance(reply, Exception):
                    raise _misshapen(pipe, command, reply)
        if listener is not None:
            heard = listener.server
            if heard is not None and heard != pipe.endpoint.label:
                # After a failover the listener and this pipe may have followed the primary
                # at different moments: invalidations from one server say nothing of the
                # other's values, so the read is not kept, and the listener moves. While
                # the listener listens nowhere (it is connecting again) nothing read is kept,
                # and it is left to finish: moving it then would cut the connection it is
                # setting up, on every read, and under steady reads it never came back.
                listener.moved()
        for sent, reply in zip(commands, replies, strict=True):
            if reply.__class__ is bytes and len(reply) > LARGE_REPLY:
                self._remember_large(sent)
        return replies

    async def _check_health(self, pipe: Pipe) -> None:
        try:
            await _send(pipe, PING, "PING", PING_REPLY)
        except _RETRYABLE as exc:
            not_sent(exc)  # the command itself was not sent
            raise

    async def _retry(
        self, attempt: Callable[[Pipe], Awaitable[_T]], error: Exception, idempotent: bool
    ) -> _T:
        """Retry after ``error`` on a fresh pipe, with backoff, up to ``retries`` times."""
        failures = 0
        free = 0
        while True:
            if isinstance(error, PoolWaitTimeout):
                raise error  # the caller waited its timeout already: a pool wait is not retried
            # READONLY (the primary moved), or a pipe that failed to open, or bytes
            # never written: the command did not run.
            unsent = isinstance(error, _PrimaryMoved) or getattr(error, "pevensie_not_sent", False)
            if not idempotent and not unsent:
                raise error
            if free < _FREE_RETRIES and (
                getattr(error, "pevensie_closed_pipe", False)
                or getattr(error, "pevensie_interrupted", False)
            ):
                # Not the server's doing: the pipe closed before it took the command, or
                # another caller's interruption closed it. Another pipe takes the
                # command at once, whatever the retries (a few times at most).
                free += 1
            else:
                failures += 1
                if failures > self._retries or isinstance(error, AuthenticationError):
                    raise error
                delay = backoff(failures)
                if delay > 0:
                    await runtime_async.sleep(delay)
            try:
                return await attempt(await self._fresh())
            except _RETRYABLE as exc:
                error = exc

    def _abandoned(self, pipe: Pipe, commands: Sequence[bytes]) -> None:
        """Note that a caller left ``commands`` on ``pipe`` unanswered (cancelled, interrupted).

        Sent, they run on the server all the same, after whatever is queued
        before them on that connection. A later command on one of their keys,
        sent on a less busy pipe, could run first: a value set after a
        cancelled ``set`` would be overwritten by it. So until they have left
        the pipe (answered, or failed), at most one ``timeout`` (the pipe's
        timer closes it then), commands on those keys go to the same pipe
        (:meth:`_pipe_after`), whose connection the server reads in order.
        Never raises: the caller's own exception is on its way.
        """
        try:
            mark = pipe.newest()
            now = time.monotonic()
            until = now + pipe.endpoint.timeout
            # A read left behind changes nothing a later command could see out of order.
            keys = [key for packed in commands for key in command_keys(packed, writes_only=True)]
            if not keys:
                return
            after = self._after
            with self._lock:
                if len(after) + len(keys) > ABANDONED_KEYS:
                    if now >= self._sweep_at:  # at most once per SWEEP_EVERY: bounded work
                        self._sweep(now)
                    while after and len(after) + len(keys) > ABANDONED_KEYS:
                        del after[next(iter(after))]  # the oldest: bounded whatever the traffic
                for key in keys[-ABANDONED_KEYS:]:
                    after[key] = (pipe, mark, until)
        except Exception:
            logger.debug("could not note an abandoned command", exc_info=True)

    def _pipe_after(self, commands: Sequence[bytes]) -> Pipe | None:
        """Return the pipe where an abandoned command on a key of ``commands`` may still wait.

        Only a shared pipe to the channel's server: a pipe retired (a former
        primary), closed or lent out is forgotten, and the command goes the
        usual way.
        """
        now = time.monotonic()
        if now >= self._sweep_at:
            with self._lock:
                self._sweep(now)
        after = self._after
        if not after:
            return None
        for packed in commands:
            for key in command_keys(packed):
                found = after.get(key)
                if found is not None and self._still_after(*found, now):
                    return found[0]
        return None  # (entries that ran their course go at the next sweep)

    def _still_after(self, pipe: Pipe, mark: int, until: float, now: float) -> bool:
        """Whether commands must still follow an abandoned one on ``pipe`` (see ``_abandoned``)."""
        return (
            now < until
            and not pipe.answered(mark)
            and not pipe.retired
            and pipe not in self._lent
            and (self._primary is None or pipe.endpoint.label == self._primary)
        )

    def _sweep(self, now: float) -> None:
        """Forget the abandoned commands that have run their course (the lock is held)."""
        self._sweep_at = now + SWEEP_EVERY
        after = self._after
        for key in [key for key, entry in after.items() if not self._still_after(*entry, now)]:
            del after[key]

    def _remember_large(self, packed: bytes) -> None:
        large = self._large
        with self._lock:
            large[packed] = None
            large.move_to_end(packed)
            while len(large) > LARGE_READS:
                large.popitem(last=False)

    # -- pipes -------------------------------------------------------------------------

    def _ready(self) -> Pipe | None:
        """Return the pipe for a command now, or ``None`` when one must be opened first."""
        check = self._primary_check
        if check is not None and check.due():
            self._asking = runtime_async.start(lambda: self._ask_for_primary(check))
        pipes = self._pipes
        if not pipes:
            return None
        # The first pipe with room, not the least loaded: commands sent together share a
        # write and their replies a read, and spread evenly over two pipes they would
        # share them half as often (a quarter fewer small gets a second, measured).
        pipe = pipes[0]
        if pipe.load < SPREAD_AT and not pipe.receiving_large and not pipe.closed:
            return pipe
        return self._spread()

    def _spread(self) -> Pipe | None:
        """Pick a pipe the slow way: drop closed pipes, open another if due (for :meth:`_ready`).

        The first usable pipe (in the order they were opened) with fewer than
        :data:`SPREAD_AT` commands outstanding, else the least loaded one.
        """
        with self._lock:
            if any(pipe.closed for pipe in self._pipes):
                self._pipes = [pipe for pipe in self._pipes if not pipe.closed]
            usable = [pipe for pipe in self._pipes if not pipe.receiving_large]
            best = next((pipe for pipe in usable if pipe.load < SPREAD_AT), None)
            if best is None and usable:
                best = min(usable, key=_load)
            room = self._room()
            if room and (best is None or best.load >= SPREAD_AT):
                self._start_opening()
            if best is not None:
                return best
            if room or self._opening is not None or not self._pipes:
                return None
            return min(self._pipes, key=_load)  # every pipe busy with a large reply: queue

    def _room(self) -> bool:
        """Whether another pipe may be opened (the channel's lock is held)."""
        opened = len(self._pipes) + len(self._lent) + (self._bulk is not None)
        return opened + (self._opening is not None) < self._pool_size

    def _start_opening(self) -> runtime_async.Flight[Pipe]:
        """Start opening a shared pipe, unless one is opening already (the lock is held)."""
        if self._opening is None:
            self._opening = runtime_async.start(self._open)
        return self._opening

    async def _fresh(self) -> Pipe:
        """Return an open pipe, opening one when none is usable (callers share one opening)."""
        deadline: float | None = None
        while True:
            pipe = self._ready()
            if pipe is not None:
                return pipe
            with self._lock:
                if self._closed:
                    raise RedisPyConnectionError("the channel was closed")
                if self._opening is None and not self._room() and self._lent:
                    flight = None  # every connection is lent out: wait for one to come back
                else:
                    flight = self._start_opening()
            if flight is not None:
                return await runtime_async.join(flight)
            deadline = deadline or time.monotonic() + (self._wait_timeout or 5.0)
            if time.monotonic() >= deadline:
                raise PoolWaitTimeout(
                    f"no connection became free within {self._wait_timeout or 5.0:g} s"
                )
            await runtime_async.sleep(0.005)

    async def _open(self) -> Pipe:
        try:
            endpoint = await self._resolve()
            if self._wait_timeout is None:
                self._wait_timeout = endpoint.timeout
            pipe = await open_pipe(endpoint)
        except _RETRYABLE as exc:
            # Nothing reached the server: even a command that must run once may be retried.
            not_sent(exc)
            with self._lock:
                self._opening = None
            raise
        except BaseException:
            with self._lock:
                self._opening = None
            raise
        with self._lock:
            self._opening = None
            if self._closed:
                pipe.close()
                raise RedisPyConnectionError("the channel was closed")
            self._retire_all_but(endpoint.label)
            self._pipes = [*self._pipes, pipe]
        return pipe

    async def _large_lane(self) -> Pipe:
        """Return the pipe for large traffic, opening it when ``pool_size`` leaves room."""
        bulk = self._bulk
        if bulk is not None and not bulk.closed:
            return bulk
        with self._lock:
            flight = self._opening_bulk
            if flight is None:
                if self._bulk is not None and self._bulk.closed:
                    self._bulk = None
                if self._pool_size < 2 or not self._room():
                    flight = None
                else:
                    flight = self._opening_bulk = runtime_async.start(self._open_bulk)
        if flight is None:
            return self._ready() or await self._fresh()
        return await runtime_async.join(flight)

    async def _open_bulk(self) -> Pipe:
        try:
            endpoint = await self._resolve()
            pipe = await open_pipe(endpoint, bulk=True)
            if self._large_read_rate > 0:
                pipe.pacer = Pacer(self._small_in_flight, self._large_read_rate)
        except _RETRYABLE as exc:
            not_sent(exc)
            with self._lock:
                self._opening_bulk = None
            raise
        except BaseException:
            with self._lock:
                self._opening_bulk = None
            raise
        with self._lock:
            self._opening_bulk = None
            if self._closed:
                pipe.close()
                raise RedisPyConnectionError("the channel was closed")
            self._bulk = pipe
        return pipe

    def _small_in_flight(self) -> bool:
        """Whether small commands are being served: the large-traffic pipe then reads slower.

        A shared pipe waits for replies, or had one within :data:`SMALL_RECENT`
        seconds (between a batch of replies and the next batch of commands,
        none waits).
        """
        recent = time.monotonic() - SMALL_RECENT
        return any(pipe.load or pipe.last_reply > recent for pipe in self._pipes)

    async def _ask_for_primary(self, check: PrimaryCheck) -> None:
        """Ask the locator for the primary; retire the pipes to any other server."""
        try:
            try:
                primary = await self._resolve()
            except _FAILURES:
                return  # no sentinel answered: keep the primary we know
            with self._lock:
                if not self._closed:
                    self._retire_all_but(primary.label)
        finally:  # after the retiring: a command no longer held picks the new primary's pipes
            check.done()

    async def _confirm(self, check: PrimaryCheck) -> None:
        """After an idle spell: wait for the locator's answer before sending (see ``hold``).

        Starts the question when due, then waits while it is under way, up to
        the timeout; a command sent at once could have gone to a former
        primary that still takes writes, and lose them.
        """
        deadline = time.monotonic() + (self._wait_timeout or 5.0)
        if check.due():
            self._asking = runtime_async.start(lambda: self._ask_for_primary(check))
        while check.holding():
            left = deadline - time.monotonic()
            if left <= 0:
                return  # the sentinels stall: go on with the primary we know
            asking = self._asking
            if asking is not None and not asking.done():
                await runtime_async.settle(asking, left)
            else:  # another caller has just started the question
                await runtime_async.sleep(0.001)

    def _retire_all_but(self, label: str) -> None:
        """Send no new command to a server other than ``label`` (the channel's lock is held).

        Retired pipes close once their last command has its reply.
        """
        self._primary = label  # a lent pipe to another server is closed when given back
        stale = [p for p in self._pipes if p.endpoint.label != label]
        if self._bulk is not None and self._bulk.endpoint.label != label:
            stale.append(self._bulk)
            self._bulk = None
        if stale:  # the primary moved: no new command goes to the old one
            self._pipes = [p for p in self._pipes if p not in stale]
            for pipe in stale:
                pipe.retired = True
            self._retired.extend(stale)
        self._retired = [p for p in self._retired if not _close_if_idle(p)]

    def _moved(self, pipe: Pipe) -> _PrimaryMoved:
        pipe.close()
        return _PrimaryMoved(f"{pipe.endpoint.label} is no longer the primary (READONLY)")

    def _forked(self) -> None:
        """In a forked child: forget the parent's pipes (never closing their sockets).

        Those lent out too: the forking thread may hold one (and give it back).
        A question to the sentinels under way in another thread is not: its
        check is made anew, or the child would never ask again.
        """
        self._lock = threading.Lock()
        if self._primary_check is not None:
            self._primary_check = PrimaryCheck()
        lent = [pipe for pipe in self._lent if pipe is not None]
        for pipe in [*self._pipes, *self._retired, *([self._bulk] if self._bulk else []), *lent]:
            pipe.forget()
        self._pipes, self._retired, self._bulk = [], [], None
        self._after = {}
        self._opening = self._opening_bulk = self._asking = None
        self._lent = []
        self.pool = Leases(self)

    # -- lending -----------------------------------------------------------------------

    async def _lend(self) -> Pipe:
        """Take a pipe out of the shared ones for one caller (see :class:`Leases`)."""
        deadline: float | None = None
        while True:
            with self._lock:
                if self._closed:
                    raise RedisPyConnectionError("the channel was closed")
                idle = [pipe for pipe in self._pipes if not pipe.load and not pipe.closed]
                if idle:
                    self._pipes = [pipe for pipe in self._pipes if pipe is not idle[0]]
                    self._lent.append(idle[0])
                    return idle[0]
                opening = self._room()
                if opening:
                    self._lent.append(None)
            if opening:
                pipe = None
                try:
                    endpoint = await self._resolve()
                    if self._wait_timeout is None:
                        self._wait_timeout = endpoint.timeout
                    pipe = await open_pipe(endpoint)
                    return pipe
                finally:
                    with self._lock:
                        self._lent.remove(None)
                        if pipe is not None:
                            self._lent.append(pipe)
            deadline = deadline or time.monotonic() + (self._wait_timeout or 5.0)
            if time.monotonic() >= deadline:
                raise PoolWaitTimeout(
                    f"no connection became free within {self._wait_timeout or 5.0:g} s"
                )
            await runtime_async.sleep(0.005)

    def _give_back(self, pipe: Pipe) -> None:
        """Take back a lent pipe: shared again, or closed if its server is no longer the one."""
        with self._lock:
            if pipe in self._lent:
                self._lent.remove(pipe)
            if (
                self._closed
                or pipe.closed
                or pipe.load
                or pipe.endpoint.label != (self._primary or pipe.endpoint.label)
            ):
                pipe.close()
                return
            if len(self._pipes) >= self._pool_size:
                pipe.close()
                return
            self._pipes = [*self._pipes, pipe]


class Leases:
    """A channel's connections lent to one caller at a time (a driver's ``connection_pool``).

    :meth:`get_connection` takes a connection of the channel's for the
    caller's exclusive use: an idle shared pipe, or a new one while
    ``pool_size`` allows. While every connection is lent out, callers (of the
    cache too) wait up to ``timeout`` for one to come back, then get
    :class:`~pevensie_redis.RedisPoolExhausted`. :meth:`release` gives it back;
    a connection to a server that is no longer the one the channel uses (a
    former primary) is closed instead.
    """

    def __init__(self, channel: Channel) -> None:
        """Lend the connections of ``channel``."""
        self._channel = channel

    def __repr__(self) -> str:
        channel = self._channel
        where = channel._pipes[0].endpoint.label if channel._pipes else "not connected yet"
        return f"<Leases {where}: {len(channel._lent)} lent of {channel._pool_size}>"

    def endpoint(self) -> Endpoint:
        """Return where the channel's connections go now (the primary, through Sentinel)."""
        pipes = self._channel._pipes
        if not pipes:
            raise RedisConnectionError("the channel has no open connection")
        return pipes[-1].endpoint

    async def get_connection(self) -> Lease:
        """Borrow a connection; :class:`~pevensie_redis.RedisPoolExhausted` after ``timeout``."""
        try:
            pipe = await self._channel._lend()
        except _FAILURES as exc:
            raise map_error(exc, "taking a connection") from exc
        lease = pipe.lease  # one per pipe: a connection lent again is the same object
        if not isinstance(lease, Lease):
            lease = pipe.lease = Lease(pipe)
        lease._pipe = pipe
        return lease

    def release(self, connection: Lease) -> None:
        """Give ``connection`` back (a second release does nothing)."""
        pipe, connection._pipe = connection._pipe, None
        connection._pending, connection._replies = [], []
        if pipe is not None:
            self._channel._give_back(pipe)


class Lease:
    """One connection lent by :class:`Leases`: send commands, read their replies in order.

    Errors are the driver's (an error reply is raised as
    :class:`~pevensie_redis.RedisServerError`).
    """

    def __init__(self, pipe: Pipe) -> None:
        """Use ``pipe`` alone."""
        self._pipe: Pipe | None = pipe
        self._last = pipe
        self._pending: list[bytes] = []
        self._replies: list[Any] = []

    def __repr__(self) -> str:
        pipe = self._pipe
        return f"<Lease {'released' if pipe is None else pipe.endpoint.label}>"

    @property
    def pipe(self) -> Pipe:
        """The lent pipe (raises :class:`~pevensie_redis.RedisConnectionError` once released)."""
        if self._pipe is None:
            raise RedisConnectionError("this connection was released")
        return self._pipe

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (a released one is closed once the pool closed it)."""
        return self._last.closed

    def send_command(self, *args: bytes | str | int | float) -> None:
        """Queue one command; :meth:`read_response` sends what is queued and reads."""
        self._pending.append(
            pack([arg if isinstance(arg, (bytes, str)) else str(arg) for arg in args])
        )

    async def read_response(self) -> Any:
        """Return the reply to the oldest command sent and not read yet."""
        if not self._replies:
            pending, self._pending = self._pending, []
            if not pending:
                raise RedisConnectionError("no command is waiting for its reply")
            try:
                self._replies = list(reversed(await self.pipe.call_many(pending)))
            except _FAILURES as exc:
                raise map_error(exc, "a lent connection") from exc
        reply = self._replies.pop()
        if isinstance(reply, Exception):
            raise map_error(reply, "a lent connection") from reply
        return reply


def _load(pipe: Pipe) -> int:
    return pipe.load


async def _send(pipe: Pipe, packed: bytes, command: str, shape: Shape | None) -> Any:
    reply = await pipe.call(packed)
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


def _close_if_idle(pipe: Pipe) -> bool:
    return pipe.close_if_idle()


def _wrong_loop() -> WrongEventLoop:
    return WrongEventLoop(
        "this cache was connected on another event loop: connect a cache in each loop "
        "(or thread) that uses it"
    )


class _NotConnected:
    """The channel of a driver that is not connected: every call says so."""

    pool = None
    near = None
    listener = None

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


async def open_channel(
    resolve: Callable[[], Awaitable[Endpoint]],
    config: RedisConfig,
    *,
    follows_primary: bool = False,
) -> Channel:
    """Open the first pipe to the server ``resolve()`` names (it answered its handshake).

    Raises the driver's errors when it cannot: one connection attempt, without
    retries, so a dead server fails within the timeout.
    """
    channel = Channel(
        resolve,
        config.pool_size,
        config.retries,
        follows_primary=follows_primary,
        timeout=config.timeout_seconds,
        large_read_rate=config.large_read_rate,
    )
    try:
        await channel._fresh()  # a new pipe has had its handshake answered (or a PING)
    except _FAILURES as exc:
        await channel.close()
        raise map_error(exc, f"connecting to {config.display_url()}") from exc
    except BaseException:
        # Cancelled or interrupted: the pipe still opening is closed as soon as it opens.
        await channel.close()
        raise
    return channel
