"""The async face's connection: one socket shared by many tasks, replies routed in order.

A :class:`Pipe` is an :class:`asyncio.Protocol`. A caller's command is written
and its reply's future queued in one synchronous step, with no ``await`` in
between, so the order of the queue is the order of the bytes on the wire;
:meth:`Pipe.data_received` hands each complete reply to the future at the
head of the queue. That design gives:

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
  a timeout (a stalled server answers none of them);
- **interruption safety**: an exception raised from outside into the middle
  of queueing a command or routing a reply (a signal handler's, which can
  land between any two bytecodes) would leave the queue and the wire out of
  step, and later replies would reach the wrong callers. Each of those steps
  marks the pipe unsure until it completes; a pipe found unsure is closed
  before it routes or sends anything more, so its waiting callers retry on a
  fresh pipe.

Errors are redis-py's exception classes (``ConnectionError``,
``TimeoutError``, ``AuthenticationError``, ...), so the driver maps them with
:func:`~pevensie_redis.errors.map_error` exactly as on the sync face. Error
replies are values (see :mod:`~pevensie_redis.resp`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisPyTimeoutError

from pevensie_redis.resp import make_reader

__all__ = ["Endpoint", "Pipe", "open_pipe"]


@dataclass(frozen=True)
class Endpoint:
    """Where and how to open a pipe: the address, TLS, the handshake commands and the timeout."""

    label: str
    """``host:port`` or the socket path, for messages (never credentials)."""
    host: str | None = None
    port: int | None = None
    path: str | None = None
    """A Unix socket instead of ``host``/``port``."""
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    server_hostname: str | None = None
    """The name the server's certificate must carry (``None``: not checked)."""
    handshake: tuple[bytes, ...] = field(default=(), repr=False)
    """Packed commands sent first on every new pipe (``AUTH``, ``SELECT``, ``CLIENT SETNAME``)."""
    timeout: float = 5.0
    """Seconds allowed to connect, and for each reply."""


class _Transport(Protocol):
    """What a pipe uses of its loop's stream transport."""

    def write(self, data: bytes) -> None: ...

    def abort(self) -> None: ...

    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


class Pipe(asyncio.Protocol):
    """One Redis connection that many tasks of one event loop use at once."""

    def __init__(self, endpoint: Endpoint, loop: asyncio.AbstractEventLoop) -> None:
        """Prepare a pipe to ``endpoint`` (use :func:`open_pipe`, which also connects it)."""
        self.endpoint = endpoint
        self._loop = loop
        self._timeout = endpoint.timeout
        self._reader = make_reader()
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._transport: _Transport | None = None
        self._closed: BaseException | None = None
        self._out: list[bytes] = []
        self._flush_pending = False
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._unsure = False  # a queueing or routing step began and has not finished
        self._in_hand: asyncio.Future[Any] | None = None  # taken off the queue, not yet resolved
        self.last_reply = loop.time()
        """The event-loop time the last reply arrived (or the pipe opened)."""
        self.on_push: Callable[[Any], None] | None = None
        """Receives pushed pub/sub messages (``["message", ...]``), on a subscribed pipe."""
        self.on_close: Callable[[], None] | None = None
        """Called once when the pipe closes, for whoever waits for pushes rather than replies."""

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._waiting)} waiting"
        return f"<Pipe {self.endpoint.label} {state}>"

    @property
    def load(self) -> int:
        """How many commands wait for their reply."""
        return len(self._waiting)

    @property
    def closed(self) -> bool:
        """Whether the pipe can no longer be used."""
        return self._closed is not None

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
        if self._unsure:
            self._abort_interrupted()
            return
        reader = self._reader
        waiting = self._waiting
        self._unsure = True
        reader.feed(data)
        try:
            reply = reader.gets()
            while reply is not False:
                if self.on_push is not None and _pushed(reply):
                    self.on_push(reply)
                    reply = reader.gets()
                    continue
                if not waiting:
                    self._abort(RedisPyConnectionError(f"{self.endpoint.label}: unexpected reply"))
                    return
                future = self._in_hand = waiting.popleft()[0]
                if not future.done():
                    future.set_result(reply)
                self._in_hand = None
                reply = reader.gets()
        except (InvalidResponse, ValueError) as exc:
            # Not the Redis protocol: whatever listens there is not a Redis server.
            self._abort(InvalidResponse(f"{self.endpoint.label}: protocol error: {exc}"))
            return
        self._unsure = False
        self.last_reply = self._loop.time()

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

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Write one packed command; return the future of its reply (an error reply is a value).

        Raises redis-py's ``ConnectionError`` at once if the pipe is closed.
        """
        if self._unsure:
            self._abort_interrupted()
        if self._closed is not None:
            raise _copy(self._closed)
        future = self._loop.create_future()
        idle = not self._waiting
        deadline = self._loop.time() + self._timeout
        self._unsure = True
        self._waiting.append((future, deadline))
        self._write(packed, idle)
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._expire)
        self._unsure = False
        return future

    def send_many(self, commands: Sequence[bytes]) -> list[asyncio.Future[Any]]:
        """Write several packed commands at once; return their replies' futures, in order."""
        if self._unsure:
            self._abort_interrupted()
        if self._closed is not None:
            raise _copy(self._closed)
        loop = self._loop
        idle = not self._waiting
        deadline = loop.time() + self._timeout
        futures = [loop.create_future() for _ in commands]
        data = b"".join(commands)
        self._unsure = True
        self._waiting.extend((future, deadline) for future in futures)
        self._write(data, idle)
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)
        self._unsure = False
        return futures

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

    def _write(self, data: bytes, idle: bool) -> None:
        transport = self._transport
        if transport is None:  # send() before connection_made(): open_pipe() never does that
            raise RedisPyConnectionError(f"{self.endpoint.label}: the pipe is not connected")
        if idle and not self._out:
            transport.write(data)  # nothing outstanding: no one to wait for, send now
            return
        self._out.append(data)
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        if self._unsure:
            self._abort_interrupted()
            return
        self._unsure = True
        self._flush_pending = False
        out, self._out = self._out, []
        if out and self._transport is not None and self._closed is None:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))
        self._unsure = False

    # -- failure -----------------------------------------------------------------------

    def _expire(self) -> None:
        self._timer = None
        if self._closed is not None:
            self._abort(self._closed)  # finish an abort cut short (see _abort)
            return
        if not self._waiting:
            return
        deadline = self._waiting[0][1]
        if deadline <= self._loop.time():
            self._abort(
                RedisPyTimeoutError(
                    f"Timeout reading from {self.endpoint.label} "
                    f"(no reply within {self._timeout:g} s)"
                )
            )
        else:
            self._timer = self._loop.call_at(deadline, self._expire)

    def _abort_interrupted(self) -> None:
        """Close a pipe whose queue and wire may be out of step (see the module's docstring)."""
        self._abort(
            RedisPyConnectionError(
                f"{self.endpoint.label}: the connection was closed: an exception raised "
                "from outside interrupted a command half queued or a reply half routed"
            )
        )

    def _abort(self, error: BaseException) -> None:
        # Every step may be repeated, and the timer is cancelled last: if an exception
        # raised from outside cuts this short, connection_lost() (the transport was
        # aborted) or the timer calls it again and it finishes; no waiter is dropped.
        self._unsure = False
        first = self._closed is None
        if first:
            self._closed = error
        if self._transport is not None:
            self._transport.abort()
        if first and self.on_close is not None:
            self.on_close()
        waiting = self._waiting
        while waiting:
            future = waiting[0][0]
            if not future.done():
                future.set_exception(_copy(error))
                # Whoever awaits it still gets the error; one whose caller was
                # interrupted and left is not reported as "never retrieved".
                future.exception()
            waiting.popleft()
        in_hand = self._in_hand
        if in_hand is not None:
            if not in_hand.done():
                in_hand.set_exception(_copy(error))
                in_hand.exception()
            self._in_hand = None
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _pushed(reply: Any) -> bool:
    """Return whether ``reply`` is a pub/sub message rather than the answer to a command."""
    return type(reply) is list and len(reply) == 3 and reply[0] == b"message"


def _copy(error: BaseException) -> BaseException:
    """Return a fresh exception like ``error``: each waiting task gets its own traceback."""
    return type(error)(*error.args)


async def open_pipe(endpoint: Endpoint) -> Pipe:
    """Connect a :class:`Pipe` to ``endpoint`` and run its handshake, within the timeout.

    Raises redis-py's ``TimeoutError``, ``ConnectionError`` or, from the
    handshake, ``AuthenticationError`` (or another error reply's class).
    """
    loop = asyncio.get_running_loop()
    pipe = Pipe(endpoint, loop)
    try:
        if endpoint.path is not None:
            connecting = loop.create_unix_connection(lambda: pipe, endpoint.path)
        else:
            if endpoint.host is None or endpoint.port is None:
                raise RedisPyConnectionError(f"{endpoint.label}: no host and port to connect to")
            connecting = loop.create_connection(
                lambda: pipe,
                endpoint.host,
                endpoint.port,
                ssl=endpoint.tls,
                server_hostname=endpoint.server_hostname if endpoint.tls else None,
            )
        await asyncio.wait_for(connecting, endpoint.timeout)
    except TimeoutError:
        raise RedisPyTimeoutError(f"Timeout connecting to {endpoint.label}") from None
    except ssl.SSLError as exc:
        raise RedisPyConnectionError(f"Error connecting to {endpoint.label}: {exc}") from exc
    except OSError as exc:
        detail = exc.strerror or str(exc) or type(exc).__name__
        raise RedisPyConnectionError(f"Error connecting to {endpoint.label}: {detail}") from exc
    if endpoint.handshake:
        futures = pipe.send_many(endpoint.handshake)
        try:
            for reply in [await future for future in futures]:
                if isinstance(reply, Exception):
                    raise reply
        except BaseException:
            pipe.close()
            for future in futures:  # marks the errors not awaited as seen (asyncio logs others)
                future.cancel()
            raise
    return pipe
