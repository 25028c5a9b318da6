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

Several servers (the primaries of a Redis Cluster) can feed one store, each
with its own invalidation channel: a **node** is named by the caller (``""``,
the default, for a single server). Each entry remembers the node it was read
from; a ticket is taken for a node, and a fill is kept only if that node's
channel was listening when the ticket was taken and has not broken since (and
the read ran on that node). A node's channel breaking, or its ``FLUSHDB``,
drops that node's entries only; an invalidation of a key drops it whichever
node said so.

A remembered miss needs more: while a Cluster slot migrates, a key absent from
its old node is written on the new one (``ASK``), which only the new node's
channel tells. So the caller names every node that can take writes
(:meth:`NearStore.expect`), and misses are kept only while all of them listen:
when one stops (its channel broke, or a node appeared that is not listened to
yet), every remembered miss is dropped, the reads in flight are spoiled, and no
miss read meanwhile is kept. Values need no such rule: a key present on a node
is written there until it is migrated, which deletes it there (an invalidation
from that node).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pevensie_cache import forks

__all__ = ["ENTRY_OVERHEAD", "MISS", "SOLE", "NearStats", "NearStore", "Ticket", "heartbeat"]

MISS: Any = object()
"""A remembered miss: the key was absent on the server when read."""

_NEVER = float("inf")

ENTRY_OVERHEAD = 272
"""Bytes counted for each entry besides its key and value: the store's bookkeeping.

An entry is a slot of an ordered dict (a hash table and an array of nodes
that grow in powers of two, so a slot costs up to three times its share
right after the table grew), a linked-list node for the recency order, a
tuple ``(value, deadline, bytes, node)``, its deadline (a float) and its byte
count (an int). Measured with :mod:`tracemalloc` on CPython 3.11, from 199 bytes
an entry (a table about to grow) to 264 (one just grown), for stores of 64
entries or more; smaller ones take less than 4 KiB in all.
``tests/redis/test_near_memory.py`` checks that the count covers what is
measured.
"""

Ticket = tuple[int, float, str, int, int]
"""What :meth:`NearStore.begin` returns and :meth:`NearStore.finish` checks.

The store's sequence number, the clock when the read began, the node read
from, the epoch of that node's channel (which changes when it breaks) and the
epoch of remembered misses (``-1``: misses are not kept now; see
:meth:`NearStore.expect`).
"""

SOLE = ""
"""The node of a store fed by one server (single server, Sentinel)."""


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
    """Whether the store answers reads now (tracking is established, on a node at least)."""
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
        # key -> (value or MISS, deadline, the bytes counted for it, the node it came from)
        self._entries: OrderedDict[bytes, tuple[Any, float, int, str]] = OrderedDict()
        self._bytes = 0
        self._sequence = 0  # bumped by every invalidation and flush
        self._changed: dict[
            bytes, int
        ] = {}  # key -> sequence of its last invalidation, while filling
        self._filling: dict[bytes, int] = {}  # key -> fills in flight
        self._listening: dict[str, int] = {}  # node -> its channel's epoch, while it listens
        self._epochs = 0  # the last epoch given to a node
        self._sources: set[str] = set()  # every node an entry was ever read from
        self._enabled = False  # whether any node listens
        self._expected: frozenset[str] | None = None  # every node that can take writes
        self._misses_kept = True  # every expected node listens (or none is expected)
        self._miss_epoch = 0  # bumped each time misses stop being kept
        self._hits = self._misses = self._invalidations = self._flushes = self._evictions = 0
        forks.renew_after_fork(self)

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

    def begin(self, keys: Iterable[bytes], node: str = SOLE) -> Ticket | None:
        """Take a ticket before reading ``keys`` from ``node``; ``None`` when not listened to."""
        started = self._clock()
        with self._lock:
            epoch = self._listening.get(node)
            if epoch is None:
                return None
            for key in keys:
                self._filling[key] = self._filling.get(key, 0) + 1
            misses = self._miss_epoch if self._misses_kept else -1
            return self._sequence, started, node, epoch, misses

    def finish(
        self,
        ticket: Ticket | None,
        fills: Iterable[tuple[bytes, Any, int]],
        node: str | None = None,
    ) -> None:
        """Keep what a read brought back, unless invalidated since ``ticket`` was taken.

        ``fills`` are ``(key, value or None for a miss, pttl)`` with the key's
        ``PTTL`` in milliseconds (``-1``: no TTL; ``-2``: absent), read after
        the value. Call it once per :meth:`begin`, with every key begun (when
        the read failed, call :meth:`abandon` instead). ``node``: the node
        the read ran on, when it may differ from the ticket's (a redirect);
        nothing is kept unless they are the same.

        The entry's deadline counts the TTL from when the ticket was taken (the
        server read the TTL later, so the key expires no sooner than that), less
        one millisecond: the server counts whole milliseconds, so the TTL it
        reports can exceed the time really left by up to one. A
        value whose key was gone when its TTL was read (it expired, or was
        deleted, in between), or a miss whose key had appeared, is not kept.
        """
        if ticket is None:
            return
        sequence, started, source, epoch, misses = ticket
        with self._lock:
            listened = self._listening.get(source) == epoch and node in (None, source)
            if listened:
                self._sources.add(source)
            misses_kept = self._misses_kept and misses == self._miss_epoch
            for key, value, pttl in fills:
                fresh = listened and self._changed.get(key, -1) <= sequence
                self._release(key)
                if not fresh or pttl == 0 or (pttl == -2) != (value is None):
                    continue
                if value is None and not misses_kept:
                    continue
                deadline = _NEVER if pttl < 0 else started + (pttl - 1) / 1000
                cost = sys.getsizeof(key) + ENTRY_OVERHEAD
                if value is None:
                    value = MISS
                else:
                    cost += sys.getsizeof(value)
                self._drop(key)
                if cost > self._max_bytes:
                    continue  # bigger than the whole bound: never kept
                self._entries[key] = (value, deadline, cost, source)
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

    def invalidate(self, keys: Iterable[bytes] | None, node: str = SOLE) -> None:
        """Drop ``keys`` (``None``: everything ``node`` gave) and spoil the reads in flight."""
        with self._lock:
            self._sequence += 1
            if keys is None:
                self._flush_locked(node)
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

    def flush(self, *, disable: bool = False, node: str | None = None) -> None:
        """Empty the store, spoiling every read in flight; ``disable``: stop answering reads too.

        ``node``: only what that node gave, and its reads in flight (``disable``:
        its channel broke, so nothing read from it is kept until it listens again).
        """
        with self._lock:
            self._sequence += 1
            self._flush_locked(node)
            if disable:
                if node is None:
                    self._listening.clear()
                else:
                    self._listening.pop(node, None)
                self._enabled = bool(self._listening)
                self._check_misses()

    def enable(self, node: str = SOLE) -> None:
        """Keep reads from ``node`` again (its tracking is established); nothing it gave is held."""
        with self._lock:
            self._sequence += 1
            self._drop_node(node)  # nothing, unless enabled twice: not counted as a flush
            self._epochs += 1
            self._listening[node] = self._epochs
            self._enabled = True
            self._check_misses()

    def expect(self, nodes: Iterable[str] | None) -> None:
        """Name every node that can take writes (``None``: no such rule, as on one server).

        Remembered misses are kept only while each of them listens: a key
        absent from the node a miss was read from may be written on another
        one (a Cluster slot migrating to it), which only that node's channel
        tells. When one of them does not listen, misses are dropped and not
        kept until it does.
        """
        with self._lock:
            self._expected = None if nodes is None else frozenset(nodes)
            self._check_misses()

    def listening(self) -> list[str]:
        """Return the nodes whose channels listen now (reads from them are kept)."""
        with self._lock:
            return list(self._listening)

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
        self._flush_locked(None)
        self._filling.clear()
        self._changed.clear()
        self._listening.clear()
        self._enabled = False
        self._check_misses()

    # Called with the lock held.

    def _check_misses(self) -> None:
        """Keep misses only while every expected node listens; when that ends, drop them.

        The misses of the reads in flight are not kept either (their tickets
        carry the miss epoch, which moves on): one may be a key that a node no
        longer listened to has just written.
        """
        kept = self._expected is None or self._expected <= self._listening.keys()
        if kept == self._misses_kept:
            return
        self._misses_kept = kept
        if kept:
            return
        self._miss_epoch += 1
        for key in [key for key, entry in self._entries.items() if entry[0] is MISS]:
            self._drop(key)

    def _flush_locked(self, node: str | None) -> None:
        """Drop the entries ``node`` gave (``None``: all) and spoil its reads in flight."""
        self._flushes += 1
        if node is None:
            self._entries.clear()
            self._bytes = 0
            self._sources.clear()
            for listened in self._listening:
                self._epochs += 1
                self._listening[listened] = self._epochs
            return
        self._drop_node(node)
        if node in self._listening:
            self._epochs += 1
            self._listening[node] = self._epochs

    def _drop_node(self, node: str) -> None:
        if self._sources <= {node}:  # one server, or nothing from another: all of it
            self._entries.clear()
            self._bytes = 0
        else:
            for key in [key for key, entry in self._entries.items() if entry[3] == node]:
                self._drop(key)
        self._sources.discard(node)

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


def heartbeat(timeout: float) -> float:
    """Return the near cache listener's heartbeat: a silent channel is checked this often.

    After one heartbeat of silence the listener sends ``PING``; without an
    answer one heartbeat later it gives the channel up (and the store is
    emptied), so a silent break is noticed within about two heartbeats.
    """
    return min(1.0, timeout)
