"""What the sync face waits and locks with: threads (twin of :mod:`.primitives_async`).

The same names as the async module, over threads, so code generated from an
``*_async.py`` module runs unchanged apart from ``await``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pevensie_cache.driver import AsyncViewDriver

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


def call(function: Callable[[], Any]) -> Any:
    """Call ``function`` (the async face also awaits what an ``async def`` returns)."""
    return function()


class _Run:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class SingleFlight:
    """Concurrent calls for one key share one run of the work: its result, or its exception.

    The first thread to ask for a key runs ``work``; threads that ask while
    it runs wait for its outcome.
    """

    def __init__(self) -> None:
        """Start with nothing running."""
        self._lock = threading.Lock()
        self._running: dict[Hashable, _Run] = {}
        self.finished = 0
        """How many runs have ended (for any key): a caller that read it before
        missing knows whether a run may have ended, and stored, since."""

    def run(self, key: Hashable, work: Callable[[], _T]) -> _T:
        """Return ``work()``, run once for all threads that ask for ``key`` meanwhile."""
        with self._lock:
            running = self._running.get(key)
            if running is None:
                mine = self._running[key] = _Run()
        if running is not None:
            running.done.wait()
            if running.error is not None:
                raise running.error
            result: _T = running.value
            return result
        try:
            mine.value = value = work()
            return value
        except BaseException as exc:
            mine.error = exc
            raise
        finally:
            with self._lock:
                del self._running[key]
                self.finished += 1
            mine.done.set()
