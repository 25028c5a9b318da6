"""What the pipes of both faces share: replies handed out in order, pushes, failure, large replies.

A pipe is one connection that many callers use at once: each caller's command
is written and its *waiter* queued in one step, so the order of the queue is
the order of the bytes on the wire, and each complete reply belongs to the
waiter at the head of the queue. This module holds that logic, without I/O:
the async face's :class:`~pevensie_redis.pipe_async.Pipe` (an asyncio
protocol whose waiters are futures) and the sync face's
:class:`~pevensie_redis.pipe.Pipe` (a socket shared by threads, whose waiters
are slots with a lock) move the bytes and define what delivering a reply to a
waiter means.

- **in order**: :meth:`PipeCore._received` feeds the reply reader and hands
  each complete reply to the oldest waiter; a waiter whose caller left (a
  cancelled task, an interrupted thread) still takes its reply, which is
  dropped, so no other caller ever receives it;
- **pushes**: on a subscribed pipe, pub/sub messages go to :attr:`on_push`
  instead of a waiter;
- **failure**: :meth:`PipeCore._abort` closes the pipe once and fails every
  waiter with its own copy of the error; a reply nobody waits for, or bytes
  that are not the Redis protocol, abort the pipe;
- **large replies**: while more than :data:`LARGE_REPLY` bytes of one reply
  have arrived without it being complete, :attr:`receiving_large` is true,
  so the channel sends new commands to another pipe instead of queueing them
  behind the transfer;
- **background pace**: a pipe for large traffic given a :class:`Pacer` reads
  at most its rate (the ``large_read_rate`` option) while small commands are in
  flight elsewhere, so the copying of a transfer does not take the CPU their
  replies need; it reads at full speed when they are not, and once its oldest
  command has waited half its timeout (it is never starved).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import InvalidResponse

from pevensie_redis.endpoint import Endpoint
from pevensie_redis.protocol.resp import Reader, Resp2Reader, make_reader

__all__ = [
    "LARGE_REPLY",
    "Pacer",
    "PipeCore",
    "closed_error",
    "copy_error",
    "interrupted",
    "not_sent",
    "pushed",
]

LARGE_REPLY = 256 * 1024
"""Bytes of one reply received, still incomplete, from which a pipe takes no new commands."""

_PACE_WINDOW = 0.01
"""Seconds of its rate a paced pipe may read at once without pausing."""

_W = TypeVar("_W")


class Pacer:
    """Background priority for a pipe's reading: a budget of bytes a second while others work.

    ``contended()`` says whether small commands are being served (on the
    other pipes of the channel). While they are, each read spends its bytes from a
    budget refilled at ``rate`` bytes a second (a token bucket holding
    :data:`_PACE_WINDOW` seconds of it); a read that overspends it tells the
    pipe to stop reading for as long as the debt takes to pay. The socket then
    fills and the server stops sending: neither process spends CPU on the
    transfer. Never past the moment the oldest command has waited half its
    timeout: from then on the pipe reads at full speed, so a read paced here
    still ends within its timeout wherever the server can send it in time.
    """

    __slots__ = ("_burst", "_last", "_rate", "_tokens", "contended")

    def __init__(self, contended: Callable[[], bool], rate: float) -> None:
        """Pace reading at ``rate`` (> 0) bytes a second while ``contended()`` is true."""
        self.contended = contended
        self._rate = float(rate)
        self._burst = self._rate * _PACE_WINDOW
        self._tokens = self._burst
        self._last = 0.0

    def pause(self, received: int, now: float, deadline: float, timeout: float) -> float:
        """Spend ``received`` bytes; return the seconds to stop reading for (0: read on).

        ``now`` and ``deadline`` (the oldest waiting command's, ``timeout``
        after it was sent) on the same clock.
        """
        rate, burst = self._rate, self._burst
        tokens = min(burst, self._tokens + (now - self._last) * rate)
        self._last = now
        if not self.contended():
            self._tokens = burst
            return 0.0
        tokens -= received
        if tokens >= 0:
            self._tokens = tokens
            return 0.0
        free = deadline - timeout / 2 - now
        if free <= 0:
            self._tokens = 0.0  # the oldest command is owed its reply: no debt either
            return 0.0
        self._tokens = tokens
        return min(-tokens / rate, free)


class PipeCore(Generic[_W]):
    """The state of one pipe: its waiters in wire order, its reader, whether it is closed."""

    def __init__(self, endpoint: Endpoint, *, bulk: bool = False) -> None:
        """Start with no waiter, for a connection to ``endpoint``.

        ``bulk``: a pipe for large traffic, whose large bulk strings are
        collected outside the reader (see :meth:`_start_bulk`).
        """
        self.endpoint = endpoint
        self._timeout = endpoint.timeout
        # The pure-Python reader knows where a reply starts (hiredis does not say
        # whether an array is half read): the large bulk strings of a pipe that
        # collects them must start at a reply boundary.
        self._reader: Reader = Resp2Reader() if bulk else make_reader()
        self._boundaries = self._reader if isinstance(self._reader, Resp2Reader) else None
        self._waiting: deque[_W] = deque()
        self._entered = 0
        """Commands that have joined :attr:`_waiting` (counted before they join)."""
        self._exited = 0
        """Commands that have left it, answered or failed (counted after they leave)."""
        self._closed: BaseException | None = None
        self._partial = 0
        self._bulk: list[bytes] | None = None
        """The chunks of a large bulk string being collected (see :meth:`_start_bulk`)."""
        self._bulk_need = 0
        self.lease: Any = None
        """The lent connection wrapping this pipe, once lent (see the channel's ``Leases``)."""
        self.retired = False
        """No new command goes here (its server is no longer the one): it closes once idle."""
        self.last_reply = time.monotonic()
        """The ``time.monotonic()`` the last reply arrived (or the pipe opened)."""
        self.on_push: Callable[[Any], None] | None = None
        """Receives pushed pub/sub messages (``["message", ...]``), on a subscribed pipe."""
        self.on_close: Callable[[], None] | None = None
        """Called once when the pipe closes, for whoever waits for pushes rather than replies."""
        self.pacer: Pacer | None = None
        """Paces reading while other work is in flight (a pipe for large traffic)."""

    def __repr__(self) -> str:
        state = "closed" if self._closed is not None else f"{len(self._waiting)} waiting"
        return f"<{type(self).__name__} {self.endpoint.label} {state}>"

    @property
    def load(self) -> int:
        """How many commands wait for their reply."""
        return len(self._waiting)

    @property
    def closed(self) -> bool:
        """Whether the pipe can no longer be used."""
        return self._closed is not None

    @property
    def receiving_large(self) -> bool:
        """Whether a large reply is arriving: new commands had better go to another pipe."""
        return self._partial > LARGE_REPLY

    # -- what each face defines ------------------------------------------------------------

    def _deliver(self, waiter: _W, reply: Any) -> None:
        """Hand ``reply`` to ``waiter`` (whose caller may have left)."""
        raise NotImplementedError

    def _fail(self, waiter: _W, error: BaseException) -> None:
        """Fail ``waiter`` with ``error`` (a copy of its own)."""
        raise NotImplementedError

    def _shut(self) -> None:
        """Close the connection itself (called once, by :meth:`_abort`)."""
        raise NotImplementedError

    def _settled(self) -> None:
        """Every waiter of the closed pipe has failed (called by each abort that gets that far)."""

    def _idle(self) -> bool:
        """Whether no command is in flight or offered (a retired pipe then closes)."""
        return not self._waiting

    def newest(self) -> int:
        """Return a mark of the newest command offered here (see :meth:`answered`)."""
        return self._entered

    def answered(self, mark: int) -> bool:
        """Whether every command offered here up to ``mark`` (:meth:`newest`) has left.

        Answered (each ran on the server, in order) or failed; or the pipe is
        closed. Two counters: no scan, whatever is in flight.
        """
        return self._closed is not None or self._exited >= mark

    # -- shared --------------------------------------------------------------------------

    def _received(self, data: bytes) -> bool:
        """Feed ``data``; hand each complete reply to its waiter. Return ``False`` if aborted."""
        if self._bulk is not None:
            data = self._collect(data)
            if not data:
                return self._closed is None
        boundaries = self._boundaries
        if (
            boundaries is not None
            and data[:1] == b"$"
            and not boundaries.has_data()
            and self._start_bulk(data)
        ):
            return True
        reader = self._reader
        waiting = self._waiting
        reader.feed(data)
        delivered = False
        try:
            reply = reader.gets()
            while reply is not False:
                delivered = True
                if self.on_push is not None and pushed(reply):
                    self.on_push(reply)
                elif not waiting:
                    self._abort(RedisPyConnectionError(f"{self.endpoint.label}: unexpected reply"))
                    return False
                else:
                    self._deliver(waiting[0], reply)  # queued until delivered, as in _abort
                    waiting.popleft()
                    self._exited += 1
                reply = reader.gets()
        except (InvalidResponse, ValueError) as exc:
            # Not the Redis protocol: whatever listens there is not a Redis server.
            self._abort(InvalidResponse(f"{self.endpoint.label}: protocol error: {exc}"))
            return False
        if delivered:
            self._partial = 0
            self.last_reply = time.monotonic()
            if self.retired and self._idle():
                self._abort(RedisPyConnectionError(f"{self.endpoint.label}: the pipe was retired"))
                return False
        else:
            self._partial += len(data)
        return True

    def _start_bulk(self, data: bytes) -> bool:
        """Collect a large bulk string outside the reader, from its header in ``data``.

        A reader buffers a reply of megabytes by growing and copying its buffer
        as the chunks come; here they are kept as they arrive and joined once.
        Only at a reply boundary (the reader holds nothing), for a bulk string
        longer than :data:`LARGE_REPLY` that ``data`` does not hold whole.
        """
        eol = data.find(b"\r\n", 0, 24)
        if eol < 0:
            return False
        try:
            length = int(data[1:eol])
        except ValueError:
            return False  # the reader reports it
        start = eol + 2
        if length <= LARGE_REPLY or len(data) >= start + length + 2:
            return False
        self._bulk = [data[start:]]
        self._bulk_need = length + 2 - (len(data) - start)
        self._partial = len(data)
        return True

    def _collect(self, data: bytes) -> bytes:
        """Add ``data`` to the bulk string being collected; return the bytes after its end."""
        chunks = self._bulk
        need = self._bulk_need
        if chunks is None:
            return data
        if len(data) < need:
            chunks.append(data)
            self._bulk_need = need - len(data)
            self._partial += len(data)
            return b""
        chunks.append(data[:need])
        rest = data[need:]
        self._bulk = None
        self._bulk_need = 0
        last = chunks.pop()  # ends with the CRLF after the value (one byte of it, maybe)
        if len(last) == 1 and chunks and chunks[-1][-1:] == b"\r" and last == b"\n":
            chunks[-1] = chunks[-1][:-1]
        elif last[-2:] == b"\r\n":
            chunks.append(last[:-2])
        else:
            self._abort(InvalidResponse(f"{self.endpoint.label}: protocol error: bulk string end"))
            return b""
        value = b"".join(chunks)
        self._partial = 0
        self.last_reply = time.monotonic()
        if not self._waiting:
            self._abort(RedisPyConnectionError(f"{self.endpoint.label}: unexpected reply"))
            return b""
        self._deliver(self._waiting[0], value)
        self._waiting.popleft()
        self._exited += 1
        if self.retired and self._idle():
            self._abort(RedisPyConnectionError(f"{self.endpoint.label}: the pipe was retired"))
            return b""
        return rest

    def _abort(self, error: BaseException) -> None:
        """Close the pipe (once) and fail every waiter; later sends raise ``error``.

        Each waiter leaves the queue only once failed: an exception from
        outside (a signal handler's) landing in between leaves it queued, for
        the next abort (the connection's loss, the pipe's timer) to fail,
        never failed by no one.
        """
        if self._closed is None:
            self._closed = error
            self._shut()
            if self.on_close is not None:
                self.on_close()
        waiting = self._waiting
        while waiting:
            self._fail(waiting[0], error)  # failing a waiter twice does nothing more
            waiting.popleft()
            self._exited += 1
        self._settled()

    def forget(self) -> None:
        """Drop this pipe in a forked child: its socket is the parent's, left untouched."""
        self._closed = RedisPyConnectionError(f"{self.endpoint.label}: opened by the parent")
        self._waiting.clear()


def pushed(reply: Any) -> bool:
    """Return whether ``reply`` is a pub/sub message rather than the answer to a command."""
    return type(reply) is list and len(reply) == 3 and reply[0] == b"message"


def copy_error(error: BaseException) -> BaseException:
    """Return a fresh exception like ``error``: each caller gets its own traceback."""
    copy = type(error)(*error.args)
    for name, value in vars(error).items():  # the marks below travel with the copies
        if name.startswith("pevensie_"):
            setattr(copy, name, value)
    return copy


def not_sent(error: BaseException) -> BaseException:
    """Mark ``error`` as failing a command that never reached the server, and return it.

    The channel may then send that command again, even one that must not run twice.
    """
    error.pevensie_not_sent = True  # type: ignore[attr-defined]
    return error


def interrupted(error: BaseException) -> BaseException:
    """Mark ``error`` as closing a pipe because a caller of this process was interrupted.

    Not a fault of the server: the channel tries the other callers' commands
    again (those that may run twice, or never sent) without counting a retry.
    """
    error.pevensie_interrupted = True  # type: ignore[attr-defined]
    return error


def closed_error(error: BaseException) -> BaseException:
    """Return the error for a command offered to a pipe closed before it took it.

    Marked as never sent (``pevensie_not_sent``) and as a closed pipe
    (``pevensie_closed_pipe``): the channel sends it on another pipe.
    """
    copy = not_sent(copy_error(error))
    copy.pevensie_closed_pipe = True  # type: ignore[attr-defined]
    return copy
