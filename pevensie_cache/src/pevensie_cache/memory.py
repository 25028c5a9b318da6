"""The built-in in-memory driver (``memory``, ``memory://``): the embedded default.

In-process and thread-safe, with the same TTL semantics as the Redis driver: a
set without TTL clears an earlier one, and expiry runs on a monotonic clock, so
changing the wall clock changes nothing. ``max_entries`` bounds the size with
least-recently-used eviction. Expired entries are dropped when read and swept
in the background of writes, so memory does not grow with entries never read
again. The clock can be replaced (``MemoryDriver(clock=...)``), so a test moves
time forward instead of waiting for it.

Lease locks wake their waiters in this process when they are released
(``watch_lock``), and the store keeps the facade's envelopes as they are
(``stores_envelopes``): both faces of a store share them. Its entries can
be read in place (``in_process_table``), with a memo the freshness layer
attaches to an entry (``attach``): its envelope kept opened, valid until the
entry or its tag's counter changes, so that a hit with freshness options costs
little more than a plain one.

Its one option, ``max_entries``, is declared once in :data:`OPTIONS` and
converted by the shared rule of :mod:`pevensie_cache.options`, so
``memory://?max_entries=1000``, ``{"max_entries": "1000"}`` and
``max_entries=1000`` mean the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import operator
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from pevensie_cache import forks
from pevensie_cache.driver import ABSENT, NO_EXPIRY, InProcessTable, MemoCell, Progress
from pevensie_cache.errors import ConfigError
from pevensie_cache.hookspecs import hookimpl
from pevensie_cache.inspection import Baseline, KeySample, KeyTtl, ServerInfo, resource_type_of
from pevensie_cache.options import Option, OptionSet
from pevensie_cache.registry import Register
from pevensie_cache.urls import mask_url, query_options, url_scheme
from pevensie_cache.validation import check_counter, parse_counter

__all__ = [
    "OPTIONS",
    "AsyncMemoryDriver",
    "AsyncMemoryLockWatch",
    "Clock",
    "MemoryDriver",
    "MemoryInspector",
    "MemoryLockWatch",
    "from_url",
    "from_url_async",
    "inspector_for_driver",
    "new",
    "new_async",
    "new_cache_driver",
    "register_cache_drivers",
]

_MAX_ENTRIES = Option(
    name="max_entries",
    kind="int",
    low=1,
    optional=True,
    query=True,
    doc="Most entries kept, the least recently used evicted beyond it; None: no bound.",
)
OPTIONS = OptionSet([_MAX_ENTRIES], owner="memory")
"""The options of the memory driver."""

# (value, deadline on the store's clock; inf when none), or (value, deadline, cell, *memo)
# once attach() gave it a memo: the cell stays live until the entry the memo watches
# changes.
_Entry = tuple[str, float] | tuple[str, float, MemoCell, *tuple[object, ...]]
_ALWAYS = MemoCell()  # the cell of a memo that watches nothing: never changed
_NEVER = float("inf")
_heappush = heapq.heappush
_deadline = operator.itemgetter(1)  # an entry's deadline
_CLEAR_BATCH = 1000  # keys clear() deletes under one hold of the store's lock

Clock = Callable[[], float]
"""A clock: seconds, never going back (``time.monotonic`` unless a test gives another)."""


class _Wakeable(Protocol):
    def wake(self) -> None: ...


class MemoryDriver:
    """A thread-safe in-process store of strings with TTLs and optional LRU eviction."""

    stores_envelopes = True
    """Values are kept as the ``str`` they are, so the facade's envelopes come back intact."""

    def __init__(self, max_entries: int | None = None, *, clock: Clock = time.monotonic) -> None:
        """Create an empty store; ``max_entries`` (>= 1) bounds it with LRU eviction.

        ``clock`` returns the seconds TTLs and lock leases run on (monotonic);
        a test passes a clock it moves forward itself.
        """
        self.max_entries: int | None = _MAX_ENTRIES.check(max_entries)
        self._clock = clock
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._deadlines: list[tuple[float, str]] = []  # min-heap; stale rows skipped
        self._lock = threading.Lock()
        # Lease locks: key -> (token, deadline, the holder's thread: see _forked).
        self._locks: dict[str, tuple[str, float, int]] = {}
        self._lock_floor = 0
        self._watchers: dict[str, set[_Wakeable]] = {}  # lock key -> who waits for its release
        # Keys memos watch (see attach) -> their cell. Whatever writes or removes an entry
        # of _data calls _changed for it when it is watched: a memo must not outlive it.
        self._cells: dict[str, MemoCell] = {}
        forks.renew_after_fork(self)

    def __repr__(self) -> str:
        return f"MemoryDriver(max_entries={self.max_entries!r})"

    def _forked(self) -> None:
        """In a forked child: a new lock; the child keeps its copy of the entries.

        A writer in another thread may have stopped between two steps: an
        entry stored and its expiry not yet queued (read as expired all the
        same), one entry too many for ``max_entries`` (the next write evicts
        it); the expiry queue is replaced only once ordered, so it is whole. Nothing
        here walks the entries: a large store's pages stay shared with the parent.
        The parent's waiters for lease locks are not in the child: none is woken.
        Nor are the holders of leases taken by its other threads (a ``lock()``, a
        load under ``get_or_set(lock=True)``, a background refresh): in the
        child's own copy of the store no one would ever release them, and the
        child's callers would wait out each lease. They are dropped; a lease
        of the thread that forked, which goes on in the child, is kept.
        """
        self._lock = threading.Lock()
        self._watchers = {}
        forking = threading.get_ident()  # the child's one thread is the one that forked
        self._locks = {key: held for key, held in self._locks.items() if held[2] == forking}

    def __len__(self) -> int:
        """Return the number of entries not yet expired."""
        with self._lock:
            self._sweep(self._clock())
            return len(self._data)

    def keys(self) -> set[str]:
        """Return the stored keys, as ``<resource_type>:<key>``, of entries not yet expired."""
        with self._lock:
            self._sweep(self._clock())
            return set(self._data)

    def connect(self) -> None:
        """Start with an empty store."""
        with self._lock:
            self._drop_all()

    def disconnect(self) -> None:
        """Drop every entry: the memory is released."""
        with self._lock:
            self._drop_all()

    def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """Store a value; ``ttl_seconds=None`` clears any earlier TTL."""
        full_key = f"{resource_type}:{key}"
        with self._lock:
            self._put(full_key, value, ttl_seconds)

    def get(self, resource_type: str, key: str) -> str | None:
        """Return the value, or ``None`` when absent or expired."""
        full_key = f"{resource_type}:{key}"
        # A lookup is atomic on its own: the lock is taken only to change the store.
        entry = self._data.get(full_key)
        if entry is None:
            return None
        if entry[1] != _NEVER and entry[1] <= self._clock():
            with self._lock:
                if self._data.get(full_key) is entry:
                    self._data.pop(full_key, None)
                    if self._cells:
                        self._changed(full_key)
            return None
        if self.max_entries is not None:
            with self._lock:
                if full_key in self._data:
                    self._data.move_to_end(full_key)
        return entry[0]

    def get_across(self, addresses: Sequence[tuple[str, str]]) -> list[str | None]:
        """Return the value of each ``(resource_type, key)`` (``None``: a miss), in order."""
        data = self._data
        now = self._clock()  # an expired entry is a miss (get() or the sweep drops it)
        if len(addresses) == 2 and self.max_entries is None:
            # The usual call (an entry and one tag's counter, on every such hit), unrolled.
            (first_type, first_key), (second_type, second_key) = addresses
            first = data.get(f"{first_type}:{first_key}")
            second = data.get(f"{second_type}:{second_key}")
            return [
                None if first is None or first[1] <= now else first[0],
                None if second is None or second[1] <= now else second[0],
            ]
        found: list[str | None] = []
        for resource_type, key in addresses:
            entry = data.get(f"{resource_type}:{key}")
            found.append(None if entry is None or entry[1] <= now else entry[0])
        if self.max_entries is not None:
            with self._lock:
                for resource_type, key in addresses:
                    full_key = f"{resource_type}:{key}"
                    if full_key in data:
                        data.move_to_end(full_key)
        return found

    def delete(self, resource_type: str, key: str) -> bool:
        """Remove a value; return whether a live one was there (an absent key is fine)."""
        # Under the lock, though a pop is atomic on its own: a pop between the read and the
        # write of touch or incr was undone by the write, and one while clear or the
        # expiry sweep walked the entries broke their walk.
        full_key = f"{resource_type}:{key}"
        with self._lock:
            entry = self._data.pop(full_key, None)
            if self._cells:
                self._changed(full_key)
        return entry is not None and entry[1] > self._clock()

    def exists(self, resource_type: str, key: str) -> bool:
        """Return whether the key holds a live value."""
        entry = self._data.get(f"{resource_type}:{key}")
        return entry is not None and entry[1] > self._clock()

    def ttl_ms(self, resource_type: str, key: str) -> int:
        """Return the key's milliseconds left, ``-1`` without expiry, ``-2`` when absent."""
        entry = self._data.get(f"{resource_type}:{key}")
        if entry is None:
            return ABSENT
        if entry[1] == _NEVER:
            return NO_EXPIRY
        left = entry[1] - self._clock()
        return ABSENT if left <= 0 else int(left * 1000)

    def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """Return the values found; misses are absent."""
        prefix = f"{resource_type}:"
        found: dict[str, str] = {}
        now = self._clock()
        with self._lock:
            data = self._data
            for key in keys:
                entry = data.get(prefix + key)
                if entry is None:
                    continue
                if entry[1] <= now:
                    data.pop(prefix + key, None)
                    if self._cells:
                        self._changed(prefix + key)
                    continue
                if self.max_entries is not None:
                    data.move_to_end(prefix + key)
                found[key] = entry[0]
        return found

    def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        """Store every item as ``set`` would."""
        prefix = f"{resource_type}:"
        with self._lock:
            for key, value in items.items():
                self._put(prefix + key, value, ttl_seconds)

    def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """Remove every key; absent keys are fine."""
        prefix = f"{resource_type}:"
        with self._lock:
            for key in keys:
                self._data.pop(prefix + key, None)
                if self._cells:
                    self._changed(prefix + key)

    # -- atomic operations and clear ---------------------------------------------------

    def add(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> bool:
        """Store ``value`` only if the key is absent (or expired); return whether it stored."""
        full_key = f"{resource_type}:{key}"
        with self._lock:
            if self._live(full_key, self._clock()) is not None:
                return False
            self._put(full_key, value, ttl_seconds)
            return True

    def incr(self, resource_type: str, key: str, delta: int, ttl_seconds: int | None) -> int:
        """Add ``delta`` to the stored 64-bit integer (absent: 0); a TTL only when creating it."""
        full_key = f"{resource_type}:{key}"
        with self._lock:
            entry = self._live(full_key, self._clock())
            if entry is None:
                result = check_counter(delta)
                self._put(full_key, str(result), ttl_seconds)
                return result
            result = check_counter(parse_counter(entry[0]) + delta)
            self._data[full_key] = (str(result), entry[1])  # the TTL stays as it was
            if self._cells:
                self._changed(full_key)
            if self.max_entries is not None:
                self._data.move_to_end(full_key)
            return result

    def touch(self, resource_type: str, key: str, ttl_seconds: int | None) -> bool:
        """Set the key's TTL (``None``: none); return ``False`` if it is absent or expired."""
        full_key = f"{resource_type}:{key}"
        with self._lock:
            entry = self._live(full_key, self._clock())
            if entry is None:
                return False
            self._put(full_key, entry[0], ttl_seconds)
            return True

    def clear(self, resource_type: str, on_progress: Progress | None = None) -> int:
        """Delete every key of ``resource_type``; return how many were live.

        It deletes the keys there as it begins, a batch at a time, as the Redis
        driver's scan does: the store's lock is held to copy the names (at C speed)
        and for each batch, never while it picks them out of every other entry,
        so the other writers (and an async face's event loop) wait for its own
        keys only. A key of the type written meanwhile may stay or go.
        """
        prefix = f"{resource_type}:"
        now = self._clock()
        with self._lock:
            # The dict's own walk, not the OrderedDict's (which looks each key up again
            # to follow its links): about 20 times faster, for a copy of a million in
            # about 35 ms.
            names = list(dict.keys(self._data))
        doomed = [full for full in names if full.startswith(prefix)]
        live = 0
        for start in range(0, len(doomed), _CLEAR_BATCH):
            with self._lock:
                for full in doomed[start : start + _CLEAR_BATCH]:
                    entry = self._data.pop(full, None)  # gone already: another's delete
                    if entry is not None and entry[1] > now:
                        live += 1
                    if self._cells:
                        self._changed(full)
        if on_progress is not None:
            on_progress(live)
        return live

    def acquire_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """Take the key's lock for ``lease_ms`` unless another live holder has it."""
        lock_key = f"{resource_type}:{key}"
        now = self._clock()
        with self._lock:
            held = self._locks.get(lock_key)
            if held is not None and held[1] > now:
                return False
            self._locks[lock_key] = (token, now + lease_ms / 1000, threading.get_ident())
            if len(self._locks) > 64 and len(self._locks) > 2 * self._lock_floor:
                self._locks = {k: v for k, v in self._locks.items() if v[1] > now}
                self._lock_floor = len(self._locks)
            return True

    def release_lock(self, resource_type: str, key: str, token: str) -> None:
        """Release the key's lock if ``token`` holds it, and wake whoever watches it."""
        lock_key = f"{resource_type}:{key}"
        with self._lock:
            held = self._locks.get(lock_key)
            if held is None or held[0] != token:
                return
            del self._locks[lock_key]
            watchers = list(self._watchers.get(lock_key, ()))
        for watcher in watchers:
            watcher.wake()

    def watch_lock(self, resource_type: str, key: str) -> MemoryLockWatch:
        """Watch the key's lock: its release by the holder wakes :meth:`MemoryLockWatch.wait`."""
        watch = MemoryLockWatch(self, f"{resource_type}:{key}")
        self._watch(watch._lock_key, watch)
        return watch

    def _watch(self, lock_key: str, watcher: _Wakeable) -> None:
        with self._lock:
            self._watchers.setdefault(lock_key, set()).add(watcher)

    def _unwatch(self, lock_key: str, watcher: _Wakeable) -> None:
        with self._lock:
            watchers = self._watchers.get(lock_key)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[lock_key]

    def extend_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """Give the key's lock a lease of ``lease_ms`` from now if ``token`` still holds it."""
        lock_key = f"{resource_type}:{key}"
        now = self._clock()
        with self._lock:
            held = self._locks.get(lock_key)
            if held is None or held[0] != token or held[1] <= now:
                return False
            self._locks[lock_key] = (token, now + lease_ms / 1000, held[2])
            return True

    def in_process_table(self) -> InProcessTable | None:
        """Lend the entries, to be read in place (:class:`~pevensie_cache.driver.InProcessTable`).

        ``None`` with ``max_entries``: a read there moves the entry to the
        recent end, under the lock, so it goes through :meth:`get_across`.
        """
        if self.max_entries is not None:
            return None
        return InProcessTable(self._data, self._clock, self.attach)

    def attach(
        self,
        resource_type: str,
        key: str,
        value: str,
        memo: tuple[Any, ...],
        watched: tuple[str, str, str] | None,
    ) -> None:
        """Give the entry a memo while it holds ``value``, read back in :meth:`in_process_table`.

        ``memo`` is ``(answer, until, *rest)``, ``until`` on the store's clock.
        The entry becomes ``(value, deadline, cell, answer, until, *rest)``, its
        value and deadline unchanged and ``until`` no later than that deadline,
        so that a hit compares one instant: any later change to the entry (a
        write, delete, expiry, eviction, clear) replaces or drops that tuple,
        memo and all. ``watched``: ``(resource_type, key, value)`` of another
        entry the memo holds for (a tag's counter), which must hold that value
        now, without a deadline; ``cell`` is that entry's
        :class:`~pevensie_cache.driver.MemoCell`: live until any change to it
        (write, delete, eviction, clear). Without ``watched``, a cell that stays
        live. Nothing is attached if either entry holds another value.
        """
        full_key = f"{resource_type}:{key}"
        with self._lock:
            entry = self._data.get(full_key)
            if entry is None or entry[0] != value:
                return
            cell = _ALWAYS
            if watched is not None:
                watched_key = f"{watched[0]}:{watched[1]}"
                other = self._data.get(watched_key)
                if other is None or other[0] != watched[2] or other[1] != _NEVER:
                    return
                cell = self._cells.setdefault(watched_key, MemoCell())
            deadline = entry[1]
            until = min(memo[1], deadline)
            self._data[full_key] = (entry[0], deadline, cell, memo[0], until, *memo[2:])

    def async_view(self) -> AsyncMemoryDriver:
        """Return an async driver over this same store, usable from any event loop.

        The framework backends give an async face to a cache whose sync face is
        already in use; for an in-process store the two must share the data.
        Connecting or disconnecting the view leaves the store alone: the store
        belongs to this driver.
        """
        return AsyncMemoryDriver(store=self)

    # Called with the lock held.

    def _live(self, full_key: str, now: float) -> _Entry | None:
        """Return the key's entry unless absent or expired (an expired one is dropped)."""
        entry = self._data.get(full_key)
        if entry is not None and entry[1] <= now:
            del self._data[full_key]
            if self._cells:
                self._changed(full_key)
            return None
        return entry

    def _changed(self, full_key: str) -> None:
        """Note that the key's entry changed or went: a cell watching it is no longer live."""
        cell = self._cells.pop(full_key, None)
        if cell is not None:
            cell.live = False

    def _drop_all(self) -> None:
        self._data.clear()
        self._deadlines.clear()
        for cell in self._cells.values():
            cell.live = False
        self._cells.clear()

    def _put(self, full_key: str, value: str, ttl_seconds: int | None) -> None:
        data = self._data
        deadlines = self._deadlines
        if self._cells and full_key in self._cells:  # the usual write: a key no memo watches
            self._changed(full_key)
        if ttl_seconds is None:
            data[full_key] = (value, _NEVER)
            if deadlines:
                now = self._clock()
                if deadlines[0][0] <= now:
                    self._sweep(now)
        else:
            now = self._clock()
            deadline = now + ttl_seconds
            data[full_key] = (value, deadline)
            _heappush(deadlines, (deadline, full_key))
            if deadlines[0][0] <= now or len(deadlines) > 2 * len(data) + 64:
                self._sweep(now)
        if self.max_entries is not None:
            data.move_to_end(full_key)
            while len(data) > self.max_entries:
                evicted, _ = data.popitem(last=False)
                if self._cells:
                    self._changed(evicted)

    def _sweep(self, now: float) -> None:
        deadlines = self._deadlines
        data = self._data
        while deadlines and deadlines[0][0] <= now:
            deadline, full_key = heapq.heappop(deadlines)
            entry = data.get(full_key)
            if entry is not None and entry[1] == deadline:
                data.pop(full_key, None)
                if self._cells:
                    self._changed(full_key)
        if len(deadlines) > 2 * len(data) + 64:
            # Overwritten TTLs leave stale rows behind; rebuild from the live entries.
            # Ordered before it replaces the queue: a fork meanwhile copies either whole.
            # At C speed, under the lock: (deadline, key) of each entry with a deadline,
            # through the dict's own walk (two walks of one dict give the same order).
            rows = zip(map(_deadline, dict.values(data)), dict.keys(data), strict=True)
            timed = map(math.isfinite, map(_deadline, dict.values(data)))
            rebuilt = list(itertools.compress(rows, timed))
            heapq.heapify(rebuilt)
            self._deadlines = rebuilt


class MemoryLockWatch:
    """Wakes a thread waiting for a lease lock of a memory store when its holder releases it."""

    def __init__(self, store: MemoryDriver, lock_key: str) -> None:
        """Watch ``lock_key`` of ``store`` (:meth:`MemoryDriver.watch_lock` registers it)."""
        self._store = store
        self._lock_key = lock_key
        self._released = threading.Event()

    def wake(self) -> None:
        """Note a release (called by the store, from the releasing thread)."""
        self._released.set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a release; return whether one came."""
        released = self._released.wait(timeout)
        self._released.clear()
        return released

    def close(self) -> None:
        """Stop watching."""
        self._store._unwatch(self._lock_key, self)


class AsyncMemoryLockWatch:
    """Wakes a task waiting for a lease lock of a memory store when its holder releases it.

    The release may come from any thread (a sync face of the same store): the
    wake-up is handed to this watch's event loop.
    """

    def __init__(self, store: MemoryDriver, lock_key: str) -> None:
        """Watch ``lock_key`` of ``store`` from the running event loop."""
        self._store = store
        self._lock_key = lock_key
        self._loop = asyncio.get_running_loop()
        self._released = asyncio.Event()

    def wake(self) -> None:
        """Note a release (called by the store, from the releasing thread)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._released.set)

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a release; return whether one came."""
        try:
            await asyncio.wait_for(self._released.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._released.clear()
        return True

    def close(self) -> None:
        """Stop watching."""
        self._store._unwatch(self._lock_key, self)


class AsyncMemoryDriver:
    """The memory driver's async face: the same store, whose operations never block.

    Each operation runs inline on the event loop (no thread hop): none waits
    for anything but a lock held for a few dictionary operations.
    """

    def __init__(
        self,
        max_entries: int | None = None,
        *,
        store: MemoryDriver | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Create an empty store; ``max_entries`` (>= 1) bounds it with LRU eviction.

        ``clock`` is the store's (see :class:`MemoryDriver`). With ``store``,
        this is a view of that sync driver's store instead (see
        :meth:`MemoryDriver.async_view`): ``connect`` and ``disconnect`` leave it alone.
        """
        if store is not None and (max_entries is not None or clock is not None):
            raise ConfigError(
                "max_entries and clock belong to the store; a view of a store takes neither"
            )
        self._owns_store = store is None
        if store is None:
            store = MemoryDriver(max_entries=max_entries, clock=clock or time.monotonic)
        self.store = store

    stores_envelopes = True
    """The store keeps the facade's envelopes as they are (see :class:`MemoryDriver`)."""

    def __repr__(self) -> str:
        view = "" if self._owns_store else ", view"
        return f"AsyncMemoryDriver(max_entries={self.store.max_entries!r}{view})"

    async def connect(self) -> None:
        """Start with an empty store (a view: nothing to do)."""
        if self._owns_store:
            self.store.connect()

    async def disconnect(self) -> None:
        """Drop every entry (a view: nothing to do)."""
        if self._owns_store:
            self.store.disconnect()

    async def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """Store a value; ``ttl_seconds=None`` clears any earlier TTL."""
        self.store.set(resource_type, key, value, ttl_seconds)

    async def get(self, resource_type: str, key: str) -> str | None:
        """Return the value, or ``None`` when absent or expired."""
        return self.store.get(resource_type, key)

    async def delete(self, resource_type: str, key: str) -> bool:
        """Remove a value; return whether a live one was there."""
        return self.store.delete(resource_type, key)

    async def exists(self, resource_type: str, key: str) -> bool:
        """Return whether the key holds a live value."""
        return self.store.exists(resource_type, key)

    async def ttl_ms(self, resource_type: str, key: str) -> int:
        """Return the key's milliseconds left, ``-1`` without expiry, ``-2`` when absent."""
        return self.store.ttl_ms(resource_type, key)

    async def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """Return the values found; misses are absent."""
        return self.store.get_many(resource_type, keys)

    async def get_across(self, addresses: Sequence[tuple[str, str]]) -> list[str | None]:
        """Return the value of each ``(resource_type, key)`` (``None``: a miss), in order."""
        return self.store.get_across(addresses)

    async def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        """Store every item as ``set`` would."""
        self.store.set_many(resource_type, items, ttl_seconds)

    async def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """Remove every key; absent keys are fine."""
        self.store.delete_many(resource_type, keys)

    async def add(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> bool:
        """Store ``value`` only if the key is absent; return whether it stored."""
        return self.store.add(resource_type, key, value, ttl_seconds)

    async def incr(self, resource_type: str, key: str, delta: int, ttl_seconds: int | None) -> int:
        """Add ``delta`` to the stored integer and return the new value."""
        return self.store.incr(resource_type, key, delta, ttl_seconds)

    async def touch(self, resource_type: str, key: str, ttl_seconds: int | None) -> bool:
        """Set or clear the key's TTL; return ``False`` if it is absent."""
        return self.store.touch(resource_type, key, ttl_seconds)

    async def clear(self, resource_type: str, on_progress: Progress | None = None) -> int:
        """Delete every key of ``resource_type``; return how many."""
        return self.store.clear(resource_type, on_progress)

    async def acquire_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """Take the key's lock for ``lease_ms`` unless another live holder has it."""
        return self.store.acquire_lock(resource_type, key, token, lease_ms)

    async def release_lock(self, resource_type: str, key: str, token: str) -> None:
        """Release the key's lock if ``token`` holds it, and wake whoever watches it."""
        self.store.release_lock(resource_type, key, token)

    async def extend_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """Give the key's lock a new lease if ``token`` still holds it."""
        return self.store.extend_lock(resource_type, key, token, lease_ms)

    def in_process_table(self) -> InProcessTable | None:
        """Lend the store's entries (see :meth:`MemoryDriver.in_process_table`)."""
        return self.store.in_process_table()

    async def watch_lock(self, resource_type: str, key: str) -> AsyncMemoryLockWatch:
        """Watch the key's lock: its release wakes :meth:`AsyncMemoryLockWatch.wait`."""
        watch = AsyncMemoryLockWatch(self.store, f"{resource_type}:{key}")
        self.store._watch(watch._lock_key, watch)
        return watch


class MemoryInspector:
    """What the memory driver can tell an operator: TTLs, keys and counts; it has no server.

    An in-process store lives and dies with its process, so the command line
    only ever sees the store it just created; the inspector is most useful
    from within the application.
    """

    def __init__(self, store: MemoryDriver) -> None:
        """Inspect ``store``."""
        self._store = store

    def server_info(self) -> ServerInfo:
        """Name the store and count its live entries; memory and hit counts are not tracked."""
        return ServerInfo(server="memory (in-process)", keys=len(self._store))

    def ttl(self, resource_type: str, key: str) -> KeyTtl:
        """Return whether the key is live and the seconds it has left (``None``: no expiry)."""
        store = self._store
        with store._lock:
            now = store._clock()
            entry = store._live(f"{resource_type}:{key}", now)
        if entry is None:
            return KeyTtl(exists=False)
        if entry[1] == _NEVER:
            return KeyTtl(exists=True)
        return KeyTtl(exists=True, seconds=max(0.0, entry[1] - now))

    def keys(self, resource_type: str, page_size: int) -> Iterator[list[str]]:
        """Yield the live keys of ``resource_type`` (a snapshot), ``page_size`` at a time."""
        prefix = f"{resource_type}:"
        live = self._store.keys()
        found = sorted(full[len(prefix) :] for full in live if full.startswith(prefix))
        for start in range(0, len(found), page_size):
            yield found[start : start + page_size]

    def sample(self, limit: int) -> KeySample:
        """Count live entries per resource type among the first ``limit``."""
        names = self._store.keys()
        counts: dict[str, int] = {}
        sampled = foreign = 0
        for full in names:
            if sampled >= limit:
                break
            sampled += 1
            resource_type = resource_type_of(full)
            if resource_type is None:
                foreign += 1
            else:
                counts[resource_type] = counts.get(resource_type, 0) + 1
        return KeySample(
            sampled=sampled, total=len(names), by_resource_type=counts, foreign=foreign
        )

    def baseline(self) -> Baseline | None:
        """Return ``None``: the memory driver has no client library underneath."""
        return None


def inspector_for_driver(driver: object) -> MemoryInspector | None:
    """Return an inspector for a memory driver (either face), or ``None`` for any other driver.

    Only this module's own classes: a subclass belongs to whoever registered it.
    """
    if type(driver) is MemoryDriver:
        return MemoryInspector(driver)
    if type(driver) is AsyncMemoryDriver:
        return MemoryInspector(driver.store)
    return None


def new_cache_driver(max_entries: int | None = None) -> MemoryDriver:
    """Return a memory driver; ``max_entries`` bounds it with LRU eviction."""
    return MemoryDriver(max_entries=max_entries)


def new(**options: Any) -> MemoryDriver:
    """Build a memory driver from options by name, as ``cache.new(driver="memory", ...)`` does.

    Values may be text (``max_entries="1000"``); an unknown name is a
    :class:`ConfigError` that suggests the likely one.
    """
    return MemoryDriver(**OPTIONS.convert(options))


def from_url(url: str, **options: Any) -> MemoryDriver:
    """Build a memory driver from ``memory://`` (``memory://?max_entries=1000``).

    ``options`` replace what the URL says.
    """
    return MemoryDriver(**_url_fields(url, options))


def new_async(**options: Any) -> AsyncMemoryDriver:
    """Build the memory driver's async face from options by name (``cache.new_async``)."""
    return AsyncMemoryDriver(**OPTIONS.convert(options))


def from_url_async(url: str, **options: Any) -> AsyncMemoryDriver:
    """Build the memory driver's async face from a ``memory://`` URL."""
    return AsyncMemoryDriver(**_url_fields(url, options))


def _url_fields(url: str, options: dict[str, Any]) -> dict[str, Any]:
    if url_scheme(url) != "memory":
        raise ConfigError("the memory driver takes memory:// URLs")
    fields: dict[str, Any] = {}
    OPTIONS.convert_query(query_options(url), fields, shown=mask_url(url))
    fields.update(OPTIONS.convert(options))
    return fields


@hookimpl
def register_cache_drivers(register: Register) -> None:
    """Register the built-in ``memory`` driver."""
    register(
        "memory",
        new,
        url_factory=from_url,
        async_factory=new_async,
        async_url_factory=from_url_async,
        schemes=["memory"],
        description="In-process, thread-safe memory store with TTLs and optional LRU bound.",
        inspector=inspector_for_driver,
    )
