"""Behaviour specific to the memory driver: LRU bound and expiry housekeeping."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from clock_support import ShiftedClock

from pevensie_cache import AsyncPevensieCache, CacheMiss, ConfigError, PevensieCache, cache, memory
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


# -- a delete from another thread, landing anywhere inside a call ------------------------


class _WatchedLock:
    """The store's lock, setting ``waited`` when a thread has to wait for it."""

    def __init__(self, waited: threading.Event) -> None:
        self._lock = threading.Lock()
        self.waited = waited

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self.waited.set()
            self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


def _delete_amid(
    driver: MemoryDriver, c: PevensieCache, operation: Callable[[], object], at: int
) -> tuple[object, bool | None]:
    """Run ``operation`` while another thread deletes ``k:x`` at its ``at``-th step.

    A step is a line of the store's code run while the store's lock is held (a
    tracer on this thread counts them): there this thread stops until the other
    thread's delete has ended or waits for the lock. That is the interleaving a
    thread preempted at that line meets, made certain instead of left to the
    scheduler. Returns the operation's result (or the exception it raised) and
    the delete's (``None``: the operation never reached step ``at``).
    """
    asked = threading.Event()
    settled = threading.Event()  # the delete has ended, or waits for the lock
    lock = _WatchedLock(settled)
    driver._lock = lock  # type: ignore[assignment]
    deleted: list[bool] = []
    steps = 0

    def delete() -> None:
        asked.wait()
        deleted.append(c.delete("k", "x"))
        settled.set()

    def step(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal steps
        if event == "line" and lock.locked() and not asked.is_set():
            if steps == at:
                asked.set()
                settled.wait()
            steps += 1
        return step

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        return step if frame.f_code.co_filename == memory.__file__ else None

    deleter = threading.Thread(target=delete)
    deleter.start()
    sys.settrace(trace)
    try:
        result: object = operation()
    except Exception as exc:
        result = exc
    finally:
        sys.settrace(None)
        asked.set()  # never reached: the delete runs after it
        deleter.join()
    return result, (deleted[0] if steps > at else None)


_STEPS = range(40)  # more than any call below runs under the store's lock


@pytest.mark.parametrize("at", _STEPS)
def test_a_delete_landing_inside_touch_is_never_undone(at: int) -> None:
    driver = MemoryDriver()
    with cache.new(driver=driver) as c:
        c.set("k", "x", "session", ttl_seconds=60)
        touched, deleted = _delete_amid(driver, c, lambda: c.touch("k", "x", 120), at)
        assert touched in (True, False)
        # Either order leaves nothing: the touch before the delete, or after it (False).
        assert c.get("k", "x", None) is None, (touched, deleted)


@pytest.mark.parametrize("at", _STEPS)
def test_a_delete_landing_inside_incr_is_never_undone(at: int) -> None:
    driver = MemoryDriver()
    with cache.new(driver=driver) as c:
        c.set("k", "x", "5")
        counted, deleted = _delete_amid(driver, c, lambda: c.incr("k", "x"), at)
        # incr then delete: nothing left; delete then incr: the counter starts again at 1.
        assert (counted, c.get("k", "x", None)) in [(6, None), (1, "1")], deleted


@pytest.mark.parametrize("at", _STEPS)
def test_a_delete_landing_inside_add_over_an_expired_entry_is_not_an_error(at: int) -> None:
    clock = ShiftedClock()
    driver = MemoryDriver(clock=clock)
    with cache.new(driver=driver) as c:
        c.set("k", "x", "old", ttl_seconds=1)
        clock.advance(2)  # expired, not yet swept
        added, deleted = _delete_amid(driver, c, lambda: c.add("k", "x", "new"), at)
        assert added is True, deleted
        assert c.get("k", "x", None) in ("new", None)


@pytest.mark.parametrize("at", _STEPS)
def test_a_delete_landing_inside_clear_is_not_an_error(at: int) -> None:
    driver = MemoryDriver()
    with cache.new(driver=driver) as c:
        c.set_many("k", {str(i): "v" for i in range(5)} | {"x": "v"})
        cleared, deleted = _delete_amid(driver, c, lambda: c.clear("k"), at)
        assert isinstance(cleared, int), cleared
        assert cleared + (1 if deleted else 0) == 6, deleted
        assert driver.keys() == set()


@pytest.mark.parametrize("at", _STEPS)
def test_a_delete_landing_inside_the_expiry_sweep_is_not_an_error(at: int) -> None:
    clock = ShiftedClock()
    driver = MemoryDriver(clock=clock)
    with cache.new(driver=driver) as c:
        c.set("k", "x", "v", ttl_seconds=100)
        for _ in range(67):  # overwritten TTLs, one short of rebuilding the expiry queue
            c.set("k", "other", "v", ttl_seconds=100)
        assert len(driver._deadlines) == 68
        written, _ = _delete_amid(driver, c, lambda: c.set("k", "other", "v", ttl_seconds=100), at)
        assert written is None, written
        assert driver.keys() == {"k:other"}
        assert len(driver._deadlines) <= 2  # rebuilt from the live entries


def test_clear_holds_the_store_lock_for_its_own_entries_not_for_every_entry() -> None:
    # Every other write waits while the store's lock is held (and, on the async face, the
    # event loop): clearing a handful of keys among many must not walk them all under it.
    driver = MemoryDriver()
    with cache.new(driver=driver) as c:
        for n in range(20):
            c.set_many(f"other{n}", {str(i): "v" for i in range(100)})
        c.set_many("doomed", {"a": "1", "b": "2"})
        steps = 0

        def count(frame: FrameType, event: str, arg: object) -> Any:
            nonlocal steps
            if event == "line" and driver._lock.locked():
                steps += 1
            return count

        sys.settrace(
            lambda frame, *_: count if frame.f_code.co_filename == memory.__file__ else None
        )
        try:
            assert c.clear("doomed") == 2
        finally:
            sys.settrace(None)
        assert len(driver) == 2000
        assert steps < 50, steps  # lines run under the lock: not one per entry of the store


def test_rebuilding_the_expiry_queue_runs_no_line_per_entry_under_the_store_lock() -> None:
    # The rebuild runs under the store's lock (every other writer waits): at C speed,
    # not a Python step per entry, however large the store.
    driver = MemoryDriver()
    with cache.new(driver=driver) as c:
        c.set_many("k", {str(i): "v" for i in range(1000)}, ttl_seconds=100)
        c.set_many("plain", {str(i): "v" for i in range(500)})
        rows = len(driver._deadlines)
        while len(driver._deadlines) <= 2 * len(driver) + 63:  # one short of a rebuild
            c.set("k", "0", "v", ttl_seconds=100)
        steps = 0

        def count(frame: FrameType, event: str, arg: object) -> Any:
            nonlocal steps
            if event == "line" and driver._lock.locked():
                steps += 1
            return count

        sys.settrace(
            lambda frame, *_: count if frame.f_code.co_filename == memory.__file__ else None
        )
        try:
            c.set("k", "0", "v", ttl_seconds=100)
        finally:
            sys.settrace(None)
        assert len(driver._deadlines) == rows  # rebuilt: one row per entry with a TTL
        assert steps < 50, steps
