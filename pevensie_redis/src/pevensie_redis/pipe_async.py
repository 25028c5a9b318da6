"""The async face's connection: one socket shared by many tasks, replies routed in order.

A :class:`Pipe` is an :class:`asyncio.Protocol` over the shared core of
:mod:`~pevensie_redis.pipe_core` (read it for the rules both faces' pipes
obey). A caller's command is written and its reply's future queued in one
synchronous step, with no ``await`` in between, so the order of the queue is
the order of the bytes on the wire. That design gives:

- **cancellation safety**: a task cancelled while it waits (by
  ``asyncio.timeout``, ``wait_for``, a task group) only drops its future; the
  reply meant for it is still read off the socket and thrown away, so no other
  caller ever receives it (the failure behind redis-py's CVE-2023-28858/28859
  cannot happen here);
- **automatic pipelining**: while replies are outstanding, the commands of
  concurrent tasks are gathered and written together on the next turn of the
  event loop, so many tasks share one write and one read;
- **bounded waits**: one timer per pipe watches the oldest outstanding
  command; when it has waited ``timeout`` seconds the server is considered
  stalled, the connection is closed and every outstanding command fails with
  a timeout (a stalled server answers none of them). The timer is never
  cancelled while a command waits, and re-arms itself before anything else
  it does: an exception from outside (a signal handler's) that cuts a
  closing short, or lands in the timer itself, strands no command: the timer
  finishes the closing by the waiting commands' deadline.

The sync face's twin is :mod:`~pevensie_redis.pipe` (threads share a socket).
Errors are redis-py's exception classes (``ConnectionError``,
``TimeoutError``, ``AuthenticationError``, ...), mapped by the channel with
:func:`~pevensie_redis.errors.map_error`. Error replies are values (see
:mod:`~pevensie_redis.protocol.resp`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Sequence
from typing import Any, Protocol, cast

from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisPyTimeoutError

from pevensie_redis.endpoint import Endpoint
from pevensie_redis.pipe_core import PipeCore, closed_error, copy_error, interrupted
from pevensie_redis.protocol.commands import OK_REPLY, PING, PING_REPLY, describe

__all__ = ["Pipe", "open_pipe"]

_FINISH_AFTER = 0.05
"""Seconds after a timeout's abort began that its timer finishes it, had it been cut short."""

_Waiter = tuple["asyncio.Future[Any]", float]
"""A caller waiting for its reply: its future, and the event-loop time it gives up."""


class _Transport(Protocol):
    """What a pipe uses of its loop's stream transport."""

    def write(self, data: bytes) -> None: ...

    def abort(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def is_closing(self) -> bool: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


class Pipe(PipeCore[_Waiter], asyncio.Protocol):
    """One Redis connection that many tasks of one event loop use at once."""

    def __init__(
        self, endpoint: Endpoint, loop: asyncio.AbstractEventLoop, *, bulk: bool = False
    ) -> None:
        """Prepare a pipe to ``endpoint`` (use :func:`open_pipe`, which also connects it)."""
        super().__init__(endpoint, bulk=bulk)
        self._loop = loop
        self._transport: _Transport | None = None
        self._out: list[bytes] = []
        self._flush_pending = False
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        """The event-loop time :attr:`_timer` fires."""
        self._sending = False
        """A command is being queued: seen set anywhere else, its queueing was cut short."""
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._listening: asyncio.Future[None] | None = None
        self._resume: asyncio.TimerHandle | None = None
        """Resumes reading paused by the :attr:`pacer`."""

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        # A stream transport of whatever loop runs (uvloop's TCPTransport is not an
        # asyncio.Transport subclass): the pipe needs only write(), abort() and
        # get_extra_info(), which every stream transport has.
        self._transport = cast(_Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:  # noqa: D102
        if self._sending:  # a command queued half, and the pipe not closed: replies may not match
            self._interrupted()
            return
        self._received(data)
        listening = self._listening
        if listening is not None and not listening.done():
            listening.set_result(None)
        pacer = self.pacer
        if pacer is not None and self._waiting and self._closed is None:
            now = self._loop.time()
            pause = pacer.pause(len(data), now, self._waiting[0][1], self._timeout)
            if pause > 0 and self._transport is not None:
                # Resumed by a timer of the pipe's own, never by a caller: a cancelled
                # read leaves nothing paused (its reply is still read, and dropped).
                # The timer first: an exception from outside cannot leave it unset.
                if self._resume is not None:  # bytes a transport (TLS) had already read
                    self._resume.cancel()
                self._resume = self._loop.call_at(now + pause, self._resume_reading)
                self._transport.pause_reading()

    def _resume_reading(self) -> None:
        self._resume = None
        transport = self._transport
        if transport is not None and self._closed is None and not transport.is_closing():
            transport.resume_reading()

    def eof_received(self) -> bool | None:  # noqa: D102
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self._abort(
            RedisPyConnectionError(f"Connection closed by server ({self.endpoint.label})")
            if exc is None
            else RedisPyConnectionError(f"Error while talking to {self.endpoint.label}: {exc}")
        )

    def pause_writing(self) -> None:  # noqa: D102
        self._paused = True

    def resume_writing(self) -> None:  # noqa: D102
        self._paused = False
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- sending -----------------------------------------------------------------------

    def call(self, packed: bytes, timeout: float | None = None) -> asyncio.Future[Any]:
        """Write one packed command; return the future of its reply (an error reply is a value).

        Raises redis-py's ``ConnectionError`` at once if the pipe is closed.
        ``timeout``: seconds for this reply instead of the pipe's (shorter; on
        a pipe where it is the only command, as the listener's ``PING``).
        """
        if self._closed is not None or self._sending:
            raise self._refusal()
        future = self._loop.create_future()
        deadline = self._loop.time() + (self._timeout if timeout is None else timeout)
        idle = not self._waiting
        self._sending = True
        try:
            self._entered += 1
            self._waiting.append((future, deadline))
            self._write(packed, idle)
            timer = self._timer
            if timer is None:
                self._arm(deadline)
            elif timeout is not None and self._timer_at > deadline:
                timer.cancel()
                self._arm(deadline)
            self._sending = False
        except BaseException:
            self._interrupted()  # half queued, or no timer watching it
            raise
        return future

    def send_many(self, commands: Sequence[bytes]) -> list[asyncio.Future[Any]]:
        """Write several packed commands at once; return their replies' futures, in order."""
        if self._closed is not None or self._sending:
            raise self._refusal()
        loop = self._loop
        deadline = loop.time() + self._timeout
        futures = [loop.create_future() for _ in commands]
        idle = not self._waiting
        self._sending = True
        try:
            self._entered += len(futures)
            self._waiting.extend([(future, deadline) for future in futures])
            self._write(b"".join(commands), idle)
            if self._timer is None:
                self._arm(deadline)
            self._sending = False
        except BaseException:
            self._interrupted()  # half queued, or no timer watching them
            raise
        return futures

    async def call_many(self, commands: Sequence[bytes]) -> list[Any]:
        """Write several packed commands at once and return their replies, in order.

        A caller cancelled while it waits leaves its replies to be read and dropped.
        """
        futures = self.send_many(commands)
        try:
            if self._paused:
                await self.drained()
            return [await future for future in futures]
        except BaseException:
            for future in futures:  # marks the errors not awaited as seen (asyncio logs others)
                future.cancel()
            raise

    async def listen(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for pushed messages or the pipe closing; say if either came."""
        if self._closed is not None:
            return True
        waiter = self._listening = self._loop.create_future()
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            self._listening = None
        return waiter.done()

    async def drained(self) -> None:
        """Wait while the socket's write buffer is over its high-water mark."""
        if self._paused and self._closed is None:
            if self._drain is None:
                self._drain = self._loop.create_future()
            # Shielded: many tasks wait on this one future, and cancelling one of them
            # must not cancel it for the others.
            await asyncio.shield(self._drain)

    def close(self) -> None:
        """Close the connection; commands still waiting fail with ``ConnectionError``."""
        self._abort(RedisPyConnectionError(f"{self.endpoint.label}: the pipe was closed"))

    def _refusal(self) -> BaseException:
        """Return the error for a command offered to a closed pipe, which it does not take.

        A pipe not closed yet, whose last command was queued only half (its
        caller's clean-up cut short by another exception from outside), is
        closed first: its replies may no longer match its waiters.
        """
        if self._closed is None:
            self._interrupted()
        return closed_error(self._closed or RedisPyConnectionError(self.endpoint.label))

    def _interrupted(self) -> None:
        """Close the pipe: an exception (a signal handler's) came between a waiter and its bytes.

        Queued without its bytes, a waiter would take the next command's reply;
        its bytes without it, the next command would take its reply.
        """
        self._abort(
            interrupted(RedisPyConnectionError(f"{self.endpoint.label}: a write was interrupted"))
        )

    def _finish_abort(self) -> None:
        """Finish an abort cut short by an exception from outside (a signal handler's).

        Landing after the pipe was marked closed and before its connection was,
        it would leave the commands still waiting with nothing to answer them
        but a stalled server: the timer armed for them runs this (and stays
        armed until none waits, should this be cut short too).
        """
        closed = self._closed
        if closed is not None:
            self._shut()
            self._abort(closed)

    def close_if_idle(self) -> bool:
        """Close the connection if no command waits for its reply; return whether it is closed."""
        if not self._waiting:
            self.close()
        return self._closed is not None

    def _write(self, data: bytes, idle: bool) -> None:
        transport = self._transport
        if transport is None:  # call() before connection_made(): open_pipe() never does that
            raise RedisPyConnectionError(f"{self.endpoint.label}: the pipe is not connected")
        if idle and not self._out:
            transport.write(data)  # nothing outstanding: no one to wait for, send now
            return
        self._out.append(data)
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        out, self._out = self._out, []
        if out and self._transport is not None and self._closed is None:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    # -- the core's hooks ------------------------------------------------------------------

    def _deliver(self, waiter: _Waiter, reply: Any) -> None:
        future = waiter[0]
        if not future.done():
            future.set_result(reply)

    def _fail(self, waiter: _Waiter, error: BaseException) -> None:
        future = waiter[0]
        if not future.done():
            future.set_exception(copy_error(error))

    def _shut(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)
        listening = self._listening
        if listening is not None and not listening.done():
            listening.set_result(None)

    def _settled(self) -> None:
        timer, self._timer = self._timer, None  # no waiter left to watch
        if timer is not None:
            timer.cancel()

    def _arm(self, when: float) -> None:
        """Run :meth:`_expire` at event-loop time ``when`` (the only place the timer is set)."""
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._expire)

    def _expire(self) -> None:
        """Fail the commands whose deadline passed, or finish an abort cut short (the timer).

        While a command waits, the timer is armed again first of all (before
        any closing starts): should an exception from outside land in this
        callback (the event loop logs it and goes on), the waiters keep their
        timer.
        """
        waiting = self._waiting
        if not waiting:
            self._timer = None
            return
        now = self._loop.time()
        deadline = waiting[0][1]
        if deadline > now and self._closed is None and not self._sending:
            self._arm(deadline)
            return
        self._arm(now + _FINISH_AFTER)  # should what follows be cut short, this finishes it
        if self._closed is not None:
            self._finish_abort()
        elif self._sending:  # a command queued half, its caller's clean-up cut short
            self._interrupted()
        else:
            self._abort(
                RedisPyTimeoutError(
                    f"Timeout reading from {self.endpoint.label} "
                    f"(no reply within {self._timeout:g} s)"
                )
            )


async def open_pipe(endpoint: Endpoint, *, bulk: bool = False) -> Pipe:
    """Connect a :class:`Pipe` to ``endpoint`` and run its handshake, within the timeout.

    ``bulk``: a pipe for large traffic (see :class:`~pevensie_redis.pipe_core.PipeCore`).

    Raises redis-py's ``TimeoutError``, ``ConnectionError`` or, from the
    handshake, ``AuthenticationError`` (or another error reply's class).
    """
    loop = asyncio.get_running_loop()
    pipe = Pipe(endpoint, loop, bulk=bulk)
    try:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
        # that arrives in the loop step where the connection completes (fixed in 3.12).
        async with asyncio.timeout(endpoint.timeout):
            if endpoint.path is not None:
                await loop.create_unix_connection(lambda: pipe, endpoint.path)
            else:
                if endpoint.host is None or endpoint.port is None:
                    raise RedisPyConnectionError(
                        f"{endpoint.label}: no host and port to connect to"
                    )
                await loop.create_connection(
                    lambda: pipe,
                    endpoint.host,
                    endpoint.port,
                    ssl=endpoint.tls,
                    server_hostname=endpoint.server_hostname if endpoint.tls else None,
                )
    except TimeoutError:
        raise RedisPyTimeoutError(f"Timeout connecting to {endpoint.label}") from None
    except ssl.SSLError as exc:
        raise RedisPyConnectionError(f"Error connecting to {endpoint.label}: {exc}") from exc
    except OSError as exc:
        detail = exc.strerror or str(exc) or type(exc).__name__
        raise RedisPyConnectionError(f"Error connecting to {endpoint.label}: {detail}") from exc
    # A new pipe answers before it carries a command: a server that accepts connections
    # but does not answer (stalled, paused) never receives a command it might run later.
    try:
        if endpoint.handshake:
            for reply in await pipe.call_many(endpoint.handshake):
                if isinstance(reply, Exception):
                    raise reply
                if not OK_REPLY(reply):  # AUTH, SELECT, CLIENT SETNAME, READONLY
                    raise InvalidResponse(
                        f"{endpoint.label}: the handshake got {describe(reply)} in reply"
                    )
        else:
            reply = await pipe.call(PING)
            if isinstance(reply, Exception):
                raise reply
            if not PING_REPLY(reply):
                raise InvalidResponse(f"{endpoint.label}: PING got {describe(reply)} in reply")
    except BaseException:
        pipe.close()
        raise
    return pipe
