"""What the async face's shared logic needs from its runtime: asyncio.

The channel, the listener and the locators are written once, in their
``*_async.py`` modules, and their sync twins are generated from them
(``.ci/unasync.py``), which turns ``runtime_async`` into
:mod:`~pevensie_redis.runtime`: the same few names, for threads.

- :func:`sleep`: wait without blocking the event loop;
- :func:`start`, :func:`join`, :func:`settle` and :func:`finish`: background
  work (opening a pipe, asking the sentinels, the near cache's listener) that
  runs to its end even when the caller that started it, or one that waits for
  it, is cancelled: a task, awaited through :func:`asyncio.shield`;
- :class:`Signal`: something happened; wait for it with a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["Flight", "Signal", "finish", "join", "park", "settle", "sleep", "start"]

_T = TypeVar("_T")

Flight = asyncio.Task
"""Background work started by :func:`start` (an asyncio task)."""

sleep = asyncio.sleep


async def park() -> None:
    """Wait for ever (the sync face's :func:`~pevensie_redis.runtime.park`; never reached here)."""
    await asyncio.get_running_loop().create_future()


def start(work: Callable[[], Coroutine[Any, Any, _T]], name: str | None = None) -> asyncio.Task[_T]:
    """Run ``work()`` in a task of the running loop; its failure is retrieved, never logged."""
    task = asyncio.get_running_loop().create_task(work(), name=name)
    task.add_done_callback(_consume)
    return task


async def join(flight: asyncio.Task[_T]) -> _T:
    """Wait for ``flight``'s result; a cancelled caller leaves it running for the others."""
    return await asyncio.shield(flight)


async def settle(flight: asyncio.Task[Any], timeout: float) -> None:
    """Wait (up to ``timeout``) until ``flight`` has ended; it runs on either way."""
    await asyncio.wait({flight}, timeout=timeout)


async def finish(flight: asyncio.Task[Any], timeout: float) -> None:
    """Cancel ``flight`` and wait (up to ``timeout``) until it has ended; its failure is dropped.

    Not ``wait_for``: before Python 3.12 it can lose the caller's own cancellation.
    """
    flight.cancel()
    await asyncio.wait({flight}, timeout=timeout)


class Signal:
    """Something happened (a message, a first attempt): callers wait for it with a timeout."""

    def __init__(self) -> None:
        """Start unset."""
        self._event = asyncio.Event()

    def set(self) -> None:
        """Mark it happened, waking every waiter."""
        self._event.set()

    def clear(self) -> None:
        """Unset it, to wait for the next time."""
        self._event.clear()

    def is_set(self) -> bool:
        """Whether it happened (since the last :meth:`clear`)."""
        return self._event.is_set()

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; return whether it happened."""
        waiter = asyncio.ensure_future(self._event.wait())
        try:  # not wait_for: it can lose the caller's cancellation (Python < 3.12)
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()
        return self._event.is_set()


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a finished task's error, so asyncio does not report it as never retrieved."""
    if not task.cancelled():
        task.exception()
