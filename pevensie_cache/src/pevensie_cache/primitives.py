"""What the sync face waits and locks with: threads (twin of :mod:`.primitives_async`).

The same names as the async module, over threads, so code generated from an
``*_async.py`` module runs unchanged apart from ``await``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

__all__ = ["FACE", "Lock", "SingleFlight", "call", "run_concurrently", "sleep"]

_T = TypeVar("_T")

FACE: Literal["sync"] = "sync"
"""Which face of the cache this module serves."""

Lock = threading.Lock
"""A lock held by one thread at a time (``with``)."""

sleep = time.sleep
"""Wait ``seconds``, blocking this thread."""


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
    __slots__ = ("done", "error", "traceback", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.traceback: TracebackType | None = None


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
                # From the run's own traceback, as asyncio's futures raise: raising the
                # shared exception as it is would chain every waiter's frames onto it.
                raise running.error.with_traceback(running.traceback)
            result: _T = running.value
            return result
        try:
            mine.value = value = work()
            return value
        except BaseException as exc:
            mine.error, mine.traceback = exc, exc.__traceback__
            raise
        finally:
            with self._lock:
                del self._running[key]
                self.finished += 1
            mine.done.set()
