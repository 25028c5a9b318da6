"""Behaviour specific to the memory driver: LRU bound and expiry housekeeping."""

from __future__ import annotations

import time

import pytest
from clock_support import ShiftedClock

from pevensie_cache import AsyncPevensieCache, CacheMiss, ConfigError, cache
from pevensie_cache.memory import AsyncMemoryDriver, MemoryDriver


def test_max_entries_evicts_the_least_recently_used() -> None:
    with cache.new(driver="memory", max_entries=2) as c:
        c.set("k", "a", "1")
        c.set("k", "b", "2")
        assert c.get("k", "a") == "1"  # a is now more recent than b
        c.set("k", "c", "3")
        assert c.get_many("k", ["a", "b", "c"]) == {"a": "1", "c": "3"}


def test_expired_entries_are_swept_without_being_read() -> None:
    clock = ShiftedClock()
    driver = MemoryDriver(clock=clock)
    with cache.new(driver=driver) as c:
        c.set_many("k", {str(i): "v" for i in range(100)}, ttl_seconds=1)
        c.set("k", "keep", "v")
        assert len(driver) == 101
        clock.advance(1.1)
        c.set("k", "other", "v")  # any write sweeps what has expired
        assert driver.keys() == {"k:keep", "k:other"}
        assert len(driver._deadlines) == 0


def test_overwritten_ttls_do_not_grow_the_deadline_heap_without_bound() -> None:
    driver = MemoryDriver()
    with cache.new(driver=driver) as c:
        for _ in range(5000):
            c.set("k", "same", "v", ttl_seconds=100)
        assert len(driver._deadlines) < 200


def test_disconnect_releases_the_entries() -> None:
    driver = MemoryDriver()
    c = cache.new(driver=driver).connect()
    c.set("k", "a", "1")
    c.disconnect()
    assert len(driver) == 0
    c.connect()
    with pytest.raises(CacheMiss):
        c.get("k", "a")


def test_expiry_uses_the_monotonic_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    with cache.new() as c:
        c.set("k", "a", "1", ttl_seconds=60)
        monkeypatch.setattr(time, "time", lambda: 4_000_000_000.0)  # wall clock jumps
        assert c.get("k", "a") == "1"


def test_ttls_and_lock_leases_run_on_the_clock_it_is_given() -> None:
    clock = ShiftedClock()
    with cache.new(driver=MemoryDriver(clock=clock)) as c:
        c.set("k", "a", "1", ttl_seconds=2)
        assert c.acquire_lock("job", "1", "first", 2)
        assert cache.inspector(c).ttl("k", "a").seconds == pytest.approx(2, abs=0.5)
        clock.advance(1.5)
        assert c.get("k", "a") == "1"
        assert cache.inspector(c).ttl("k", "a").seconds == pytest.approx(0.5, abs=0.4)
        assert not c.acquire_lock("job", "1", "second", 2)
        clock.advance(1.0)
        assert c.get("k", "a", None) is None
        assert c.acquire_lock("job", "1", "second", 2)


async def test_the_async_face_runs_on_its_clock_and_a_view_takes_none() -> None:
    clock = ShiftedClock()
    async with cache.new_async(driver=AsyncMemoryDriver(clock=clock)) as c:
        await c.set("k", "a", "1", ttl_seconds=1)
        clock.advance(1.1)
        assert await c.get("k", "a", None) is None
    with pytest.raises(ConfigError, match="clock belong to the store"):
        AsyncMemoryDriver(store=MemoryDriver(), clock=clock)


async def test_an_async_view_shares_the_store_and_leaves_it_alone() -> None:
    sync_face = cache.new(MemoryDriver(max_entries=10)).connect()
    view = sync_face.driver.async_view()  # type: ignore[attr-defined]
    sync_face.set("user", "1", "Ada")
    async with AsyncPevensieCache(view) as async_face:
        assert await async_face.get("user", "1") == "Ada"
        await async_face.set("user", "2", "Bob")
        assert await async_face.acquire_lock("user", "1", "t", 10)
    assert sync_face.get("user", "2") == "Bob"  # disconnecting the view kept the store
    assert sync_face.acquire_lock("user", "1", "u", 10) is False  # the same locks too
    sync_face.disconnect()
    with pytest.raises(ConfigError):
        AsyncMemoryDriver(max_entries=5, store=MemoryDriver())


@pytest.mark.parametrize("max_entries", [None, 10])
def test_get_across_reads_any_resource_types_in_order_and_misses_what_expired(
    max_entries: int | None,
) -> None:
    clock = ShiftedClock()
    driver = MemoryDriver(max_entries=max_entries, clock=clock)
    with cache.new(driver=driver) as c:
        c.set("page", "home", "h", ttl_seconds=60)
        driver.set("", "tag:site", "7", None)  # a tag's counter: no API call names ""
        c.set("page", "short", "s", ttl_seconds=1)
        pairs = [("page", "home"), ("", "tag:site")]  # the usual read: an entry, a counter
        assert driver.get_across(pairs) == ["h", "7"]
        assert driver.get_across([("", "tag:site"), ("page", "absent")]) == ["7", None]
        three = [("page", "short"), ("page", "home"), ("", "tag:site")]
        assert driver.get_across(three) == ["s", "h", "7"]
        clock.advance(2)
        assert driver.get_across([("page", "short"), ("", "tag:site")]) == [None, "7"]
        assert driver.get_across(three) == [None, "h", "7"]


def test_get_across_counts_as_a_use_for_the_lru_bound() -> None:
    driver = MemoryDriver(max_entries=2)
    with cache.new(driver=driver) as c:
        c.set("k", "a", "1")
        c.set("k", "b", "2")
        assert driver.get_across([("k", "a"), ("k", "absent")]) == ["1", None]
        c.set("k", "c", "3")  # b is the least recently used now
        assert c.get_many("k", ["a", "b", "c"]) == {"a": "1", "c": "3"}
