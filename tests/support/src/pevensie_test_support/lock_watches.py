"""Tell when a lock waiter has started waiting on its lock watch, instead of pausing.

A waiter on a lease (``get_or_set(..., lock=True)``, ``c.lock(...)``) opens a
watch on the lock (``driver.watch_lock``) before its first try, then waits on it
(``watch.wait``) between tries. :func:`watch_entered` wraps a driver object's
``watch_lock`` so that an event is set the moment a waiter enters ``wait``: a
release after that is one the waiter must be woken by. Tests that measure the
wake-up wait on that event rather than sleeping and assuming the waiter got there.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

__all__ = ["watch_entered"]


class _EnteredWatch:
    """A lock watch that sets ``entered`` as each ``wait`` begins."""

    def __init__(self, watch: Any, entered: threading.Event) -> None:
        self._watch = watch
        self._entered = entered

    def wait(self, timeout: float) -> Any:
        self._entered.set()
        return self._watch.wait(timeout)  # a bool, or the coroutine of an async watch

    def close(self) -> None:
        self._watch.close()


def watch_entered(driver: Any) -> threading.Event:
    """Wrap ``driver.watch_lock`` (sync or async); return the event set when a waiter waits.

    ``driver`` is the object the cache's lease code calls (``cache.driver``).
    The event is a :class:`threading.Event` on both faces (an async test awaits
    ``asyncio.to_thread(event.wait, timeout)``); clear it before each round.
    A driver that cannot watch at the moment (``watch_lock`` returns None) leaves
    its waiters polling, and the event unset.
    """
    entered = threading.Event()
    original = driver.watch_lock

    if inspect.iscoroutinefunction(original):

        async def watch_lock_async(resource_type: str, key: str) -> Any:
            watch = await original(resource_type, key)
            return None if watch is None else _EnteredWatch(watch, entered)

        driver.watch_lock = watch_lock_async
    else:

        def watch_lock(resource_type: str, key: str) -> Any:
            watch = original(resource_type, key)
            return None if watch is None else _EnteredWatch(watch, entered)

        driver.watch_lock = watch_lock
    return entered
