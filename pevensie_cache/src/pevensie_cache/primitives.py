"""What the sync face waits and locks with: threads (twin of :mod:`.primitives_async`).

The same names as the async module, over threads, so code generated from an
``*_async.py`` module runs unchanged apart from ``await``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pevensie_cache import forks
from pevensie_cache.driver import AsyncViewDriver
from pevensie_cache.errors import (
    called_from_its_own_loader,
    interrupted_its_caller,
    waited_for_a_load,
)

__all__ = [
    "CONNECT_HINT",
    "FACE",
    "Background",
    "FaceGuard",
    "Lock",
    "SingleFlight",
    "call",
    "run_concurrently",
    "sleep",
    "undone_if_abandoned",
    "warn_if_in_event_loop",
]

_T = TypeVar("_T")

logger = logging.getLogger("pevensie_cache")

BACKGROUND_THREADS = 4
"""Threads a cache runs its background work in, at most (started when first needed)."""
BACKGROUND_LIMIT = 64
"""Background runs (queued and running) a cache keeps at once, at most."""

WAKEUP_RECHECK = 0.5
"""Seconds a caller waiting for another thread's run sleeps before it checks again.

``Event.set`` raises its flag before it wakes the waiting threads; an exception raised
into the setting thread in between (a signal handler's) would leave them asleep for good.
"""

FACE: Literal["sync"] = "sync"
"""Which face of the cache this module serves."""

Lock = threading.Lock
"""A lock held by one thread at a time (``with``)."""

sleep = time.sleep
"""Wait ``seconds``, blocking this thread."""

CONNECT_HINT = (
    "connect it first (c = cache.new(...).connect()), or use it in a with block "
    "(with cache.new(...) as c: ...)"
)
"""What a ``NotConnected`` message tells the caller to do, on this face."""


class FaceGuard:
    """Base of the sync face's objects: ``async with`` on one says to use ``with``."""

    __slots__ = ()

    if not TYPE_CHECKING:  # at run time only: a type checker still flags the mistake

        async def __aenter__(self):
            raise TypeError(
                f"{type(self).__name__} belongs to the sync face: use `with`, not `async with` "
                "(for an async cache, build it with cache.new_async() or cache.from_url_async())"
            )

        async def __aexit__(self, *exc_info):
            return None


def warn_if_in_event_loop(what: str, driver: object) -> None:
    """Warn that ``what`` blocks: the sync face is being used inside a running event loop.

    An in-process store (an :class:`~pevensie_cache.driver.AsyncViewDriver`,
    the memory driver) never waits for I/O: no warning for it.
    """
    if isinstance(driver, AsyncViewDriver):
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    warnings.warn(
        f"{what} on a sync cache inside a running event loop: every call blocks the loop "
        "(and every task on it) until the store answers; use the async face "
        "(cache.new_async(), cache.from_url_async()) in async code",
        RuntimeWarning,
        stacklevel=3,
    )


def run_concurrently(calls: Sequence[Callable[[], _T]]) -> list[_T]:
    """Run every call in its own thread; return their results in order, or raise the first error."""
    results: list[_T | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]


def undone_if_abandoned(work: Callable[[], _T], undo: Callable[[_T], object]) -> _T:
    """Return ``work()`` (the async face undoes the work of a caller cancelled meanwhile)."""
    return work()


def call(function: Callable[[], Any]) -> Any:
    """Call ``function`` (the async face also awaits what an ``async def`` returns)."""
    return function()


class _Run:
    __slots__ = ("done", "error", "interrupted", "owner", "traceback", "value")

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.traceback: TracebackType | None = None
        self.interrupted = False


def _until(deadline: float | None) -> float:
    """Seconds to wait before the next recheck: at most until ``deadline``."""
    if deadline is None:
        return WAKEUP_RECHECK
    return max(0.0, min(WAKEUP_RECHECK, deadline - time.monotonic()))


class SingleFlight:
    """Concurrent calls for one key share one run of the work: its result, or its exception.

    The first thread to ask for a key runs ``work``; threads that ask while
    it runs wait for its outcome. If the running thread is interrupted (a
    signal handler's exception, ``KeyboardInterrupt``, ``gevent.Timeout``),
    that is not the outcome: a waiting thread runs the work again.
    """

    def __init__(self) -> None:
        """Start with nothing running."""
        self._lock = threading.Lock()
        self._running: dict[Hashable, _Run] = {}
        self.finished = 0
        """How many runs have ended (for any key): a caller that read it before
        missing knows whether a run may have ended, and stored, since."""
        forks.renew_after_fork(self)

    def _forked(self) -> None:
        """In a forked child: a new lock, and no run under way.

        The runs of the parent's other threads never end here: a caller
        waiting on one would wait for ever.
        """
        self._lock = threading.Lock()
        self._running = {}

    def run(self, key: Hashable, work: Callable[[], _T], wait: float | None = None) -> _T:
        """Return ``work()``, run once for all threads that ask for ``key`` meanwhile.

        With ``wait``, a thread waits at most that many seconds for another's
        run, then raises :class:`~pevensie_cache.LockTimeout`.
        """
        # The run is registered inside the try, and ended in nested finally blocks: an
        # exception raised into this thread between two statements (a signal handler's,
        # which lands right after any call returns, the lock's release included) can no
        # longer leave a run registered that never ends, on which every later caller
        # for the key would wait forever, or skip waking the threads that wait on it.
        mine: _Run | None = None
        deadline = None if wait is None else time.monotonic() + wait
        try:
            while True:
                with self._lock:
                    running = self._running.get(key)
                    if running is None:
                        mine = self._running[key] = _Run()
                        break
                if running.owner == threading.get_ident():
                    raise called_from_its_own_loader(key)
                # A wake-up lost to an interrupted Event.set costs one recheck.
                while not running.done.wait(_until(deadline)):
                    if deadline is not None and time.monotonic() >= deadline:
                        raise waited_for_a_load(key, wait or 0.0)
                error = running.error
                if error is None:
                    result: _T = running.value
                    return result
                if not running.interrupted:
                    # From the run's own traceback, as asyncio's futures raise: raising the
                    # shared exception as it is would chain every waiter's frames onto it.
                    raise error.with_traceback(running.traceback)
                # The running thread was interrupted (Ctrl-C, a gevent.Timeout, a signal
                # handler's exception): meant for it alone, as a cancellation is for a task.
                # This thread tries again, maybe as the runner.
            mine.value = value = work()
            return value
        except BaseException as exc:
            if mine is not None:
                mine.error, mine.traceback = exc, exc.__traceback__
                mine.interrupted = interrupted_its_caller(exc)  # told here: a handler may go soon
            raise
        finally:
            if mine is not None:
                try:
                    with self._lock:
                        if self._running.get(key) is mine:  # a fork in work() forgot it
                            del self._running[key]
                        self.finished += 1
                finally:
                    mine.done.set()


class _Queued:
    """A background run's mark under its key: removed by that run alone as it ends."""

    __slots__ = ("pool",)

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool = pool


class Background:
    """Work that runs after its caller has returned: at most one run per key, a bounded number.

    :meth:`start` queues ``work()``, to run in a copy of the caller's
    :mod:`contextvars` context, for a small pool of threads (at most
    :data:`BACKGROUND_THREADS`, started when first needed) unless a run for
    that key is queued or running, or :data:`BACKGROUND_LIMIT` runs are. So
    threads and memory stay bounded whatever the traffic. :meth:`close`
    drops the queued runs, waits for the running ones (a thread cannot be
    interrupted) and stops the threads; a later :meth:`start` starts them again.
    """

    def __init__(self, limit: int = BACKGROUND_LIMIT, threads: int = BACKGROUND_THREADS) -> None:
        """Start with nothing running; ``limit`` bounds the runs, ``threads`` the threads."""
        self._limit = limit
        self._threads = threads
        self._lock = threading.Lock()
        self._keys: dict[Hashable, _Queued] = {}
        self._pool: ThreadPoolExecutor | None = None
        self.finished = 0
        """How many runs have ended: a caller that read it before its lookup knows
        whether a run may have stored a newer value since."""
        forks.renew_after_fork(self)

    def start(self, key: Hashable, work: Callable[[], None]) -> bool:
        """Queue ``work()`` unless ``key`` is queued or running, or the bound is reached."""
        # The key is marked before the run is queued, and only the run removes its mark
        # (in the pool's thread, where no signal handler's exception lands): an exception
        # raised into this thread once the run is queued (a handler's, which lands right
        # after any call returns) can no longer leave the key marked for good, which
        # stopped every later refresh of it.
        with self._lock:
            if key in self._keys or len(self._keys) >= self._limit:
                return False
            pool = self._pool
            if pool is None:
                pool = self._pool = ThreadPoolExecutor(self._threads, "pevensie-background")
            mark = self._keys[key] = _Queued(pool)
            # The run sees the caller's context variables (a tenant, a tracing span), as
            # an asyncio task does: a loader must not load for someone else.
            in_context = functools.partial(contextvars.copy_context().run, work)
            try:
                pool.submit(self._run, key, mark, in_context)
            except BaseException:
                del self._keys[key]  # not queued, or the run will find its mark gone
                raise
        return True

    def running(self) -> int:
        """Return how many runs are queued or running."""
        return len(self._keys)

    def idle(self) -> None:
        """Wait until every run queued so far has ended."""
        while self._keys:
            time.sleep(0.001)

    def close(self) -> None:
        """Drop the queued runs, wait for the running ones, and stop the threads."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            pool.shutdown(wait=True, cancel_futures=True)
        finally:
            # The runs dropped before they ran leave their marks, even when the wait for
            # the running ones was interrupted (those end and find their marks gone).
            with self._lock:
                for key, mark in list(self._keys.items()):
                    if mark.pool is pool:
                        del self._keys[key]

    def _forked(self) -> None:
        """In a forked child: a new lock, no threads, no run queued or running.

        The parent's pool threads are not here: the runs they had queued or
        were running never end in the child, and their marks would stop every
        later run of those keys; one ending takes the lock, which stays held.
        """
        self._lock = threading.Lock()
        self._pool = None
        self._keys = {}

    def _run(self, key: Hashable, mark: _Queued, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException:
            # The work handles its own failures; this is a bug, not a loader's error.
            logger.error("a background refresh failed unexpectedly", exc_info=True)
        finally:
            with self._lock:
                if self._keys.get(key) is mark:
                    del self._keys[key]
                self.finished += 1
