"""What the async face waits and locks with: asyncio's primitives.

Its sync twin is :mod:`pevensie_cache.primitives`, with the same names over
threads. Code generated from an ``*_async.py`` module imports this module's
names from the sync twin instead, so every other line is shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

__all__ = ["FACE", "Lock", "run_concurrently", "sleep"]

_T = TypeVar("_T")

FACE: Literal["async"] = "async"
"""Which face of the cache this module serves."""

Lock = asyncio.Lock
"""A lock held across awaits (``async with``)."""

sleep = asyncio.sleep
"""Wait ``seconds`` without blocking the event loop."""


async def run_concurrently(calls: Sequence[Callable[[], Awaitable[_T]]]) -> list[_T]:
    """Run every call as its own task on this event loop; return their results in order."""
    return list(await asyncio.gather(*(call() for call in calls)))
