"""What the async face waits and locks with: asyncio's primitives.

Its sync twin is :mod:`pevensie_cache.primitives`, with the same names over
threads. Code generated from an ``*_async.py`` module imports this module's
names from the sync twin instead, so every other line is shared.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

__all__ = [
    "CONNECT_HINT",
    "FACE",
    "FaceGuard",
    "Lock",
    "SingleFlight",
    "call",
    "run_concurrently",
    "sleep",
    "warn_if_in_event_loop",
]

_T = TypeVar("_T")

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
    run alone; if the running caller itself is cancelled, a waiter runs the
    work again.
    """

    def __init__(self) -> None:
        """Start with nothing running."""
        self._running: dict[Hashable, asyncio.Future[Any]] = {}
        self.finished = 0
        """How many runs have ended (for any key): a caller that read it before
        missing knows whether a run may have ended, and stored, since."""

    async def run(self, key: Hashable, work: Callable[[], Awaitable[_T]]) -> _T:
        """Return ``await work()``, run once for all callers that ask for ``key`` meanwhile."""
        while True:
            running = self._running.get(key)
            if running is None:
                break
            try:
                result: _T = await asyncio.shield(running)
                return result
            except asyncio.CancelledError:
                if not running.cancelled():
                    raise  # this waiter was cancelled
                # The running caller was cancelled: try again, maybe as the runner.
        outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._running[key] = outcome
        try:
            value = await work()
        except asyncio.CancelledError:
            outcome.cancel()
            raise
        except BaseException as exc:
            outcome.set_exception(exc)
            outcome.exception()  # retrieved: waiters, if any, re-raise it
            raise
        else:
            outcome.set_result(value)
            return value
        finally:
            del self._running[key]
            self.finished += 1
