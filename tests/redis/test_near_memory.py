"""The near cache's byte bound, measured: what the store counts covers what it takes in memory.

Python's own allocator is watched with :mod:`tracemalloc`, which sees every
object the store keeps (keys, values, the ordered dict's table, the tuples).
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Iterator

import pytest
from near_support import FACES, near_url, open_face, settle

from pevensie_redis.near import ENTRY_OVERHEAD, NearStore
from pevensie_redis.testing import RedisServer

MiB = 1 << 20
EMPTY_STORE = 4096
"""What a store holding nothing may take (its lock, its empty tables): not an entry's."""


@pytest.fixture
def traced() -> Iterator[None]:
    gc.collect()
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def traced_now() -> int:
    return tracemalloc.get_traced_memory()[0]


@pytest.mark.parametrize("entries", [1, 11, 22, 64, 86, 683, 1367, 5000, 10_924, 21_845])
@pytest.mark.parametrize("length", [0, 10, 1000])
def test_the_bytes_counted_cover_what_the_store_takes(
    traced: None, entries: int, length: int
) -> None:
    """Keys, values (strings, and misses) and bookkeeping, at sizes around the table's growth."""
    before = traced_now()
    store = NearStore(entries, None)
    store.enable()
    for n in range(entries):
        key = b"resource:%08d" % n
        value = None if n % 5 == 0 else f"{n:08d}" + "v" * length  # every fifth a miss
        store.finish(store.begin([key]), [(key, value, -2 if value is None else 60_000)])
    del key, value
    taken = traced_now() - before
    counted = store.stats().bytes
    assert store.stats().entries == entries
    assert taken <= counted + EMPTY_STORE
    if entries >= 64:  # honest both ways: not counted at twice what it takes
        assert counted <= 2 * taken


VALUE_SIZE = 100_000
READS = 10_000
BATCH = 250
"""Keys written to the server at once (and deleted once the next batch has been read)."""


@pytest.mark.slow
@pytest.mark.parametrize("kind", FACES)
def test_memory_stays_within_the_byte_bound_while_10000_large_values_are_read(
    kind: str, pevensie_redis_server: RedisServer, traced: None
) -> None:
    """10,000 distinct 100 KB values read through a near cache of 8 MiB (issue 23).

    Without the byte bound the entry bound alone (10,000) would keep them all:
    about 1 GB. The process's traced memory (everything Python allocated since
    the first read: the store, the pipes' buffers, the test's own writer) is
    sampled every 50 reads and stays under 8 MiB plus 1 MiB.
    """
    pevensie_redis_server.ensure_running()
    url = near_url(pevensie_redis_server.url, "near_cache=true&near_cache_max_bytes=8MiB")
    face = open_face(kind, url)
    try:
        with pevensie_redis_server.client() as raw:
            filler = "x" * (VALUE_SIZE - 8)
            raw.set("memory:warm", filler)
            face.get("memory", "warm")  # buffers and caches of the first read: not the store's
            gc.collect()
            baseline = traced_now()
            highest = 0
            for first in range(0, READS, BATCH):
                batch = range(first, first + BATCH)
                writes = raw.pipeline(transaction=False)
                for n in batch:
                    writes.set(f"memory:{n}", f"{n:08d}{filler}")
                writes.execute()
                del writes
                settle(face, raw)  # the writes' invalidations are in: every read below is kept
                for n in batch:
                    assert face.get("memory", str(n)) == f"{n:08d}{filler}"
                    if n % 50 == 49:
                        highest = max(highest, traced_now() - baseline)
                        assert face.stats().bytes <= 8 * MiB
                if first:
                    raw.delete(*(f"memory:{n}" for n in range(first - BATCH, first)))
            stats = face.stats()
            raw.delete(*(f"memory:{n}" for n in range(READS - BATCH, READS)), "memory:warm")
        print(
            f"\n{kind}: highest traced {highest / MiB:.2f} MiB over the baseline; "
            f"held {stats.entries} entries, {stats.bytes / MiB:.2f} MiB; "
            f"{stats.evictions} evictions"
        )
        one = sys.getsizeof(b"memory:9999") + sys.getsizeof(filler + "12345678") + ENTRY_OVERHEAD
        capacity = 8 * MiB // one
        assert stats.entries <= capacity
        # Every value read was kept, evicted for the bound or dropped by a flush: on a
        # loaded machine a PING of the invalidation channel can go unanswered for a
        # heartbeat, and the store is then emptied (at most `capacity` entries each time)
        # and refilled once the channel listens again.
        assert stats.evictions >= READS - stats.entries - stats.flushes * capacity
        if not stats.flushes:
            assert stats.entries >= capacity - 1  # full, but maybe for one small marker
        assert highest <= 9 * MiB
    finally:
        face.close()
