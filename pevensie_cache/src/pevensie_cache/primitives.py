"""What the sync face waits and locks with: threads (twin of :mod:`.primitives_async`).

The same names as the async module, over threads, so code generated from an
``*_async.py`` module runs unchanged apart from ``await``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

__all__ = ["FACE", "Lock", "run_concurrently", "sleep"]

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
