"""Locks of the async face: ``async with c.lock("report", "monthly"):`` holds a lease lock.

This module is the source of the sync face's too: ``locks.py``
(:class:`~pevensie_cache.CacheLock`) is generated from it by
``.ci/unasync.py``. Edit this file, then run ``nox -s generate``.

The lock is the driver's lease lock (on Redis a key ``:lock:<type>:<name>``
set with ``NX PX``, so it excludes other processes and hosts): taken with a
random token, released only by that token (compare-and-delete), extended
only by it (compare-and-expire). A holder that crashes leaves a lease that
simply expires. A caller waiting for it is woken by the holder's release
where the driver can tell (its ``watch_lock``), and polls otherwise. On the
async face, a caller cancelled while a try's reply is on its way leaves no
lease taken by no one: a lease that try took is released; and a release runs
to its end even when its caller is cancelled again and again meanwhile.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from datetime import timedelta
from types import TracebackType
from typing import Any, Protocol, TypeVar

from pevensie_cache.errors import (
    ArgumentValueError,
    LockNotHeld,
    LockTimeout,
    PevensieCacheError,
)
from pevensie_cache.primitives_async import FaceGuard, sleep, undone_if_abandoned
from pevensie_cache.validation import check_lock_seconds

__all__ = ["POLL_FIRST", "POLL_MAX", "AsyncCacheLock", "LockCalls"]

POLL_FIRST = 0.005
"""Seconds before the second try to take a lock another holder has."""
POLL_MAX = 0.1
"""Seconds between two tries, at most (the pause doubles from :data:`POLL_FIRST`)."""

_Self = TypeVar("_Self", bound="AsyncCacheLock")

logger = logging.getLogger("pevensie_cache")


class LockCalls(Protocol):
    """What a lock needs of its cache: the driver's lock operations, never served open."""

    async def _lock_call(self, operation: str, resource_type: str, *args: Any) -> Any:
        """Call the driver's ``operation`` (``acquire_lock``, ``release_lock``, ``extend_lock``)."""

    async def _lock_watch(self, resource_type: str, name: str) -> Any:
        """Watch the lock's release where the driver can (``None``: poll)."""


class AsyncCacheLock(FaceGuard):
    """One lease lock of a cache: ``async with`` takes and releases it.

    Built by :meth:`AsyncPevensieCache.lock <pevensie_cache.AsyncPevensieCache.lock>`.
    One object is one holder: it holds the lock at most once at a time.
    """

    __slots__ = ("_cache", "_lease", "_token", "_wait", "name", "resource_type")

    def __init__(
        self,
        cache: LockCalls,
        resource_type: str,
        name: str,
        lease_seconds: float,
        wait_seconds: float,
    ) -> None:
        """Bind the lock ``name`` of ``resource_type`` in ``cache`` (see ``cache.lock``)."""
        self._cache = cache
        self.resource_type = resource_type
        """The resource type the lock belongs to."""
        self.name = name
        """The lock's name within its resource type."""
        self._lease = lease_seconds
        self._wait = wait_seconds
        self._token: str | None = None

    def __repr__(self) -> str:
        state = "held" if self._token is not None else "not held"
        return f"<{type(self).__name__} {self.resource_type!r} {self.name!r} {state}>"

    @property
    def held(self) -> bool:
        """Whether this object took the lock and has not released it (its lease may still lapse)."""
        return self._token is not None

    async def acquire(self) -> None:
        """Take the lock, waiting up to ``wait_seconds`` for another holder to let it go.

        Raises :class:`~pevensie_cache.LockTimeout` when it stays taken that
        long, and :class:`~pevensie_cache.ArgumentValueError` when this object
        already holds it.
        """
        if self._token is not None:
            raise ArgumentValueError(
                f"the lock {self.name!r} of resource type {self.resource_type!r} is already "
                "held by this object: release it first"
            )
        token = secrets.token_hex(16)
        lease_ms = _milliseconds(self._lease)
        deadline = time.monotonic() + self._wait
        pause = POLL_FIRST
        # Watched before the first try: a release after it wakes this waiter at once.
        watch = await self._cache._lock_watch(self.resource_type, self.name) if self._wait else None
        try:
            while not await self._take(token, lease_ms):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LockTimeout(
                        f"the lock {self.name!r} of resource type {self.resource_type!r} stayed "
                        f"with another holder for {self._wait:g} s (wait_seconds)"
                    )
                if watch is not None:
                    await watch.wait(min(POLL_MAX, left))
                else:
                    await sleep(min(pause, left))
                    pause = min(pause * 2, POLL_MAX)
        finally:
            if watch is not None:
                watch.close()
        self._token = token

    async def _take(self, token: str, lease_ms: int) -> bool:
        """One try at the lock; a lease taken as the caller was cancelled is released."""

        async def take() -> bool:
            return bool(
                await self._cache._lock_call(
                    "acquire_lock", self.resource_type, self.name, token, lease_ms
                )
            )

        async def undo(taken: bool) -> None:
            if taken:
                await self._cache._lock_call("release_lock", self.resource_type, self.name, token)

        return await undone_if_abandoned(take, undo)

    async def release(self) -> None:
        """Release the lock if this holder still holds it; nothing otherwise.

        On the async face it runs to its end even when the caller is cancelled (again) meanwhile.
        """
        token, self._token = self._token, None
        if token is None:
            return

        async def releasing() -> None:
            await self._cache._lock_call("release_lock", self.resource_type, self.name, token)

        async def nothing(_: None) -> None:
            pass

        await undone_if_abandoned(releasing, nothing)

    async def extend(self, ttl_seconds: float | timedelta) -> None:
        """Hold the lock ``ttl_seconds`` from now on (a new lease, longer or shorter).

        Raises :class:`~pevensie_cache.LockNotHeld` when this holder no longer
        holds it: its lease ran out (another holder may have it now), or it
        was released.
        """
        lease = check_lock_seconds("ttl_seconds", ttl_seconds, zero=False)
        token = self._token
        if token is None:
            raise LockNotHeld(
                f"extend(): the lock {self.name!r} of resource type {self.resource_type!r} "
                "is not held by this object"
            )
        extended = await self._cache._lock_call(
            "extend_lock", self.resource_type, self.name, token, _milliseconds(lease)
        )
        if not extended:
            self._token = None
            raise LockNotHeld(
                f"extend(): the lease of the lock {self.name!r} of resource type "
                f"{self.resource_type!r} ran out before it was extended; another holder "
                "may have it now"
            )

    async def __aenter__(self: _Self) -> _Self:
        """Take the lock (see :meth:`acquire`)."""
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release the lock (see :meth:`release`).

        When the block raised, a failure to release is logged rather than
        raised over the block's own exception: the lease expires by itself.
        """
        try:
            await self.release()
        except PevensieCacheError as failure:
            if exc is None:
                raise
            logger.warning(
                "releasing the lock %r of resource type %r failed (%s); its lease will expire",
                self.name,
                self.resource_type,
                type(failure).__name__,
            )


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
