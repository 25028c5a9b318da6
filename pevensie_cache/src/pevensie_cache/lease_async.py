"""Loading under a lease lock, async face: one loader across processes, waiters woken on release.

This module is the source of the sync face's too: ``lease.py`` is generated
from it by ``.ci/unasync.py``. Edit this file, then run ``nox -s generate``.

``get_or_set(..., lock=True)`` and the background refresh of a stale entry
take the key's lease lock (the driver's ``acquire_lock``: a ``SET NX PX`` on
Redis) before they call the loader. A caller that finds the lock taken waits
for the value the holder stores:

- on a driver that can watch locks (``watch_lock``: the memory driver in this
  process, the Redis driver through a published message), the holder's
  release wakes it at once; it still looks again every
  :data:`LOCK_POLL_MAX` seconds, for the lease that expires without a release
  (a crashed holder) and for a watch that stopped working;
- on any other driver it polls: every 5 ms at first, doubling up to
  :data:`LOCK_POLL_MAX`.

A lock is released only by its holder: ``release_lock`` deletes it only if it
still holds the holder's token (compare-and-delete).

On the async face, a caller that stops waiting (cancelled: an
``asyncio.timeout`` around it expired) strands no lease: a take whose reply
was still on its way when the caller left is released once the reply says it
took the lock, and a release under way runs to its end
(:func:`~pevensie_cache.primitives_async.undone_if_abandoned`).
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pevensie_cache.driver import AsyncCacheDriver
from pevensie_cache.errors import LockTimeout, PevensieCacheError
from pevensie_cache.primitives_async import sleep, undone_if_abandoned

__all__ = [
    "LOCK_POLL_MAX",
    "AsyncLeaseHost",
    "finish_release",
    "load_under_lease",
    "release",
    "take_lease",
    "try_lease",
    "watch_lock",
]

logger = logging.getLogger("pevensie_cache")

LOCK_POLL_MAX = 0.1
"""Seconds between two looks at the value while another holder has the lock, at most."""

LOCK_POLL_FIRST = 0.005
"""Seconds before the first look again, when nothing wakes the waiter."""


class AsyncLeaseHost(Protocol):
    """What the lease code needs of the cache: its optional-operation call."""

    async def _optional(self, driver: AsyncCacheDriver, operation: str, *args: Any) -> Any: ...


async def load_under_lease(
    cache: AsyncLeaseHost,
    driver: AsyncCacheDriver,
    resource_type: str,
    key: str,
    lease: float,
    wait: float,
    lookup: Callable[[], Awaitable[str | None]],
    load: Callable[[], Awaitable[str]],
) -> str:
    """Return ``load()`` run under the key's lease lock, or the value another holder stored.

    ``lookup()`` returns the stored value or ``None``; it is asked while the
    lock is taken by another holder, and once more after taking the lock (the
    previous holder may have stored the value just before releasing). Waiting
    longer than ``wait`` seconds raises :class:`~pevensie_cache.LockTimeout`.
    """
    token = secrets.token_hex(16)
    lease_ms = max(1, math.ceil(lease * 1000))
    deadline = time.monotonic() + wait
    pause = LOCK_POLL_FIRST
    watch = await watch_lock(driver, resource_type, key)
    try:
        while not await take_lease(cache, driver, resource_type, key, token, lease_ms):
            found = await lookup()
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(
                    f"get_or_set waited {wait:g} s for the value of resource type "
                    f"{resource_type!r}, key {key!r}, loaded under another holder's lock"
                )
            if watch is not None:
                await watch.wait(min(LOCK_POLL_MAX, left))
            else:
                await sleep(min(pause, left))
                pause = min(pause * 2, LOCK_POLL_MAX)
    finally:
        if watch is not None:
            watch.close()
    try:
        found = await lookup()
        if found is not None:
            return found
        return await load()
    finally:
        await finish_release(cache, driver, resource_type, key, token)


async def try_lease(
    cache: AsyncLeaseHost, driver: AsyncCacheDriver, resource_type: str, key: str, lease: float
) -> str | None:
    """Take the key's lease lock if it is free and return its token; ``None`` if it is taken.

    A driver without lease locks gives a token without taking anything: then
    only this process's own bookkeeping keeps the work to one run.
    """
    if getattr(driver, "acquire_lock", None) is None:
        return ""
    token = secrets.token_hex(16)
    lease_ms = max(1, math.ceil(lease * 1000))
    taken = await take_lease(cache, driver, resource_type, key, token, lease_ms)
    return token if taken else None


async def take_lease(
    cache: AsyncLeaseHost,
    driver: AsyncCacheDriver,
    resource_type: str,
    key: str,
    token: str,
    lease_ms: int,
) -> bool:
    """Take the key's lease lock for ``token`` if it is free; return whether it did.

    Should the caller be cancelled while the reply is on its way, a lease
    the server gave is released, not left to block every other caller for
    its whole duration.
    """

    async def take() -> bool:
        return bool(
            await cache._optional(driver, "acquire_lock", resource_type, key, token, lease_ms)
        )

    async def undo(taken: bool) -> None:
        if taken:
            await release(cache, driver, resource_type, key, token)

    return await undone_if_abandoned(take, undo)


async def finish_release(
    cache: AsyncLeaseHost, driver: AsyncCacheDriver, resource_type: str, key: str, token: str
) -> None:
    """:func:`release`, run to its end even when the caller is cancelled (again) meanwhile."""

    async def releasing() -> None:
        await release(cache, driver, resource_type, key, token)

    async def nothing(_: None) -> None:
        pass

    await undone_if_abandoned(releasing, nothing)


async def release(
    cache: AsyncLeaseHost, driver: AsyncCacheDriver, resource_type: str, key: str, token: str
) -> None:
    """Release the key's lease lock if ``token`` still holds it; a failure is only logged."""
    if not token:
        return  # try_lease on a driver without locks took nothing
    try:
        await cache._optional(driver, "release_lock", resource_type, key, token)
    except PevensieCacheError as exc:
        # The lease expires by itself; the caller's outcome matters more.
        logger.warning("get_or_set: releasing the lock failed (%s); it will expire", exc)


async def watch_lock(driver: object, resource_type: str, key: str) -> Any:
    """Start watching the key's lock on a driver that can; ``None`` otherwise (poll).

    The watch's ``wait(timeout)`` returns when the holder releases the lock;
    close it when done (see :class:`~pevensie_cache.driver.AsyncWatchingCacheDriver`).
    """
    watch_lock = getattr(driver, "watch_lock", None)
    if watch_lock is None:
        return None
    try:
        return await watch_lock(resource_type, key)
    except Exception as exc:
        logger.debug("cannot watch the lock (%s); polling instead", type(exc).__name__)
        return None
