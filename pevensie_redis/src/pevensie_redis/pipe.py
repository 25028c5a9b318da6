"""The sync face's connection: one socket shared by many threads, replies routed in order.

The twin of :mod:`~pevensie_redis.pipe_async` over the same core
(:mod:`~pevensie_redis.pipe_core`: waiters in wire order, pushes, failure,
large replies), for threads, and for greenlets under gevent's monkey-patching.

- **shared, pipelined**: a caller queues its waiter (a *slot*) and its bytes in
  one step under the pipe's lock; the thread holding the *writer* role writes
  them, with those of every caller that queued meanwhile, in one ``sendall``;
- **leader/follower reading**: no thread of its own reads the socket. The first
  waiting caller takes the *reader* role and reads replies, handing each one to
  its slot (and waking that slot's thread), until its own reply has come; then
  it hands the role to the next waiting thread. Replies from one ``recv`` go
  to many callers;
- **woken one at a time**: the reader wakes the first caller whose reply came,
  and each woken caller wakes the next as it leaves :meth:`Pipe.call`. A
  thread woken while another holds the GIL only finds it taken and sleeps
  again, so waking them all at once costs two extra context switches each;
  the next reader is woken last, and writes what they sent meanwhile at once.
  A caller that finds no reader while callers are being woken (every reply
  came in one read) takes the role and waits behind them (at most
  :data:`_HANDOVER`) instead of writing its command alone. On Linux a thread
  parks on an eventfd of its own, woken by a write made with the GIL released
  (:mod:`~pevensie_redis.wakers`);
- **bounded waits**: a caller never waits past its deadline (``timeout`` after
  it sent); a reader or a follower that finds the oldest command overdue
  closes the pipe ("stalled server"), failing every waiter;
- **interruption**: an exception raised into a waiting caller from outside
  (``gevent.Timeout``, ``KeyboardInterrupt``, a signal handler's exception)
  propagates unchanged. A caller that leaves abandons its slot: its reply is
  read and dropped; its command, if not yet taken for writing, leaves the
  queue unsent (nobody else may be due to write it). A caller interrupted
  while it held the reader or writer role may have lost bytes between
  ``recv`` and the reader, or sent half a command: the pipe is closed, and
  the other waiters' commands fail with a connection error, marked as never
  sent when their bytes had not been taken for writing (the channel retries
  those, and idempotent ones). An interruption can also cut short the thread
  that wakes another (a parked caller checks again every :data:`_RECHECK`
  seconds) or that closes the pipe (the next caller that finds it closed
  finishes the closing);
- only C-level locks (``threading.Lock``) and system calls, never
  ``Condition``, ``Event`` or ``Queue``, whose Python-level code an
  interruption can leave half done.

TLS runs over memory buffers (:class:`ssl.SSLObject`), so that a thread may
read while another writes, which one ``ssl.SSLSocket`` does not allow.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisPyTimeoutError

from pevensie_redis.endpoint import Endpoint
from pevensie_redis.pipe_core import (
    Pacer,
    PipeCore,
    closed_error,
    copy_error,
    interrupted,
    not_sent,
)
from pevensie_redis.protocol.commands import OK_REPLY, PING, PING_REPLY, describe
from pevensie_redis.wakers import cooperative, parking

__all__ = ["Pipe", "open_pipe"]

_RECV_SIZE = 65536
_PENDING, _REPLIED, _FAILED = 0, 1, 2
_RECHECK = 0.5
"""Seconds a parked caller sleeps before it checks its slot again.

A thread wakes another by marking its slot (under the pipe's lock), then
releasing the lock it sleeps on; an exception raised into the waking thread in
between (a signal handler's) would leave it asleep until its timeout, holding
its reply or the reader role (so that every caller on the pipe then failed as
stalled).
"""
_HANDOVER = 0.002
"""Seconds a caller that is to read after the callers being woken waits for its wake.

Past it, it reads at once: the callers woken before it are slow to leave
``call()`` (their threads wait for the GIL), and its command waits no longer.
"""
_monotonic = time.monotonic


class _Slot:
    """One caller's place in the queue: its reply or error, and how to wake its thread."""

    __slots__ = (
        "deadline",
        "left",
        "lock",
        "outcome",
        "reading",
        "state",
        "waited",
        "woken",
    )

    def __init__(self, deadline: float, waited: bool = True) -> None:
        self.deadline = deadline
        self.state = _PENDING
        self.outcome: Any = None
        """The reply, or (failed) the error to raise."""
        self.lock: Any = None
        """Set when the caller parks (see :mod:`~pevensie_redis.wakers`); released to wake it."""
        self.woken = False
        self.reading = False
        """Its caller is reading the socket as the leader."""
        self.left = False
        """Its caller is gone (interrupted): the reply will be read and dropped."""
        self.waited = waited
        """A caller waits on this slot (in a batch, only the last one is waited on)."""


class Pipe(PipeCore[_Slot]):
    """One Redis connection that many threads use at once."""

    def __init__(self, endpoint: Endpoint, stream: _Stream, *, bulk: bool = False) -> None:
        """Use the connected ``stream`` (use :func:`open_pipe`, which also connects it)."""
        super().__init__(endpoint, bulk=bulk)
        self._stream = stream
        self._sock = stream.sock
        # Looked up now, not at import: gevent may have patched threading since.
        self._lock = threading.Lock()
        self._new_lock: Callable[[], Any] = parking()
        """What a caller parks on: its thread's waker, or a new lock (taken at once)."""
        self._queued: list[tuple[bytes, Sequence[_Slot]]] = []
        """Commands offered and not yet taken for writing, each with its slots."""
        self._writer: object | None = None
        """Whose call holds the writer role (its slots), if any."""
        self._leader: _Slot | None = None
        """Whose slot holds the reader role, if any."""
        self._socket_closed = False
        self._send = stream.sendall
        self._to_wake: deque[_Slot] = deque()
        """Parked callers whose replies have come, not woken yet (see :meth:`_wake_next`)."""

    def newest(self) -> int:
        """Return a mark of the newest command offered here, written or still queued.

        Queued commands join the waiting line in their order, after those in it.
        """
        queued = self._queued  # read once: another thread may replace it
        return self._entered + sum(len(slots) for _, slots in queued)

    @property
    def socket(self) -> socket.socket:
        """The connected socket (for tests and inspection: never read or write it directly)."""
        return self._sock

    # -- sending -----------------------------------------------------------------------

    def call(self, packed: bytes, timeout: float | None = None) -> Any:
        """Send one packed command and return its reply (an error reply is a value).

        Raises redis-py's ``ConnectionError`` or ``TimeoutError`` when the pipe
        fails (it is then closed); an exception raised into the caller from
        outside propagates unchanged. ``timeout``: seconds for this reply
        instead of the pipe's (shorter; on a pipe where it is the only
        command, as the listener's ``PING``).
        """
        slot = _Slot(_monotonic() + (self._timeout if timeout is None else timeout))
        slots = (slot,)
        try:
            self._enqueue(packed, slots)
            self._wait(slot)
        except BaseException:
            self._withdraw(slots)
            raise
        finally:
            if self._to_wake:
                self._wake_next()
        if slot.state == _REPLIED:
            return slot.outcome
        raise slot.outcome

    def call_many(self, commands: Sequence[bytes]) -> list[Any]:
        """Send several packed commands at once and return their replies, in order."""
        deadline = _monotonic() + self._timeout
        slots = [_Slot(deadline, False) for _ in commands]
        last = slots[-1]
        last.waited = True
        try:
            self._enqueue(commands[0] if len(commands) == 1 else b"".join(commands), slots)
            self._wait(last)
        except BaseException:
            self._withdraw(slots)
            raise
        finally:
            if self._to_wake:
                self._wake_next()
        for slot in slots:
            if slot.state != _REPLIED:
                raise slot.outcome
        return [slot.outcome for slot in slots]

    def listen(self, timeout: float) -> bool:
        """Read for up to ``timeout`` seconds: pushed messages go to :attr:`on_push`.

        Returns whether anything arrived (or the pipe closed); for a pipe that
        receives pushes and has no other reader (the near cache's listener).
        """
        lock = self._lock
        reader = _Slot(0.0)  # holds the reader role; never queued
        with lock:
            if self._closed is not None:
                return True
            if self._leader is not None:
                return False
            self._leader = reader
        try:
            arrived = self._stream.wait_readable(timeout)
            if arrived:
                self._read_once(reader)
            with lock:
                if self._leader is reader:
                    self._leader = None
                    self._hand_on()
        except BaseException:
            self._left(reader)
            raise
        finally:
            if self._to_wake:
                self._wake_next()
        return arrived

    def close(self) -> None:
        """Close the connection; commands still waiting fail with ``ConnectionError``."""
        with self._lock:
            self._abort(RedisPyConnectionError(f"{self.endpoint.label}: the pipe was closed"))

    def close_if_idle(self) -> bool:
        """Close the connection if no command waits for its reply; return whether it is closed.

        Atomic: a command offered at the same moment is either taken first
        (and the pipe stays open) or refused as never sent.
        """
        with self._lock:
            if not self._waiting and not self._queued and self._writer is None:
                self._abort(RedisPyConnectionError(f"{self.endpoint.label}: the pipe was closed"))
            return self._closed is not None

    def _enqueue(self, data: bytes, slots: Sequence[_Slot]) -> None:
        """Offer a command's bytes with its slots; write them unless another caller will.

        The bytes and the slots go into the queue as one entry (one ``append``):
        an exception raised into the caller (a signal handler's) can land before
        or after it, never between, so no reply is ever matched to another
        command. Whoever writes moves the entries into the waiting line and
        onto the wire together.
        """
        lock = self._lock
        entry = (data, slots)
        # Whether an idle pipe's socket has bytes waiting, asked before taking the lock:
        # a thread that waits for the socket while holding the lock stalls every other.
        suspect = not self._waiting and not self._queued and self._stream.readable_now()
        try:
            with lock:
                if self._closed is not None:
                    raise closed_error(self._closed)
                if suspect and not self._waiting and not self._queued and self._dead():
                    raise closed_error(self._closed or RedisPyConnectionError())
                self._queued.append(entry)
                if self._writer is not None or self._leader is not None or self._to_wake:
                    # Another caller writes, or reads (and then writes what was queued
                    # meanwhile before it waits again), or callers whose replies came
                    # are about to run (this one then reads after them: see _wait):
                    # the commands of concurrent callers go out together, as on the
                    # async face.
                    return
                self._writer = slots
                out = self._take()
            self._send(out)
            self._write(slots)
        except BaseException as exc:
            self._enqueue_failed(entry, exc)
            if isinstance(exc, OSError):
                raise _broken(self.endpoint, "writing to", exc) from exc
            raise

    def _take(self) -> bytes:
        """Move the queued commands into the waiting line; return their bytes (lock held).

        The queue is emptied only once every slot waits: an interrupt in between
        leaves a slot in both lists (an abort fails it once), never in neither.
        """
        queued = self._queued
        waiting = self._waiting
        if len(queued) == 1:
            data, slots = queued[0]
            self._entered += len(slots)
            waiting.extend(slots)
            self._queued = []
            return data
        for _, slots in queued:
            self._entered += len(slots)
            waiting.extend(slots)
        self._queued = []
        return b"".join([data for data, _ in queued])

    def _write(self, owner: object) -> None:
        """Write what other callers queued meanwhile, then give the writer role up."""
        lock = self._lock
        send = self._send
        while True:
            with lock:
                if not self._queued or self._closed is not None:
                    self._writer = None
                    self._roles_released()
                    return
                out = self._take()
            send(out)

    def _enqueue_failed(self, entry: tuple[bytes, Sequence[_Slot]], exc: BaseException) -> None:
        slots = entry[1]
        with self._lock:
            if self._writer is not slots:
                self._withdrawn(slots)
                return
            for slot in slots:
                slot.left = True
            self._writer = None  # half a command may be on the wire
            self._abort(
                _broken(self.endpoint, "writing to", exc)
                if isinstance(exc, OSError)
                else interrupted(
                    RedisPyConnectionError(f"{self.endpoint.label}: a write was interrupted")
                )
            )
            self._roles_released()

    def _withdraw(self, slots: Sequence[_Slot]) -> None:
        """Abandon a command whose caller was interrupted (see :meth:`_withdrawn`)."""
        with self._lock:
            self._withdrawn(slots)

    def _withdrawn(self, slots: Sequence[_Slot]) -> None:
        """Drop a gone caller's replies; take its command out of the queue if still there.

        Not taken for writing yet, it is never sent: its caller may have been
        the one to write it (it found no writer and no reader), and left in
        the queue it would go out with the pipe's next command, any time
        later, long after its caller gave up (a ``SET`` then overwriting a
        newer value). The lock is held.
        """
        for slot in slots:
            slot.left = True
        queued = self._queued
        for index, (_, waiting) in enumerate(queued):
            if waiting is slots:
                del queued[index]
                return

    # -- waiting and reading -----------------------------------------------------------

    def _wait(self, slot: _Slot) -> None:
        """Return once ``slot`` has its reply or has failed, reading as the leader when due."""
        lock = self._lock
        try:
            while True:
                with lock:
                    if not slot.state and self._closed is not None:
                        self._abort(self._closed)  # one cut short by an interrupt: finish it
                        if not slot.state:
                            # In no list (an interrupt landed as it moved between them):
                            # failed by no abort, it would read the closed pipe for ever.
                            self._fail(slot, self._closed)
                    if slot.state:
                        slot.woken = True  # nobody is to wake it any more
                        if self._leader is slot:  # failed before it took the reader role up
                            self._leader = None
                            self._hand_on()
                        return
                    leader = self._leader
                    if leader is None and self._to_wake and slot.lock is None:
                        # Callers whose replies came are about to leave call(), each
                        # waking the next: this one takes the reader role, is woken
                        # after them, and writes what they send meanwhile in one write.
                        self._leader = leader = slot
                        parked = slot.lock = self._new_lock()
                        parked.acquire(False)  # a new lock: taken; a waker: no-op
                        self._to_wake.append(slot)
                        reading = False
                    else:
                        reading = leader is None or leader is slot
                        if leader is None:
                            self._leader = slot
                        elif reading:
                            slot.woken = True  # handed the role, found at a recheck: woken by none
                        else:
                            parked = slot.lock
                            if parked is None:
                                parked = slot.lock = self._new_lock()
                                parked.acquire(False)  # a new lock: taken; a waker: no-op
                if reading:
                    self._read_until(slot)
                    with lock:
                        if self._leader is slot:
                            self._leader = None
                            self._hand_on()
                    continue  # replied, or the pipe closed: see above
                remaining = slot.deadline - _monotonic()
                recheck = _HANDOVER if leader is slot else _RECHECK
                if remaining > 0 and parked.acquire(True, min(remaining, recheck)):
                    if slot.state != _PENDING and self._leader is not slot:
                        return  # replied (woken by the caller before it: see _wake_next)
                    continue  # failed, handed the reader role, or a thread's stale wake
                if remaining > recheck:
                    continue  # a wake-up lost to an interrupted waker, or late: see above
                with lock:
                    if slot.state or self._leader in (slot, None):
                        continue  # replied, or reading is up to this caller (see above)
                    self._abort(self._stalled())
                    return
        except BaseException:
            self._left(slot)
            raise

    def _read_until(self, slot: _Slot) -> None:
        """Read replies as the leader until ``slot`` has its reply or the pipe failed.

        The wait for bytes (``poll``) can be interrupted at no cost: nothing was
        read. Only from ``recv`` until the bytes are fed to the reader could an
        interruption lose some (``slot.reading``): the pipe is then closed.
        """
        waiting = self._waiting
        wait_readable = self._stream.wait_readable
        while not slot.state and self._closed is None:
            if self._queued and self._writer is None and not self._flush(slot):
                return
            try:
                oldest = waiting[0].deadline
            except IndexError:  # aborted meanwhile
                oldest = slot.deadline
            if self._to_wake:
                self._wake_next()
            remaining = oldest - _monotonic()
            if remaining <= 0:
                if wait_readable(0):  # the replies came, and nobody read them yet
                    self._read_once(slot)
                    continue
                with self._lock:
                    self._abort(self._stalled())
                return
            if wait_readable(remaining):
                received = self._read_once(slot)
                pacer = self.pacer
                if pacer is not None and received and not slot.state:
                    self._pace(pacer, received)

    def _pace(self, pacer: Pacer, received: int) -> None:
        """Wait, as the leader, while the :attr:`pacer` says reading must pause.

        Nothing is read meanwhile (an interruption costs nothing), and the
        pause ends before the oldest waiter's deadline (see :class:`Pacer`).
        """
        try:
            oldest = self._waiting[0].deadline
        except IndexError:  # aborted meanwhile
            return
        pause = pacer.pause(received, _monotonic(), oldest, self._timeout)
        if pause > 0:
            time.sleep(pause)

    def _flush(self, slot: _Slot) -> bool:
        """Write, as the leader, what callers queued while it read; ``False`` if that failed."""
        try:
            with self._lock:
                if self._writer is not None or not self._queued or self._closed is not None:
                    return self._closed is None
                self._writer = slot
                out = self._take()
            self._send(out)
            self._write(slot)
        except OSError as exc:
            with self._lock:
                if self._writer is slot:
                    self._writer = None
                self._abort(_broken(self.endpoint, "writing to", exc))
            return False
        except BaseException:
            with self._lock:
                if self._writer is not slot:
                    raise  # nothing taken for writing, or all of it written whole
                # Taken, and maybe sent in part: half a command may be on the wire.
                self._writer = None
                self._abort(
                    interrupted(
                        RedisPyConnectionError(f"{self.endpoint.label}: a write was interrupted")
                    )
                )
            raise
        return True

    def _read_once(self, slot: _Slot) -> int:
        """Read what the socket holds and hand out the replies it completes (as the leader).

        Returns how many bytes came (0 if none, or the pipe failed).
        """
        slot.reading = True
        try:
            data = self._stream.recv()
        except EOFError:
            with self._lock:
                self._abort(
                    RedisPyConnectionError(f"Connection closed by server ({self.endpoint.label})")
                )
            return 0
        except (OSError, ValueError) as exc:  # ValueError: the socket was closed under us
            with self._lock:
                self._abort(_broken(self.endpoint, "reading from", exc))
            return 0
        if data:
            with self._lock:
                self._received(data)
        slot.reading = False
        return len(data)

    def _wake_next(self) -> None:
        """Wake the first parked caller whose reply has come; it wakes the next one.

        One at a time: a caller woken while another holds the GIL runs only to
        find it taken and sleeps again. Each caller wakes the next when it
        leaves :meth:`call` (returning or raising), by which time the GIL is
        about to be free for it; the reader wakes the first.
        """
        to_wake = self._to_wake
        with self._lock:
            while to_wake:
                waiter = to_wake.popleft()
                if not waiter.woken and not waiter.left:
                    waiter.woken = True
                    break
            else:
                return
        waiter.lock.release()

    def _hand_on(self) -> None:
        """Give the reader role to a parked caller (the pipe's lock is held)."""
        if self._closed is not None:
            self._roles_released()
            return
        for slot in itertools.chain(
            self._waiting, (slot for _, slots in self._queued for slot in slots)
        ):
            # A parked caller, whose command may still wait in the queue: as the leader
            # it writes what is queued before it waits for replies.
            if slot.waited and not slot.left and not slot.woken and slot.lock is not None:
                self._leader = slot
                if self._to_wake:
                    # After the callers whose replies came (see _wake_next): it then
                    # writes the commands they send meanwhile, in one write.
                    self._to_wake.append(slot)
                else:
                    slot.woken = True
                    slot.lock.release()
                return

    def _left(self, slot: _Slot) -> None:
        """Abandon ``slot``, whose caller was interrupted: drop its reply, pass on its role."""
        with self._lock:
            slot.left = True
            if self._leader is not slot:
                return
            self._leader = None
            if slot.reading:
                # Bytes may have been read and not fed to the reader: the rest of the
                # stream cannot be matched to its callers.
                self._abort(
                    interrupted(
                        RedisPyConnectionError(f"{self.endpoint.label}: a read was interrupted")
                    )
                )
                self._roles_released()
            else:
                self._hand_on()

    def _dead(self) -> bool:
        """Whether an idle pipe whose socket is readable was closed (the lock is held).

        Nothing is owed by an idle server: an end of stream means it closed the
        connection (killed, restarted, an idle timeout), other bytes that it
        broke the protocol (on TLS they may be the session's own messages; on a
        subscribed pipe, pushed messages, read by the command's reader).
        """
        try:
            peeked = self._sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except (OSError, ValueError) as exc:
            self._abort(_broken(self.endpoint, "reading from", exc))
            return True
        if peeked and (self.on_push is not None or isinstance(self._stream, _TlsStream)):
            return False
        self._abort(
            RedisPyConnectionError(
                f"{self.endpoint.label}: "
                + (
                    "closed by the server while idle"
                    if not peeked
                    else "unexpected data while idle"
                )
            )
        )
        return True

    def _stalled(self) -> BaseException:
        return RedisPyTimeoutError(
            f"Timeout reading from {self.endpoint.label} (no reply within {self._timeout:g} s)"
        )

    # -- the core's hooks (the pipe's lock is held) -----------------------------------------

    def _deliver(self, waiter: _Slot, reply: Any) -> None:
        waiter.outcome = reply
        waiter.state = _REPLIED
        if waiter.lock is not None and not waiter.woken:
            self._to_wake.append(waiter)

    def _fail(self, waiter: _Slot, error: BaseException) -> None:
        if waiter.state != _PENDING:
            return  # failed already (an abort cut short, then finished)
        waiter.outcome = copy_error(error)
        waiter.state = _FAILED
        if waiter.lock is not None and not waiter.woken:
            waiter.woken = True
            waiter.lock.release()

    def _shut(self) -> None:
        with contextlib.suppress(OSError):
            # Wakes a thread blocked in recv(); close() alone would not.
            self._sock.shutdown(socket.SHUT_RDWR)
        self._roles_released()

    def _settled(self) -> None:
        """Fail the commands still queued (never written): each may be sent elsewhere.

        Each leaves the queue only once failed, as the waiters do: an abort cut
        short by an interrupt leaves the rest to the next one (see :meth:`_wait`).
        A pipe closed under them for a reason of its own (an interruption, a
        fork) lets them go at once, at no cost to the call's retries
        (:func:`~pevensie_redis.pipe_core.closed_error`). A pipe closed because
        the server answered nothing within the timeout does not: they waited on
        that server, so another try counts as one, and a call stays within
        ``timeout x (retries + 1)`` (a free try had opened a new connection to the
        stalled server and waited one timeout more).
        """
        queued = self._queued
        error = self._closed or RedisPyConnectionError(f"{self.endpoint.label}: closed")
        stalled = isinstance(error, RedisPyTimeoutError)
        while queued:
            for slot in queued[0][1]:
                self._fail(slot, not_sent(copy_error(error)) if stalled else closed_error(error))
            del queued[0]

    def _idle(self) -> bool:
        return not self._waiting and not self._queued and self._writer is None

    def _roles_released(self) -> None:
        """Close the socket of a closed pipe once no thread is inside recv() or sendall().

        Closing a descriptor another thread is about to use could hand that
        thread a new socket's number.
        """
        if (
            self._closed is not None
            and self._leader is None
            and self._writer is None
            and not self._socket_closed
        ):
            self._socket_closed = True
            self._sock.close()

    def forget(self) -> None:
        """Drop this pipe in a forked child: its socket is the parent's, left untouched."""
        super().forget()
        self._to_wake.clear()  # the parent's callers: none of them is in this process
        self._socket_closed = True


class _Stream:
    """A connected socket, non-blocking, whose waits are ``poll`` calls with a timeout.

    Under gevent's monkey-patching ``select.poll`` is gevent's: a wait lets
    other greenlets run, and a ``gevent.Timeout`` raised into it has read nothing.
    """

    __slots__ = ("_fd", "_readable", "_timeout", "_writable", "readable_now", "sock")

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._timeout = timeout
        self._readable = select.poll()
        self._readable.register(sock, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(sock, select.POLLOUT)
        self._fd = sock.fileno()
        self.readable_now: Callable[[], bool] = self._peek if cooperative() else self._poll_now
        """Whether bytes (or the end of the stream) wait, without waiting.

        A zero-timeout ``poll``, half the CPU of a peeking ``recv()`` that
        raises; but under gevent or eventlet that ``poll`` is theirs, and goes
        round their hub (seven times the CPU of the ``recv()``).
        """

    def _poll_now(self) -> bool:
        # A poll object of its own: one used by two threads at once raises RuntimeError.
        poll = select.poll()
        poll.register(self._fd, select.POLLIN)
        return bool(poll.poll(0))

    def _peek(self) -> bool:
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True  # the pipe's idle check says what
        return True

    def wait_readable(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for bytes (or the end of the stream); say whether any came."""
        return bool(self._readable.poll(math.ceil(seconds * 1000)))

    def recv(self) -> bytes:
        """Return the bytes waiting (``b""``: none yet); raise ``EOFError`` at the end."""
        try:
            data = self.sock.recv(_RECV_SIZE)
        except BlockingIOError:
            return b""
        if not data:
            raise EOFError
        return data

    def sendall(self, data: bytes | memoryview) -> None:
        """Send every byte of ``data``, waiting (up to the timeout) while the socket is full."""
        sock = self.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)
        deadline = _monotonic() + self._timeout
        while sent < len(view):
            remaining = deadline - _monotonic()
            if remaining <= 0 or not self._writable.poll(math.ceil(remaining * 1000)):
                raise TimeoutError("the socket stayed full")
            with contextlib.suppress(BlockingIOError):
                sent += sock.send(view[sent:])


class _TlsStream(_Stream):
    """TLS over a plain socket through memory buffers: one thread reads while another writes.

    The ``SSLObject`` is used under one lock; the encrypted bytes are sent
    under another, in the order they were made.
    """

    __slots__ = ("_in", "_out", "_send_lock", "_ssl", "_ssl_lock")

    def __init__(
        self,
        sock: socket.socket,
        timeout: float,
        tls: ssl.SSLObject,
        tls_in: ssl.MemoryBIO,
        tls_out: ssl.MemoryBIO,
    ) -> None:
        super().__init__(sock, timeout)
        self._ssl = tls
        self._in = tls_in
        self._out = tls_out
        self._ssl_lock = threading.Lock()
        self._send_lock = threading.Lock()

    def sendall(self, data: bytes | memoryview) -> None:
        """Encrypt ``data`` and send it, after whatever was encrypted before."""
        with self._send_lock:
            with self._ssl_lock:
                self._ssl.write(data)
                encrypted = self._out.read()
            super().sendall(encrypted)

    def recv(self) -> bytes:
        """Return the plaintext the waiting bytes complete (``b""``: none yet)."""
        try:
            raw = self.sock.recv(_RECV_SIZE)
        except BlockingIOError:
            return b""
        if not raw:
            raise EOFError
        chunks = []
        with self._ssl_lock:
            self._in.write(raw)
            while True:  # all of it: what stays in the buffers wakes no poll()
                try:
                    chunk = self._ssl.read(_RECV_SIZE)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    raise EOFError from None
                if not chunk:
                    break
                chunks.append(chunk)
            owed = self._out.pending
        if owed:  # the TLS layer has something to say (a key update): in order
            with self._send_lock:
                with self._ssl_lock:
                    encrypted = self._out.read()
                _Stream.sendall(self, encrypted)
        return b"".join(chunks)


def _broken(endpoint: Endpoint, doing: str, exc: BaseException) -> BaseException:
    if isinstance(exc, TimeoutError):
        return RedisPyTimeoutError(f"Timeout {doing} {endpoint.label}")
    detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return RedisPyConnectionError(f"Error while {doing} {endpoint.label}: {detail}")


def open_pipe(endpoint: Endpoint, *, bulk: bool = False) -> Pipe:
    """Connect a :class:`Pipe` to ``endpoint`` and run its handshake, within the timeout.

    ``bulk``: a pipe for large traffic (see :class:`~pevensie_redis.pipe_core.PipeCore`).

    Raises redis-py's ``TimeoutError``, ``ConnectionError`` or, from the
    handshake, ``AuthenticationError`` (or another error reply's class).
    """
    sock = _connect(endpoint)
    try:
        if endpoint.tls is not None:
            tls_in, tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = endpoint.tls.wrap_bio(tls_in, tls_out, server_hostname=endpoint.server_hostname)
            _handshake_tls(sock, tls, tls_in, tls_out, endpoint)
            stream: _Stream = _TlsStream(sock, endpoint.timeout, tls, tls_in, tls_out)
        else:
            stream = _Stream(sock, endpoint.timeout)
        pipe = Pipe(endpoint, stream, bulk=bulk)
    except BaseException:
        sock.close()
        raise
    # A new pipe answers before it carries a command: a server that accepts connections
    # but does not answer (stalled, paused) never receives a command it might run later.
    try:
        if endpoint.handshake:
            for reply in pipe.call_many(endpoint.handshake):
                if isinstance(reply, Exception):
                    raise reply
                if not OK_REPLY(reply):  # AUTH, SELECT, CLIENT SETNAME, READONLY
                    raise InvalidResponse(
                        f"{endpoint.label}: the handshake got {describe(reply)} in reply"
                    )
        else:
            reply = pipe.call(PING)
            if isinstance(reply, Exception):
                raise reply
            if not PING_REPLY(reply):
                raise InvalidResponse(f"{endpoint.label}: PING got {describe(reply)} in reply")
    except BaseException:
        pipe.close()
        raise
    return pipe


def _connect(endpoint: Endpoint) -> socket.socket:
    try:
        if endpoint.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(endpoint.timeout)
                sock.connect(endpoint.path)
            except BaseException:
                sock.close()
                raise
            return sock
        if endpoint.host is None or endpoint.port is None:
            raise RedisPyConnectionError(f"{endpoint.label}: no host and port to connect to")
        sock = socket.create_connection((endpoint.host, endpoint.port), endpoint.timeout)
    except TimeoutError:
        raise RedisPyTimeoutError(f"Timeout connecting to {endpoint.label}") from None
    except OSError as exc:
        detail = exc.strerror or str(exc) or type(exc).__name__
        raise RedisPyConnectionError(f"Error connecting to {endpoint.label}: {detail}") from exc
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except OSError:
        pass
    return sock


def _handshake_tls(
    sock: socket.socket,
    tls: ssl.SSLObject,
    tls_in: ssl.MemoryBIO,
    tls_out: ssl.MemoryBIO,
    endpoint: Endpoint,
) -> None:
    """Run the TLS handshake over ``sock`` within the endpoint's timeout."""
    deadline = _monotonic() + endpoint.timeout
    try:
        while True:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                pass
            else:
                if tls_out.pending:
                    sock.sendall(tls_out.read())
                return
            if tls_out.pending:
                sock.sendall(tls_out.read())
            remaining = deadline - _monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            data = sock.recv(_RECV_SIZE)
            if not data:
                raise RedisPyConnectionError(
                    f"Error connecting to {endpoint.label}: the server closed the connection "
                    "during the TLS handshake"
                )
            tls_in.write(data)
    except TimeoutError:
        raise RedisPyTimeoutError(f"Timeout connecting to {endpoint.label}") from None
    except ssl.SSLError as exc:
        raise RedisPyConnectionError(f"Error connecting to {endpoint.label}: {exc}") from exc
    except OSError as exc:
        detail = exc.strerror or str(exc) or type(exc).__name__
        raise RedisPyConnectionError(f"Error connecting to {endpoint.label}: {detail}") from exc
