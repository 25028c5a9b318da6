"""What the sync face's shared logic needs from its runtime: threads.

The counterpart of :mod:`~pevensie_redis.runtime_async` (the same names),
written by hand; the modules generated from ``*_async.py`` sources use it.
Under gevent's monkey-patching, threads and locks are greenlets and gevent's
locks, looked up when used.

- :func:`sleep`: ``time.sleep``;
- :func:`start`, :func:`join`, :func:`settle` and :func:`finish`: background
  work (opening a pipe, asking the sentinels, the near cache's listener) runs in a daemon
  thread of its own, so an exception raised into a caller that waits for it
  (a signal handler's, a ``gevent.Timeout``) interrupts only that caller's
  wait, never the work;
- :class:`Signal`: something happened; wait for it with a timeout.

Waiting uses C-level locks only (never ``Condition``, ``Event`` or ``Queue``,
whose Python-level code an interruption can leave half done).
"""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pevensie_redis.pipe_core import copy_error

__all__ = ["Flight", "Signal", "finish", "join", "park", "settle", "sleep", "start"]

_T = TypeVar("_T")

sleep = time.sleep


def park() -> None:
    """Wait for ever: for a run of the parent's that goes on in a forked child.

    Under gevent a thread is a greenlet, which a fork does not end. Ending it
    in the child makes gevent print a ``KeyError`` traceback (the child's
    table of threads no longer knows it); asleep, it costs nothing.
    """
    while True:
        time.sleep(3600)


class Signal:
    """Something happened (a message, a first attempt): callers wait for it with a timeout."""

    __slots__ = ("_lock", "_set", "_waiters")

    def __init__(self) -> None:
        """Start unset."""
        self._lock = threading.Lock()
        self._set = False
        self._waiters: list[Any] = []

    def set(self) -> None:
        """Mark it happened, waking every waiter."""
        with self._lock:
            self._set = True
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.release()

    def clear(self) -> None:
        """Unset it, to wait for the next time."""
        self._set = False

    def is_set(self) -> bool:
        """Whether it happened (since the last :meth:`clear`)."""
        return self._set

    def wait(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (``None``: no limit); return whether it happened."""
        with self._lock:
            if self._set:
                return True
            parked = threading.Lock()
            parked.acquire()
            self._waiters.append(parked)
        if timeout is None:
            parked.acquire()
        elif not (timeout > 0 and parked.acquire(True, timeout)):
            with self._lock:  # timed out: no release is owed to this waiter any more
                if parked in self._waiters:
                    self._waiters.remove(parked)
        return self._set


class Flight(Generic[_T]):
    """Work running in a thread of its own, which any number of callers may wait for."""

    __slots__ = ("_done", "_error", "_result")

    def __init__(self, work: Callable[[], _T], name: str | None = None) -> None:
        """Start running ``work()`` in a thread of its own (named ``name``, if given)."""
        self._done = Signal()
        self._result: _T | None = None
        self._error: BaseException | None = None
        if name is None:
            # Not threading.Thread: its start() waits on an Event, whose Python-level
            # code an exception raised into the caller (a signal handler's) can leave
            # broken. A bare thread starts with no wait at all.
            _thread.start_new_thread(self._run, (work,))
        else:  # a thread that lives long and is listed by name
            threading.Thread(target=self._run, args=(work,), name=name, daemon=True).start()

    def _run(self, work: Callable[[], _T]) -> None:
        try:
            self._result = work()
        except BaseException as exc:  # handed to every waiter
            self._error = exc
        finally:
            self._done.set()

    def done(self) -> bool:
        """Whether the work has ended."""
        return self._done.is_set()

    def wait(self) -> _T:
        """Wait for the work to end; return its result or raise (a copy of) its error."""
        self._done.wait(None)  # interruptible; the work goes on without this caller
        if self._error is not None:
            raise copy_error(self._error) from self._error
        return self._result  # type: ignore[return-value]


def start(work: Callable[[], _T], name: str | None = None) -> Flight[_T]:
    """Run ``work()`` in a thread of its own."""
    return Flight(work, name)


def join(flight: Flight[_T]) -> _T:
    """Wait for ``flight``'s result; an interrupted caller leaves it running for the others."""
    return flight.wait()


def settle(flight: Flight[Any], timeout: float) -> None:
    """Wait (up to ``timeout``) until ``flight`` has ended; it runs on either way."""
    flight._done.wait(timeout)


def finish(flight: Flight[Any], timeout: float) -> None:
    """Wait (up to ``timeout``) until ``flight`` has ended; threads cannot be cancelled."""
    flight._done.wait(timeout)
