"""What the async face waits and locks with: asyncio's primitives.

Its sync twin is :mod:`pevensie_cache.primitives`, with the same names over
threads. Code generated from an ``*_async.py`` module imports this module's
names from the sync twin instead, so every other line is shared.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

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

BACKGROUND_LIMIT = 64
"""Background runs (tasks, or queued and running thread jobs) a cache keeps at once, at most."""

FACE: Literal["async"] = "async"
"""Which face of the cache this module serves."""

Lock = asyncio.Lock
"""A lock held across awaits (``async with``)."""

sleep = asyncio.sleep
"""Wait ``seconds`` without blocking the event loop."""

CONNECT_HINT = (
    "connect it first (c = await cache.new_async(...).connect()), or use it in an "
    "async with block (async with cache.new_async(...) as c: ...)"
)
"""What a ``NotConnected`` message tells the caller to do, on this face."""


class FaceGuard:
    """Base of the async face's objects: ``with`` on one says to use ``async with``."""

    __slots__ = ()

    if not TYPE_CHECKING:  # at run time only: a type checker still flags the mistake

        def __enter__(self):
            raise TypeError(
                f"{type(self).__name__} belongs to the async face: use `async with`, not `with` "
                "(for a sync cache, build it with cache.new() or cache.from_url())"
            )

        def __exit__(self, *exc_info):
            return None


def warn_if_in_event_loop(what: str, driver: object) -> None:
    """Nothing to warn about: the async face is made for event loops."""


async def run_concurrently(calls: Sequence[Callable[[], Awaitable[_T]]]) -> list[_T]:
    """Run every call as its own task on this event loop; return their results in order."""
    return list(await asyncio.gather(*(call() for call in calls)))


_ABANDONED: set[asyncio.Task[Any]] = set()
"""Work of :func:`undone_if_abandoned` whose caller left, and its undoing: kept until it ends."""


async def undone_if_abandoned(
    work: Callable[[], Coroutine[Any, Any, _T]],
    undo: Callable[[_T], Coroutine[Any, Any, object]],
) -> _T:
    """Return ``await work()``; should its caller leave first (cancelled), ``undo(result)`` runs.

    For work whose effect on the server outlives a caller that stops waiting:
    a lease lock taken as the ``asyncio.timeout`` around its caller expired
    (the command sent, its reply not read yet) would stay taken, by no one,
    for its whole lease. ``work()`` runs in a task of its own, which the
    caller's cancellation (however often repeated) does not reach; when the
    caller leaves before it ends, its result goes to ``undo``, in a task too.
    A failure of either is then logged at debug level.
    """
    task = asyncio.get_running_loop().create_task(work())
    try:
        return await asyncio.shield(task)
    except BaseException:
        if not task.done() or (not task.cancelled() and task.exception() is None):
            _ABANDONED.add(task)  # the caller left: the result is undone when it comes
            task.add_done_callback(lambda done: _undo(done, undo))
        raise


def _undo(done: asyncio.Task[_T], undo: Callable[[_T], Coroutine[Any, Any, object]]) -> None:
    _ABANDONED.discard(done)
    if done.cancelled() or done.exception() is not None:
        return  # nothing was done (the exception is retrieved: asyncio does not log it)
    undoing = done.get_loop().create_task(undo(done.result()))
    _ABANDONED.add(undoing)
    undoing.add_done_callback(_undone)


def _undone(undoing: asyncio.Task[Any]) -> None:
    _ABANDONED.discard(undoing)
    if not undoing.cancelled() and undoing.exception() is not None:
        logger.debug("undoing abandoned work failed", exc_info=undoing.exception())


async def call(function: Callable[[], Any]) -> Any:
    """Call ``function`` and, when it returns an awaitable (an ``async def``), await it."""
    result = function()
    if inspect.isawaitable(result):
        result = await result
    return result


class SingleFlight:
    """Concurrent calls for one key share one run of the work: its result, or its exception.

    The first caller for a key runs ``work``; callers that arrive while it
    runs wait for its outcome. A caller cancelled while it waits leaves the
    run alone; if the running caller itself is cancelled (or interrupted: a
    signal handler's exception, ``KeyboardInterrupt``), a waiter runs the work
    again (unless it was cancelled too, as a task group cancels both).
    """

    def __init__(self) -> None:
        """Start with nothing running."""
        # Each key's run: its outcome, and the task running it.
        self._running: dict[Hashable, tuple[asyncio.Future[Any], asyncio.Task[Any] | None]] = {}
        self.finished = 0
        """How many runs have ended (for any key): a caller that read it before
        missing knows whether a run may have ended, and stored, since."""

    async def run(
        self, key: Hashable, work: Callable[[], Awaitable[_T]], wait: float | None = None
    ) -> _T:
        """Return ``await work()``, run once for all callers that ask for ``key`` meanwhile.

        With ``wait``, a caller waits at most that many seconds for another's
        run, then raises :class:`~pevensie_cache.LockTimeout`.
        """
        task = asyncio.current_task()
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            run = self._running.get(key)
            if run is None:
                break
            running, owner = run
            if owner is not None and owner is task:
                raise called_from_its_own_loader(key)
            asked = task.cancelling() if task is not None else 0
            try:
                if deadline is None:
                    result: _T = await asyncio.shield(running)
                else:
                    left = max(0.0, deadline - time.monotonic())
                    result = await asyncio.wait_for(asyncio.shield(running), left)
                return result
            except asyncio.TimeoutError:  # noqa: UP041 (not TimeoutError on Python 3.10)
                if not running.done():
                    raise waited_for_a_load(key, wait or 0.0) from None
                if not running.cancelled():
                    ended: _T = running.result()  # (or its exception): it ended as the wait did
                    return ended
                # The running caller was cancelled: try again, maybe as the runner.
            except asyncio.CancelledError:
                if not running.cancelled() or (task is not None and task.cancelling() > asked):
                    raise  # this waiter was cancelled (maybe as the running caller was too)
                # The running caller was cancelled: try again, maybe as the runner.
        outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._running[key] = (outcome, task)
        try:
            value = await work()
        except asyncio.CancelledError:
            outcome.cancel()
            raise
        except BaseException as exc:
            if interrupted_its_caller(exc):
                # Not the work's outcome: this task was interrupted (a signal handler's
                # exception, KeyboardInterrupt), as by a cancellation: waiters try again.
                outcome.cancel()
                raise
            outcome.set_exception(exc)
            outcome.exception()  # retrieved: waiters, if any, re-raise it
            raise
        else:
            outcome.set_result(value)
            return value
        finally:
            del self._running[key]
            self.finished += 1


class Background:
    """Work that runs after its caller has returned: at most one run per key, a bounded number.

    :meth:`start` begins ``work()`` as a task of the running event loop unless
    a run for that key is still going, or :data:`BACKGROUND_LIMIT` runs are; the
    tasks are kept referenced until they end. :meth:`close` cancels every run
    and waits for them to end (the cache calls it at ``disconnect``).
    """

    def __init__(self, limit: int = BACKGROUND_LIMIT) -> None:
        """Start with nothing running; ``limit`` bounds the runs at once."""
        self._limit = limit
        self._tasks: dict[Hashable, asyncio.Task[None]] = {}
        self.finished = 0
        """How many runs have ended: a caller that read it before its lookup knows
        whether a run may have stored a newer value since."""

    def start(self, key: Hashable, work: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Run ``work()`` in the background unless ``key`` runs already or the bound is reached."""
        tasks = self._tasks
        if key in tasks or len(tasks) >= self._limit:
            return False
        task = asyncio.get_running_loop().create_task(work())
        tasks[key] = task
        task.add_done_callback(lambda done: self._ended(key, done))
        return True

    def running(self) -> int:
        """Return how many runs have not ended."""
        return len(self._tasks)

    async def idle(self) -> None:
        """Wait until every run started so far has ended."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        """Cancel every run, and wait until they have ended."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _ended(self, key: Hashable, task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        self.finished += 1
        if not task.cancelled() and task.exception() is not None:
            # The work handles its own failures; this is a bug, not a loader's error.
            logger.error("a background refresh failed unexpectedly", exc_info=task.exception())
