"""The async face of a driver that has none: its sync operations run in worker threads.

``cache.new_async(driver=...)`` uses :class:`ThreadedAsyncDriver` for a driver
registered without an ``async_factory`` (``cache.drivers()`` shows
``native_async=False`` for it). Each call takes one trip to the event loop's
default executor, so the loop never blocks; a batch is one trip, whatever its
size. A call whose awaiting task is cancelled still finishes in its thread
(a thread cannot be interrupted) and its result is dropped. The sync driver
must be thread-safe, as the sync face already requires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pevensie_cache.driver import BatchCacheDriver, CacheDriver, Progress
from pevensie_cache.errors import UnsupportedOperation

__all__ = ["ThreadedAsyncDriver"]


class ThreadedAsyncDriver:
    """Wraps a sync driver so the async face can await it (one worker-thread trip per call)."""

    def __init__(self, driver: CacheDriver) -> None:
        """Wrap ``driver``, a sync driver (``connect``, ``get``, ... as plain methods)."""
        self.sync_driver = driver
        self._batch = driver if isinstance(driver, BatchCacheDriver) else None

    def __repr__(self) -> str:
        return f"ThreadedAsyncDriver({self.sync_driver!r})"

    @property
    def stores_envelopes(self) -> bool:
        """Whether the sync driver keeps the facade's envelopes (:mod:`pevensie_cache.driver`)."""
        return bool(getattr(self.sync_driver, "stores_envelopes", False))

    async def connect(self) -> None:
        """Connect the sync driver in a worker thread."""
        await asyncio.to_thread(self.sync_driver.connect)

    async def disconnect(self) -> None:
        """Disconnect the sync driver in a worker thread."""
        await asyncio.to_thread(self.sync_driver.disconnect)

    async def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """``set`` in a worker thread."""
        await asyncio.to_thread(self.sync_driver.set, resource_type, key, value, ttl_seconds)

    async def get(self, resource_type: str, key: str) -> str | None:
        """``get`` in a worker thread."""
        return await asyncio.to_thread(self.sync_driver.get, resource_type, key)

    async def delete(self, resource_type: str, key: str) -> bool:
        """``delete`` in a worker thread."""
        return await asyncio.to_thread(self.sync_driver.delete, resource_type, key)

    async def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """``get_many`` (or one ``get`` per key) in one worker-thread trip."""
        return await asyncio.to_thread(self._get_many, resource_type, keys)

    async def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        """``set_many`` (or one ``set`` per item) in one worker-thread trip."""
        await asyncio.to_thread(self._set_many, resource_type, items, ttl_seconds)

    async def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """``delete_many`` (or one ``delete`` per key) in one worker-thread trip."""
        await asyncio.to_thread(self._delete_many, resource_type, keys)

    async def add(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> bool:
        """``add`` in a worker thread."""
        added: bool = await self._optional("add", resource_type, key, value, ttl_seconds)
        return added

    async def incr(self, resource_type: str, key: str, delta: int, ttl_seconds: int | None) -> int:
        """``incr`` in a worker thread."""
        result: int = await self._optional("incr", resource_type, key, delta, ttl_seconds)
        return result

    async def touch(self, resource_type: str, key: str, ttl_seconds: int | None) -> bool:
        """``touch`` in a worker thread."""
        touched: bool = await self._optional("touch", resource_type, key, ttl_seconds)
        return touched

    async def clear(self, resource_type: str, on_progress: Progress | None = None) -> int:
        """``clear`` in a worker thread (``on_progress`` is called from that thread)."""
        cleared: int = await self._optional("clear", resource_type, on_progress)
        return cleared

    async def exists(self, resource_type: str, key: str) -> bool:
        """``exists`` (or, without it, ``get``) in a worker thread."""
        method = getattr(self.sync_driver, "exists", None)
        if method is None:
            found = await asyncio.to_thread(self.sync_driver.get, resource_type, key)
            return found is not None
        return bool(await asyncio.to_thread(method, resource_type, key))

    async def ttl_ms(self, resource_type: str, key: str) -> int:
        """``ttl_ms`` in a worker thread."""
        left: int = await self._optional("ttl_ms", resource_type, key)
        return left

    async def acquire_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """``acquire_lock`` in a worker thread."""
        taken: bool = await self._optional("acquire_lock", resource_type, key, token, lease_ms)
        return taken

    async def release_lock(self, resource_type: str, key: str, token: str) -> None:
        """``release_lock`` in a worker thread."""
        await self._optional("release_lock", resource_type, key, token)

    async def extend_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """``extend_lock`` in a worker thread."""
        extended: bool = await self._optional("extend_lock", resource_type, key, token, lease_ms)
        return extended

    async def _optional(self, operation: str, *args: Any) -> Any:
        method = getattr(self.sync_driver, operation, None)
        if method is None:
            raise UnsupportedOperation(
                f"the {type(self.sync_driver).__name__} driver does not implement {operation}()"
            )
        return await asyncio.to_thread(method, *args)

    def _get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        if self._batch is not None:
            return self._batch.get_many(resource_type, keys)
        found: dict[str, str] = {}
        for key in keys:
            value = self.sync_driver.get(resource_type, key)
            if value is not None:
                found[key] = value
        return found

    def _set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        if self._batch is not None:
            self._batch.set_many(resource_type, items, ttl_seconds)
            return
        for key, value in items.items():
            self.sync_driver.set(resource_type, key, value, ttl_seconds)

    def _delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        if self._batch is not None:
            self._batch.delete_many(resource_type, keys)
            return
        for key in keys:
            self.sync_driver.delete(resource_type, key)
