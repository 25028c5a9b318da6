"""How a thread waiting for its reply on a sync pipe sleeps, and how another thread wakes it.

A caller of the sync :class:`~pevensie_redis.pipe.Pipe` whose reply has not
come *parks* until the thread that reads the socket (or the caller before it)
wakes it. The pipe asks :func:`parking` once, when it opens, for how:

- **one eventfd per thread** (Linux, native threads): a thread parks in
  ``epoll_wait`` on an eventfd of its own, made on its first wait and reused
  by every later one (:func:`thread_waker`); it is woken by a write to that
  eventfd, a system call made with the GIL released. A thread woken by
  releasing a lock is woken while its waker holds the GIL: run at once, it
  finds the GIL taken and sleeps again, two more context switches;
- **a lock per wait** anywhere else (no eventfd, or threads monkey-patched
  by gevent or eventlet, whose waits must go through their hub): a new
  ``threading.Lock``, taken at once, released once to wake.

Both answer ``acquire(False)`` (a new lock: take it; a waker: nothing to do),
``acquire(True, timeout)`` (wait; whether woken) and ``release()`` (wake).
A thread's waker may be woken while nobody waits on it (its caller
left, timed out, or found its reply first): that wake ends the thread's next
wait early, so a waiter checks what it waits for again after every wake. A
wait nested in another on the same thread (a signal handler's cache call while
the thread waits) may take the outer wait's wake: it wakes the outer one as it
ends. A child process after ``fork`` makes new eventfds: the parent's are
shared with it.
"""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Waker", "cooperative", "parking", "thread_waker"]

_close = os.close


class Waker:
    """A thread's own eventfd, which its waits poll (edge-triggered) and wakes write to."""

    __slots__ = ("_epoll", "_fd", "_waits")

    def __init__(self) -> None:
        """Open the eventfd and the epoll instance that waits for its writes."""
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            self._epoll = select.epoll()
            self._epoll.register(self._fd, select.EPOLLIN | select.EPOLLET)
        except BaseException:
            _close(self._fd)
            raise
        self._waits = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Wait up to ``timeout`` seconds (-1: no limit) for a wake; return whether one came.

        Not ``blocking``: return ``False`` at once, taking nothing (what a new
        lock's first ``acquire(False)`` is to a lock: the waker needs no arming).
        """
        if not blocking:
            return False
        self._waits += 1
        try:
            return bool(self._epoll.poll(timeout, 1))
        finally:
            self._waits -= 1
            if self._waits:  # nested in another wait, whose wake this one may have taken
                os.eventfd_write(self._fd, 1)

    def release(self) -> None:
        """Wake the thread (now, or its next wait if it is not waiting)."""
        os.eventfd_write(self._fd, 1)

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        # os.close bound at definition: a thread's waker may be collected at interpreter
        # exit, after this module's globals were cleared.
        epoll = getattr(self, "_epoll", None)
        if epoll is not None:
            epoll.close()
            _close(self._fd)


_local = threading.local()


def thread_waker() -> Waker:
    """Return this thread's :class:`Waker`, made on its first call."""
    try:
        waker: Waker = _local.waker
    except AttributeError:
        waker = _local.waker = Waker()
    return waker


def parking() -> Callable[[], Any]:
    """Return what a waiting caller parks on in this process now.

    :func:`thread_waker`, or ``threading.Lock`` (looked up now: gevent or
    eventlet may have patched it).
    """
    if not (hasattr(os, "eventfd") and hasattr(select, "epoll")) or cooperative():
        return threading.Lock
    return thread_waker


def cooperative() -> bool:
    """Whether gevent or eventlet made threads cooperative (their public checks)."""
    gevent = sys.modules.get("gevent.monkey")
    if gevent is not None and any(map(gevent.is_module_patched, ("threading", "select"))):
        return True
    eventlet = sys.modules.get("eventlet.patcher")
    return eventlet is not None and any(map(eventlet.is_monkey_patched, ("thread", "select")))


def _after_fork_in_child() -> None:
    global _local
    _local = threading.local()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
