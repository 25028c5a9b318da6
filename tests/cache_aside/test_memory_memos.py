"""Memory driver: a hit answered from an entry's memo sees every change a full read would.

On the memory driver, a ``get_or_set`` hit with freshness options or a tag is
answered from a memo attached to the entry (its envelope opened) and a cell
that says whether the tag's counter is unchanged, without reading the counter
(see ``AsyncFreshness.hit``). Every way the counter can change or go must make
the next hit a miss, whoever makes it: another cache object or face on the same
store, or the driver itself (a delete, a clear of the counters, a write); and a
memo must never outlive its entry's deadline on the store's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from clock_support import ShiftedClock
from fresh_support import Loads

from pevensie_cache import AsyncPevensieCache, PevensieCache, cache
from pevensie_cache.memory import MemoryDriver

OPTIONS: dict[str, Any] = {"stale_seconds": 60, "tags": ["user:42"]}


def memo_hits(c: PevensieCache, driver: MemoryDriver, load: Loads) -> None:
    """Load ``page:p`` with a tag, then hit it, the memo on its entry answering."""
    assert c.get_or_set("page", "p", load, 300, **OPTIONS) == "v1"
    assert len(driver._data["page:p"]) > 2  # (value, deadline, cell, *memo)
    assert c.get_or_set("page", "p", load, 300, **OPTIONS) == "v1"
    assert load.calls == 1


def test_a_tag_invalidated_through_another_cache_on_the_store_is_seen_by_the_next_hit() -> None:
    driver = MemoryDriver()
    with cache.new(driver=driver) as reader, cache.new(driver=driver) as other:
        load = Loads()
        memo_hits(reader, driver, load)
        other.invalidate_tags("user:42")
        assert reader.get_or_set("page", "p", load, 300, **OPTIONS) == "v2"
        assert reader.get_or_set("page", "p", load, 300, **OPTIONS) == "v2"
        assert load.calls == 2


async def test_a_tag_invalidated_through_the_async_face_of_the_store_is_seen_by_a_sync_hit() -> (
    None
):
    driver = MemoryDriver()
    view = AsyncPevensieCache(driver.async_view())
    with cache.new(driver=driver) as reader:
        await view.connect()
        try:
            load = Loads()
            memo_hits(reader, driver, load)
            await view.invalidate_tags("user:42")
            assert reader.get_or_set("page", "p", load, 300, **OPTIONS) == "v2"
            # And the other way: an async hit from its memo, a sync invalidation.
            assert await view.get_or_set("page", "p", load, 300, **OPTIONS) == "v2"
            reader.invalidate_tags("user:42")
            assert await view.get_or_set("page", "p", load, 300, **OPTIONS) == "v3"
        finally:
            await view.disconnect()


COUNTER_CHANGES: dict[str, Callable[[MemoryDriver], object]] = {
    "incremented": lambda driver: driver.incr("", "tag:user:42", 1, None),
    "overwritten": lambda driver: driver.set("", "tag:user:42", "7", None),
    "deleted": lambda driver: driver.delete("", "tag:user:42"),
    "deleted in a batch": lambda driver: driver.delete_many("", ["tag:user:42"]),
    "cleared": lambda driver: driver.clear(""),
}


@pytest.mark.parametrize("change", list(COUNTER_CHANGES))
def test_a_counter_changed_or_gone_behind_the_cache_makes_the_next_hit_a_miss(change: str) -> None:
    driver = MemoryDriver()
    with cache.new(driver=driver) as c:
        load = Loads()
        memo_hits(c, driver, load)
        COUNTER_CHANGES[change](driver)
        assert c.get("page", "p", None) is None
        assert c.get_or_set("page", "p", load, 300, **OPTIONS) == "v2"
        assert load.calls == 2


def test_a_counter_given_a_deadline_is_read_until_it_expires() -> None:
    clock = ShiftedClock()
    driver = MemoryDriver(clock=clock)
    with cache.new(driver=driver) as c:
        load = Loads()
        memo_hits(c, driver, load)
        assert driver.touch("", "tag:user:42", 5)  # the counter may now expire unseen
        # Read in full now, and no memo holds for a counter that can expire unseen.
        assert c.get_or_set("page", "p", load, 300, **OPTIONS) == "v1"
        clock.advance(6)
        assert c.get_or_set("page", "p", load, 300, **OPTIONS) == "v2"


def test_a_memo_never_outlives_its_entry_on_the_stores_clock() -> None:
    clock = ShiftedClock()
    driver = MemoryDriver(clock=clock)
    with cache.new(driver=driver) as c:
        load = Loads()
        memo_hits(c, driver, load)
        clock.advance(400)  # past ttl + stale_seconds on the store's clock, not the wall's
        assert c.get_or_set("page", "p", load, 300, **OPTIONS) == "v2"


def test_an_entry_rewritten_without_options_loses_its_memo() -> None:
    driver = MemoryDriver()
    with cache.new(driver=driver) as c:
        load = Loads()
        memo_hits(c, driver, load)
        c.set("page", "p", "plain", 300)
        # A plain value carries no tag: a caller with one loads it again.
        assert c.get_or_set("page", "p", load, 300, **OPTIONS) == "v2"


def test_a_store_bounded_by_max_entries_lends_no_entries() -> None:
    driver = MemoryDriver(max_entries=10)
    assert driver.in_process_table() is None  # its reads move entries: through get_across
    with cache.new(driver=driver) as c:
        load = Loads()
        assert c.get_or_set("page", "p", load, 300, **OPTIONS) == "v1"
        assert c.get_or_set("page", "p", load, 300, **OPTIONS) == "v1"
        assert len(driver._data["page:p"]) == 2


def test_a_long_value_gets_no_memo_and_is_judged_in_full() -> None:
    driver = MemoryDriver()
    long_value = "v" * 5000  # a memo would hold it a second time

    with cache.new(driver=driver) as c:
        assert c.get_or_set("page", "p", lambda: long_value, 300, **OPTIONS) == long_value
        assert c.get_or_set("page", "p", lambda: "again", 300, **OPTIONS) == long_value
        assert len(driver._data["page:p"]) == 2
        c.invalidate_tags("user:42")
        assert c.get_or_set("page", "p", lambda: "again", 300, **OPTIONS) == "again"
