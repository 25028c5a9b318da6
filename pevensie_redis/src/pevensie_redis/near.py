"""The near cache's local store: recent reads kept in this process, dropped when the server says so.

No I/O happens here; both faces of the driver use one :class:`NearStore`
(its lock makes it safe for threads, and costs little on the event loop).

An entry is a value or a remembered miss, with the deadline of the key's
server TTL (``PTTL`` read with the value, counted from before the read was
sent), so an entry never outlives its key. The store is bounded twice, least
recently used first out: by ``size`` entries and by ``max_bytes`` of memory.
An entry's bytes are counted as Python holds them: ``sys.getsizeof`` of its
key and of its value, plus :data:`ENTRY_OVERHEAD` for the store's own
bookkeeping of one entry (measured: ``tests/redis/test_near_memory.py``).
A value bigger than the whole bound is never kept.

Coherence rests on three rules:

- **fills**: a read that misses takes a ticket (:meth:`NearStore.begin`) before
  it sends ``GET``; its result is kept (:meth:`NearStore.finish`) only if no
  invalidation of that key, and no flush, arrived after the ticket was taken.
  An invalidation racing the read (the key changed while the reply was on its
  way) therefore never leaves the old value cached, whatever order the two
  sockets deliver in;
- **invalidations**: the server's tracking messages drop their keys
  (:meth:`NearStore.invalidate`; ``None`` means "everything", as after
  ``FLUSHDB``); this process's own writes drop their keys once they are done
  (:meth:`NearStore.forget`), so a read after a write goes to the server
  (read-your-writes);
- **flushes**: when the invalidation channel breaks, :meth:`NearStore.flush`
  empties the store and the store is *disabled* until :meth:`NearStore.enable`
  (tracking is back): reads go to the server, and no read that began before the
  break can fill it. A forked child's stores start flushed and disabled, as
  nothing listens for it until its own listener runs.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["ENTRY_OVERHEAD", "MISS", "NearStats", "NearStore", "Ticket", "heartbeat"]

MISS: Any = object()
"""A remembered miss: the key was absent on the server when read."""

_NEVER = float("inf")

ENTRY_OVERHEAD = 256
"""Bytes counted for each entry besides its key and value: the store's bookkeeping.

An entry is a slot of an ordered dict (a hash table and an array of nodes
that grow in powers of two, so a slot costs up to three times its share
right after the table grew), a linked-list node for the recency order, a
tuple ``(value, deadline, bytes)``, its deadline (a float) and its byte count
(an int). Measured with :mod:`tracemalloc` on CPython 3.11, from 191 bytes an
entry (a table about to grow) to 255 (one just grown), for stores of 64
entries or more; smaller ones take less than 4 KiB in all.
``tests/redis/test_near_memory.py`` checks that the count covers what is
measured.
"""

Ticket = tuple[int, float]
"""What :meth:`NearStore.begin` returns and :meth:`NearStore.finish` checks.

The store's sequence number and the clock when the read began.
"""


@dataclass(frozen=True)
class NearStats:
    """What the near cache did since the driver connected."""

    hits: int
    """Reads answered from the local store (remembered misses included)."""
    misses: int
    """Reads that went to the server (the store had nothing, or was disabled)."""
    invalidations: int
    """Keys the server (or this process's writes) said changed."""
    flushes: int
    """Times the whole store was emptied: the invalidation channel broke, or ``FLUSHDB``."""
    entries: int
    """Entries held now."""
    enabled: bool
    """Whether the store answers reads now (tracking is established)."""
    evictions: int = 0
    """Entries dropped to stay within ``near_cache_size`` or ``near_cache_max_bytes``."""
    bytes: int = 0
    """Memory the entries held now take, as counted against ``near_cache_max_bytes``."""


class NearStore:
    """A bounded LRU of values read from the server, kept coherent by invalidations."""

    def __init__(
        self, size: int, max_bytes: int | None = None, clock: Any = time.monotonic
    ) -> None:
        """Keep at most ``size`` entries taking at most ``max_bytes`` (``None``: no byte bound).

        ``clock`` returns seconds (monotonic).
        """
        self._size = size
        self._max_bytes = sys.maxsize if max_bytes is None else max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (value or MISS, deadline, the bytes counted for the entry)
        self._entries: OrderedDict[bytes, tuple[Any, float, int]] = OrderedDict()
        self._bytes = 0
        self._sequence = 0  # bumped by every invalidation and flush
        self._flushed_at = 0  # the sequence of the last flush
        self._changed: dict[
            bytes, int
        ] = {}  # key -> sequence of its last invalidation, while filling
        self._filling: dict[bytes, int] = {}  # key -> fills in flight
        self._enabled = False
        self._hits = self._misses = self._invalidations = self._flushes = self._evictions = 0
        _STORES.add(self)

    # -- reads -----------------------------------------------------------------------

    def lookup(self, key: bytes) -> Any:
        """Return the value (or :data:`MISS`) held for ``key``, or ``None`` to ask the server."""
        with self._lock:
            entry = self._entries.get(key) if self._enabled else None
            if entry is not None:
                if entry[1] > self._clock():
                    self._entries.move_to_end(key)
                    self._hits += 1
                    return entry[0]
                del self._entries[key]
                self._bytes -= entry[2]
            self._misses += 1
            return None

    def begin(self, keys: Iterable[bytes]) -> Ticket | None:
        """Take a ticket before reading ``keys`` from the server; ``None`` when disabled."""
        started = self._clock()
        with self._lock:
            if not self._enabled:
                return None
            for key in keys:
                self._filling[key] = self._filling.get(key, 0) + 1
            return self._sequence, started

    def finish(self, ticket: Ticket | None, fills: Iterable[tuple[bytes, Any, int]]) -> None:
        """Keep what a read brought back, unless invalidated since ``ticket`` was taken.

        ``fills`` are ``(key, value or None for a miss, pttl)`` with the key's
        ``PTTL`` in milliseconds (``-1``: no TTL; ``-2``: absent), read after
        the value. Call it once per :meth:`begin`, with every key begun (when
        the read failed, call :meth:`abandon` instead).

        The entry's deadline counts the TTL from when the ticket was taken: the
        server read the TTL later, so the key expires no sooner than that. A
        value whose key was gone when its TTL was read (it expired, or was
        deleted, in between), or a miss whose key had appeared, is not kept.
        """
        if ticket is None:
            return
        sequence, started = ticket
        with self._lock:
            for key, value, pttl in fills:
                fresh = (
                    self._enabled
                    and self._flushed_at <= sequence
                    and self._changed.get(key, -1) <= sequence
                )
                self._release(key)
                if not fresh or pttl == 0 or (pttl == -2) != (value is None):
                    continue
                deadline = _NEVER if pttl < 0 else started + pttl / 1000
                cost = sys.getsizeof(key) + ENTRY_OVERHEAD
                if value is None:
                    value = MISS
                else:
                    cost += sys.getsizeof(value)
                self._drop(key)
                if cost > self._max_bytes:
                    continue  # bigger than the whole bound: never kept
                self._entries[key] = (value, deadline, cost)
                self._bytes += cost
            entries = self._entries
            while len(entries) > self._size or self._bytes > self._max_bytes:
                self._bytes -= entries.popitem(last=False)[1][2]
                self._evictions += 1

    def abandon(self, ticket: Ticket | None, keys: Iterable[bytes]) -> None:
        """Give back the ticket of a read that failed: nothing is kept."""
        if ticket is None:
            return
        with self._lock:
            for key in keys:
                self._release(key)

    # -- invalidations -----------------------------------------------------------------

    def invalidate(self, keys: Iterable[bytes] | None) -> None:
        """Drop ``keys`` (``None``: everything) and spoil the reads of them in flight."""
        with self._lock:
            self._sequence += 1
            if keys is None:
                self._flush_locked()
                return
            for key in keys:
                self._invalidations += 1
                self._drop(key)
                if key in self._filling:
                    self._changed[key] = self._sequence

    def forget(self, keys: Iterable[bytes]) -> None:
        """Drop ``keys`` this process wrote (read-your-writes; not counted as received)."""
        with self._lock:
            self._sequence += 1
            for key in keys:
                self._drop(key)
                if key in self._filling:
                    self._changed[key] = self._sequence

    def forget_prefix(self, prefix: bytes) -> None:
        """Drop every key starting with ``prefix`` (this process cleared a resource type)."""
        with self._lock:
            self._sequence += 1
            for key in [key for key in self._entries if key.startswith(prefix)]:
                self._drop(key)
            for key in self._filling:
                if key.startswith(prefix):
                    self._changed[key] = self._sequence

    def flush(self, *, disable: bool = False) -> None:
        """Empty the store, spoiling every read in flight; ``disable``: stop answering reads too."""
        with self._lock:
            self._sequence += 1
            self._flush_locked()
            if disable:
                self._enabled = False

    def enable(self) -> None:
        """Answer reads again (tracking is established); the store starts empty."""
        with self._lock:
            self._sequence += 1
            self._entries.clear()  # empty already, unless enabled twice: not counted as a flush
            self._bytes = 0
            self._flushed_at = self._sequence
            self._enabled = True

    def stats(self) -> NearStats:
        """Return the counters and the current size."""
        with self._lock:
            return NearStats(
                hits=self._hits,
                misses=self._misses,
                invalidations=self._invalidations,
                flushes=self._flushes,
                entries=len(self._entries),
                enabled=self._enabled,
                evictions=self._evictions,
                bytes=self._bytes,
            )

    def _forked(self) -> None:
        """In a child process: a flush, and disabled, until a listener of its own enables it.

        Nothing listens in the child (the parent's listener thread was not
        forked), and a lock held by another thread at the fork stays held: the
        lock is new too.
        """
        self._lock = threading.Lock()
        self._sequence += 1
        self._flush_locked()
        self._filling.clear()
        self._changed.clear()
        self._enabled = False

    # Called with the lock held.

    def _flush_locked(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._flushed_at = self._sequence
        self._flushes += 1

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[2]

    def _release(self, key: bytes) -> None:
        left = self._filling.get(key, 0) - 1
        if left > 0:
            self._filling[key] = left
        else:
            self._filling.pop(key, None)
            self._changed.pop(key, None)


_STORES: weakref.WeakSet[NearStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        store._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def heartbeat(timeout: float) -> float:
    """Return the near cache listener's heartbeat: a silent channel is checked this often.

    After one heartbeat of silence the listener sends ``PING``; without an
    answer one heartbeat later it gives the channel up (and the store is
    emptied), so a silent break is noticed within about two heartbeats.
    """
    return min(1.0, timeout)
