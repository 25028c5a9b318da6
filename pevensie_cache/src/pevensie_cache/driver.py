"""The driver contract: what a cache driver implements for the facade to call.

A driver is any object with these methods; it need not inherit from anything.
The facade validates every argument and tracks the connected state before it
calls a driver, so a driver receives only valid input on a connected cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

__all__ = [
    "AsyncBatchCacheDriver",
    "AsyncCacheDriver",
    "BatchCacheDriver",
    "CacheDriver",
    "is_async_driver",
]


@runtime_checkable
class CacheDriver(Protocol):
    """The five operations every synchronous driver provides.

    ``get`` returns ``None`` for a miss; the facade turns that into
    :class:`~pevensie_cache.CacheMiss` or the caller's default. Failures are
    raised as subclasses of :class:`~pevensie_cache.DriverError`; any other
    exception is wrapped in ``DriverError`` by the facade.
    """

    def connect(self) -> None:
        """Open connections or other resources; called once per connect."""

    def disconnect(self) -> None:
        """Release everything ``connect`` opened."""

    def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """Store ``value``; ``ttl_seconds=None`` stores it without expiry, clearing any TTL."""

    def get(self, resource_type: str, key: str) -> str | None:
        """Return the stored value, or ``None`` when absent or expired."""

    def delete(self, resource_type: str, key: str) -> None:
        """Remove the value; an absent key is not an error."""


@runtime_checkable
class BatchCacheDriver(CacheDriver, Protocol):
    """A driver that also implements the batch operations natively.

    Drivers without them still work: the facade falls back to one call per key.
    """

    def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """Return the values found, keyed by key; misses are absent."""

    def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        """Store every item with the same TTL semantics as ``set``."""

    def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """Remove every key; absent keys are not an error."""


@runtime_checkable
class AsyncCacheDriver(Protocol):
    """The five operations every asynchronous driver provides, as coroutines.

    The same contract as :class:`CacheDriver`, awaited: ``get`` returns
    ``None`` for a miss, failures are :class:`~pevensie_cache.DriverError`
    subclasses. A driver object is bound to the event loop it connected on.
    """

    async def connect(self) -> None:
        """Open connections or other resources; called once per connect."""

    async def disconnect(self) -> None:
        """Release everything ``connect`` opened."""

    async def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """Store ``value``; ``ttl_seconds=None`` stores it without expiry, clearing any TTL."""

    async def get(self, resource_type: str, key: str) -> str | None:
        """Return the stored value, or ``None`` when absent or expired."""

    async def delete(self, resource_type: str, key: str) -> None:
        """Remove the value; an absent key is not an error."""


@runtime_checkable
class AsyncBatchCacheDriver(AsyncCacheDriver, Protocol):
    """An asynchronous driver that also implements the batch operations natively."""

    async def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """Return the values found, keyed by key; misses are absent."""

    async def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        """Store every item with the same TTL semantics as ``set``."""

    async def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """Remove every key; absent keys are not an error."""


def is_async_driver(driver: object) -> bool:
    """Return whether ``driver``'s operations are coroutine functions (an async driver)."""
    import inspect

    return all(
        inspect.iscoroutinefunction(getattr(driver, name, None))
        for name in ("connect", "disconnect", "set", "get", "delete")
    )
