"""The driver contract: what a cache driver implements for the facade to call.

A driver is any object with these methods; it need not inherit from anything.
The facade validates every argument and tracks the connected state before it
calls a driver, so a driver receives only valid input on a connected cache.

Two things besides the application's own data reach a driver through these
operations, and a driver stores them like any other:

- the tag counters (:mod:`pevensie_cache.tags`): under the resource type
  ``""``, which no API call can name, read with ``get_many`` and written with
  ``add`` and ``incr``;
- envelopes (:mod:`pevensie_cache.envelope`): values that start with U+DCFF,
  a lone surrogate no application value can hold, written with ``set`` for
  entries with freshness options or tags. Only a driver whose
  ``stores_envelopes`` attribute is true gets them: it must return such a
  value exactly as it was given (the Redis driver stores the mark as the byte
  ``0xFF``). On other drivers those options raise
  :class:`~pevensie_cache.UnsupportedOperation`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

Progress = Callable[[int], None]
"""Called by ``clear`` with the running count of deleted keys."""

ABSENT = -2
"""What ``ttl_ms`` returns for a key that is absent or expired (Redis ``PTTL``'s -2)."""

NO_EXPIRY = -1
"""What ``ttl_ms`` returns for a key stored without a TTL (Redis ``PTTL``'s -1)."""

__all__ = [
    "ABSENT",
    "NO_EXPIRY",
    "AcrossCacheDriver",
    "AsyncAcrossCacheDriver",
    "AsyncAtomicCacheDriver",
    "AsyncBatchCacheDriver",
    "AsyncCacheDriver",
    "AsyncKeyInfoCacheDriver",
    "AsyncLockWatch",
    "AsyncLockingCacheDriver",
    "AsyncViewDriver",
    "AsyncWatchingCacheDriver",
    "AtomicCacheDriver",
    "BatchCacheDriver",
    "CacheDriver",
    "DriverConfig",
    "InProcessTable",
    "KeyInfoCacheDriver",
    "LockWatch",
    "LockingCacheDriver",
    "MemoCell",
    "Progress",
    "WatchingCacheDriver",
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

    def delete(self, resource_type: str, key: str) -> bool:
        """Remove the value; return whether there was one (an absent key is not an error)."""


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
class AtomicCacheDriver(CacheDriver, Protocol):
    """A driver with the optional atomic operations and ``clear``.

    Each is optional on its own: the facade raises
    :class:`~pevensie_cache.UnsupportedOperation` for one a driver lacks, and
    never emulates it with several racy calls.
    """

    def add(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> bool:
        """Store ``value`` only if the key is absent, atomically; return whether it stored."""

    def incr(self, resource_type: str, key: str, delta: int, ttl_seconds: int | None) -> int:
        """Add ``delta`` atomically (absent counts as 0) and return the new value.

        ``ttl_seconds`` applies only when this call creates the key. A stored value
        that is not a 64-bit integer, or an overflow, raises
        :class:`~pevensie_cache.CounterError` and changes nothing.
        """

    def touch(self, resource_type: str, key: str, ttl_seconds: int | None) -> bool:
        """Set (or, with ``None``, clear) the key's TTL; return ``False`` if it is absent."""

    def clear(self, resource_type: str, on_progress: Progress | None) -> int:
        """Delete every key of ``resource_type`` and nothing else; return how many."""


@runtime_checkable
class KeyInfoCacheDriver(CacheDriver, Protocol):
    """A driver that says whether a key exists and how long it has left.

    Each is optional on its own: without ``exists`` the facade answers with one
    ``get``; without ``ttl_ms``, ``ttl()`` raises
    :class:`~pevensie_cache.UnsupportedOperation`.
    """

    def exists(self, resource_type: str, key: str) -> bool:
        """Return whether the key holds a value (absent and expired keys do not)."""

    def ttl_ms(self, resource_type: str, key: str) -> int:
        """Return the key's milliseconds left: :data:`ABSENT` (-2) or :data:`NO_EXPIRY` (-1).

        As Redis ``PTTL`` answers: -2 when the key is absent or expired, -1 when
        it has no TTL, else the milliseconds before it expires (0 or more).
        """


@runtime_checkable
class LockingCacheDriver(CacheDriver, Protocol):
    """A driver with lease locks: ``cache.lock(...)`` and ``get_or_set(..., lock=True)``.

    The lock of ``(resource_type, key)`` is held by the caller whose ``token``
    took it, for ``lease_ms`` at most; only that token releases or extends it.
    ``extend_lock`` is optional on its own (``lock.extend()`` raises
    :class:`~pevensie_cache.UnsupportedOperation` without it).
    """

    def acquire_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """Take the lock of the key for ``lease_ms`` if nobody holds it; return whether taken."""

    def release_lock(self, resource_type: str, key: str, token: str) -> None:
        """Release the lock of the key if ``token`` still holds it (never another holder's)."""

    def extend_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """Give the lock a new lease of ``lease_ms`` from now if ``token`` holds it; say whether."""


@runtime_checkable
class AcrossCacheDriver(CacheDriver, Protocol):
    """A driver that reads keys of several resource types in one go (one round trip).

    Optional: without it, the facade reads an entry and its tags' counters
    with ``get`` and ``get_many``, one after the other.
    """

    def get_across(self, addresses: Sequence[tuple[str, str]]) -> list[str | None]:
        """Return the value of each ``(resource_type, key)``, in order; ``None`` for a miss."""


class LockWatch(Protocol):
    """Wakes a waiter when a lease lock is released (see :class:`WatchingCacheDriver`)."""

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a release; return whether one was seen.

        It may return early without a release; the caller then looks again.
        """

    def close(self) -> None:
        """Stop watching."""


@runtime_checkable
class WatchingCacheDriver(LockingCacheDriver, Protocol):
    """A driver that tells lease waiters when a lock is released, so they need not poll.

    Optional: without it, waiters poll (every 5 ms at first, 100 ms at most).
    """

    def watch_lock(self, resource_type: str, key: str) -> LockWatch | None:
        """Start watching the lock of the key: a release after this returns wakes ``wait``.

        Returns ``None`` when it cannot watch now (the caller polls instead).
        A lease that expires without a release wakes nobody: waiters keep
        polling at a slower pace, for that case.
        """


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

    async def delete(self, resource_type: str, key: str) -> bool:
        """Remove the value; return whether there was one (an absent key is not an error)."""


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


@runtime_checkable
class AsyncAtomicCacheDriver(AsyncCacheDriver, Protocol):
    """The async twin of :class:`AtomicCacheDriver`."""

    async def add(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> bool:
        """Store ``value`` only if the key is absent, atomically; return whether it stored."""

    async def incr(self, resource_type: str, key: str, delta: int, ttl_seconds: int | None) -> int:
        """Add ``delta`` atomically (absent counts as 0) and return the new value."""

    async def touch(self, resource_type: str, key: str, ttl_seconds: int | None) -> bool:
        """Set (or, with ``None``, clear) the key's TTL; return ``False`` if it is absent."""

    async def clear(self, resource_type: str, on_progress: Progress | None) -> int:
        """Delete every key of ``resource_type`` and nothing else; return how many."""


@runtime_checkable
class AsyncKeyInfoCacheDriver(AsyncCacheDriver, Protocol):
    """The async twin of :class:`KeyInfoCacheDriver`."""

    async def exists(self, resource_type: str, key: str) -> bool:
        """Return whether the key holds a value (absent and expired keys do not)."""

    async def ttl_ms(self, resource_type: str, key: str) -> int:
        """Return the key's milliseconds left: :data:`ABSENT` (-2) or :data:`NO_EXPIRY` (-1)."""


@runtime_checkable
class AsyncLockingCacheDriver(AsyncCacheDriver, Protocol):
    """The async twin of :class:`LockingCacheDriver`."""

    async def acquire_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """Take the lock of the key for ``lease_ms`` if nobody holds it; return whether taken."""

    async def release_lock(self, resource_type: str, key: str, token: str) -> None:
        """Release the lock of the key if ``token`` still holds it (never another holder's)."""

    async def extend_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """Give the lock a new lease of ``lease_ms`` from now if ``token`` holds it; say whether."""


class MemoCell:
    """Whether the entry a memo watches (a tag's counter) is unchanged since the memo was made.

    One object per watched entry, shared by every memo that watches it: ``live``
    is ``True`` until the store changes or drops that entry, and never ``True``
    again (a later memo gets a new cell). A slot, not a list, so that a hit
    reads one object.
    """

    __slots__ = ("live",)

    def __init__(self, live: bool = True) -> None:
        """Make a cell that reads ``live``."""
        self.live = live


class InProcessTable(NamedTuple):
    """The entries of a store that lives in this process, lent for reading without a call.

    Optional, and for a store in this process only (the memory driver): a
    driver with an ``in_process_table()`` method returns one of these (or
    ``None``, when its reads must go through its methods: the memory driver
    with ``max_entries``, whose reads move entries). The freshness layer reads
    ``entries`` directly on the hit path of ``get_or_set`` with freshness
    options or tags, and keeps an opened form of each envelope beside it
    (``attach``), so that such a hit costs about what a plain one does.
    """

    entries: Mapping[str, tuple[Any, ...]]
    """``<resource_type>:<key>`` -> ``(value, deadline)``, or
    ``(value, deadline, cell, answer, until, *rest)`` once ``attach`` gave the entry the
    memo ``(answer, until, *rest)``: ``cell`` is a :class:`MemoCell`, live until the entry
    the memo watches changes, and ``until`` the earlier of the memo's and the entry's
    deadlines, on :attr:`clock`. Read without a lock: each lookup is atomic, and every
    change to an entry replaces its tuple or drops it."""
    clock: Callable[[], float]
    """The clock the deadlines are on: an entry with ``deadline <= clock()`` is gone."""
    attach: Callable[[str, str, str, tuple[Any, ...], tuple[str, str, str] | None], None]
    """``attach(resource_type, key, value, memo, watched)``: see the memory driver's."""


@runtime_checkable
class DriverConfig(Protocol):
    """A driver's typed configuration, which ``cache.new(config)`` builds the driver from.

    The typed path to a cache: a dataclass such as
    :class:`pevensie_redis.RedisConfig` lists every option as a field, so a
    type checker flags a misspelt one (``RedisConfig(prot=6379)``), where
    ``cache.new(driver="redis", prot=6379)`` is only caught when it runs.
    ``driver_name`` names the registered driver; its factories receive the
    configuration object as their one argument.
    """

    @property
    def driver_name(self) -> str:
        """The registered name of the driver this configures (``"redis"``)."""


@runtime_checkable
class AsyncAcrossCacheDriver(AsyncCacheDriver, Protocol):
    """The async twin of :class:`AcrossCacheDriver`."""

    async def get_across(self, addresses: Sequence[tuple[str, str]]) -> list[str | None]:
        """Return the value of each ``(resource_type, key)``, in order; ``None`` for a miss."""


class AsyncLockWatch(Protocol):
    """The async twin of :class:`LockWatch`."""

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a release; return whether one was seen."""

    def close(self) -> None:
        """Stop watching."""


@runtime_checkable
class AsyncWatchingCacheDriver(AsyncLockingCacheDriver, Protocol):
    """The async twin of :class:`WatchingCacheDriver`."""

    async def watch_lock(self, resource_type: str, key: str) -> AsyncLockWatch | None:
        """Start watching the lock of the key (see :meth:`WatchingCacheDriver.watch_lock`)."""


@runtime_checkable
class AsyncViewDriver(CacheDriver, Protocol):
    """A sync driver whose data lives in the driver object, with an async face over that data.

    In-process stores (the memory driver) offer it, so that code using both
    faces of one configuration (the Django backend) sees one store: a second
    driver built from the same URL would hold its own, empty store. The view's
    operations must not block, and connecting it must leave the store alone.
    """

    def async_view(self) -> AsyncCacheDriver:
        """Return an async driver over this driver's own data, usable from any event loop."""
