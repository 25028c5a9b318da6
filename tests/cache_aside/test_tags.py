"""Tags: invalidate_tags makes every entry carrying a tag a miss, whatever their number.

On the memory driver, one server and a Cluster (where no command may span two
slots: every tag counter is a key of its own), both faces, and with the near
cache on. A tag is any non-empty string.
"""

from __future__ import annotations

import asyncio
import enum
import statistics
import sys
import threading
import time
from types import FrameType
from typing import Any

import pytest
from aside_support import Target
from fresh_support import raw_bytes, wait_until

from pevensie_cache import ArgumentTypeError, ArgumentValueError, cache
from pevensie_cache.memory import MemoryDriver
from pevensie_cache.primitives import SingleFlight
from pevensie_test_support.faces import Face


def faces(store: Target) -> list[Face]:
    """A sync and an async cache on ``store``, not connected (the memory ones share a store)."""
    if store.name == "memory":
        driver = MemoryDriver()
        return [Face("sync", cache.new(driver=driver)), Face("async", _view(driver))]
    return [Face("sync", cache.from_url(store.url)), Face("async", cache.from_url_async(store.url))]


def _view(driver: MemoryDriver) -> Any:
    from pevensie_cache import AsyncPevensieCache

    return AsyncPevensieCache(driver.async_view())


@pytest.mark.filterwarnings("ignore:connect\\(\\) on a sync cache inside a running event loop")
@pytest.mark.parametrize("writer", ["sync", "async"])
async def test_invalidating_a_tag_makes_every_entry_carrying_it_a_miss_on_both_faces(
    store: Target, writer: str
) -> None:
    sync_face, async_face = faces(store)
    await sync_face.connect()
    await async_face.connect()
    try:
        write, read = (sync_face, async_face) if writer == "sync" else (async_face, sync_face)
        users = write.cache.resource("user", codec="json")
        result = users.set("42", {"name": "Ada"}, 300, tags=["user:42"])
        if hasattr(result, "__await__"):
            await result
        await write.get_or_set("page", "profile-42", lambda: "<h1>Ada</h1>", 300, tags=["user:42"])
        await write.get_or_set("page", "home", lambda: "<h1>Home</h1>", 300, tags=["page:home"])
        await write.set("page", "plain", "no tags")
        # A plain read returns the value, never the envelope; through the codec too.
        assert await read.get("user", "42") == '{"name":"Ada"}'
        assert await read.get("page", "profile-42") == "<h1>Ada</h1>"
        assert await read.get_many("page", ["profile-42", "home", "plain", "absent"]) == {
            "profile-42": "<h1>Ada</h1>",
            "home": "<h1>Home</h1>",
            "plain": "no tags",
        }
        await read.invalidate_tags("user:42")
        assert await read.get("user", "42", None) is None
        assert await write.get("page", "profile-42", None) is None
        assert await read.get_many("page", ["profile-42", "home", "plain"]) == {
            "home": "<h1>Home</h1>",
            "plain": "no tags",
        }
        # get_or_set loads it again, and the new entry is current.
        got = await read.get_or_set(
            "page", "profile-42", lambda: "<h1>Ada L.</h1>", 300, tags=["user:42"]
        )
        assert got == "<h1>Ada L.</h1>"
        assert await write.get("page", "profile-42") == "<h1>Ada L.</h1>"
    finally:
        await sync_face.disconnect()
        await async_face.disconnect()


def test_cached_functions_take_their_tags_from_their_arguments(store: Target) -> None:
    with cache.from_url(store.url) as c:
        runs: list[tuple[str, int]] = []

        @c.cached("report", 300, tags=lambda region, year: [f"region:{region}", f"year:{year}"])
        def report(region: str, year: int) -> dict[str, Any]:
            runs.append((region, year))
            return {"region": region, "year": year, "run": len(runs)}

        eu, us = report("eu", 2026), report("us", 2026)
        assert report("eu", 2026) == eu
        assert report("us", 2026) == us
        assert len(runs) == 2
        c.invalidate_tags("region:eu")
        assert report("eu", 2026) != eu
        assert report("us", 2026) == us
        c.invalidate_tags("year:2026")
        report("eu", 2026)
        report("us", 2026)
        assert runs == [("eu", 2026), ("us", 2026), ("eu", 2026), ("eu", 2026), ("us", 2026)]


async def test_an_async_cached_function_takes_its_tags_from_its_arguments(store: Target) -> None:
    async with cache.from_url_async(store.url) as c:
        runs: list[int] = []

        @c.cached("profile", 300, tags=lambda user_id: [f"user:{user_id}"])
        async def profile(user_id: int) -> dict[str, int]:
            runs.append(user_id)
            return {"id": user_id, "run": len(runs)}

        first = await profile(42)
        assert await profile(42) == first
        await c.invalidate_tags("user:42")
        assert await profile(42) != first
        assert runs == [42, 42]


def test_an_entry_without_the_callers_tags_is_loaded_again_with_them(store: Target) -> None:
    with cache.from_url(store.url) as c:
        c.set("page", "home", "written without tags", 300)
        assert c.get_or_set("page", "home", lambda: "with tags", 300, tags=["site"]) == "with tags"
        c.invalidate_tags("site")
        assert c.get("page", "home", None) is None


def test_a_counter_lost_twice_never_brings_an_invalidated_entry_back(store: Target) -> None:
    # A counter disappears when the store evicts it (memory pressure, an LRU bound) or
    # is flushed; invalidating a tag whose counter is absent creates it again.
    with cache.from_url(store.url) as c:
        c.invalidate_tags("user:42")  # no counter yet: this one creates it
        assert c.get_or_set("page", "p", lambda: "Ada", 300, tags=["user:42"]) == "Ada"
        _lose_counter(store, c, "user:42")
        c.invalidate_tags("user:42")  # user 42 changed
        # Created again, the counter must not hold the version the page recorded.
        assert c.get("page", "p", None) is None
        assert c.get_or_set("page", "p", lambda: "Ada L.", 300, tags=["user:42"]) == "Ada L."


def test_a_counter_evicted_by_the_memory_bound_never_brings_an_entry_back() -> None:
    driver = MemoryDriver(max_entries=2)
    with cache.new(driver=driver) as c:
        c.invalidate_tags("user:42")  # no counter yet: this one creates it
        assert c.get_or_set("page", "p", lambda: "Ada", 300, tags=["user:42"]) == "Ada"
        c.set("page", "other", "v")  # evicts the counter, the least recently used
        assert c.get("page", "p", None) is None  # no counter: a miss, and p is used
        assert driver.keys() == {"page:other", "page:p"}
        c.invalidate_tags("user:42")  # user 42 changed; evicts page:other
        assert driver.keys() == {"page:p", ":tag:user:42"}
        assert c.get_or_set("page", "p", lambda: "Ada L.", 300, tags=["user:42"]) == "Ada L."


def _lose_counter(store: Target, c: Any, tag: str) -> None:
    """Remove a tag's counter as an eviction would, without the cache knowing."""
    if store.name == "memory":
        assert c.driver.delete("", f"tag:{tag}")  # the resource type no API call can name
        return
    client = store.raw()
    try:
        assert client.delete(f":tag:{tag}") == 1
    finally:
        client.close()


def test_tags_are_any_non_empty_strings_and_bad_ones_change_nothing(store: Target) -> None:
    odd = ["user:42", "a b", "é", "{braces}", "semi;colon", "9:digits", ",comma", "x" * 300]
    with cache.from_url(store.url) as c:
        c.get_or_set("page", "home", lambda: "v", 300, tags=odd)
        assert c.get("page", "home") == "v"
        for tag in odd:
            c.set("page", "home", "v", 300, tags=odd)
            c.invalidate_tags(tag)
            assert c.get("page", "home", None) is None, tag
        for bad, error in (
            ("user:42", ArgumentTypeError),  # a lone str
            ([""], ArgumentValueError),
            ([42], ArgumentTypeError),
            (["\ud800"], ArgumentValueError),
        ):
            with pytest.raises(error):
                c.set("page", "bad", "v", 300, tags=bad)
            with pytest.raises(error):
                c.get_or_set("page", "bad", lambda: "v", 300, tags=bad)
            assert c.get("page", "bad", None) is None
        with pytest.raises(ArgumentValueError):
            c.invalidate_tags("")
        with pytest.raises(ArgumentTypeError):
            c.invalidate_tags(42)  # type: ignore[arg-type]


class _Mixed(str, enum.Enum):  # noqa: UP042 (the mixin is the case under test)
    USER = "user:7"


class _Text(str):
    def __str__(self) -> str:
        return "not-the-text"


@pytest.mark.parametrize("tag", [_Mixed.USER, enum.StrEnum("_Str", {"USER": "user:7"}).USER])
def test_a_tag_of_a_str_subclass_is_its_text(store: Target, tag: str) -> None:
    # (str, Enum) members format as "_Mixed.USER": the entry must record "user:7".
    with cache.from_url(store.url) as c:
        for tags in ([tag], [tag, "other"], (t for t in [tag]), [_Text("user:7")]):
            c.set("page", "home", "v", 300, tags=list(tags))
            assert c.get("page", "home", None) == "v"
            c.invalidate_tags("user:7")
            assert c.get("page", "home", None) is None
            c.set("page", "home", "v", 300, tags=["user:7"])
            c.invalidate_tags(tag)
            assert c.get("page", "home", None) is None


def test_values_written_without_options_keep_their_layout(store: Target) -> None:
    if store.name == "memory":
        pytest.skip("the layout on the server is what this checks")
    with cache.from_url(store.url) as c:
        c.set("page", "plain", "text", 300)
        c.get_or_set("page", "loaded", lambda: "text", 300)
        c.resource("user", codec="json").set("1", {"a": 1})
        with store.raw() as raw:
            assert raw.get("page:plain") in ("text", b"text")
            assert raw.get("page:loaded") in ("text", b"text")
        assert sorted(store.scan_keys()) == ["page:loaded", "page:plain", "user:1"]
        c.get_or_set("page", "tagged", lambda: "text", 300, tags=["t"])
        data = raw_bytes(store, "page:tagged")
        assert data.startswith(b"\xff1")  # the envelope's mark: a byte UTF-8 never has
        assert data.endswith(b"text")
        assert ":tag:t" in store.scan_keys()


class CountingMemoryDriver(MemoryDriver):
    """A memory driver that counts the operations the facade calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if callable(value) and not name.startswith("_") and name != "calls":
            super().__getattribute__("calls").append(name)
        return value


_DATA = {
    f"cmdstat_{name}"
    for name in ("get", "mget", "set", "mset", "incrby", "unlink", "del", "eval", "evalsha", "scan")
}
"""The commands that read or write keys (the topology's own ROLE and PING checks aside)."""


def _commands(store: Target) -> dict[str, int]:
    """Key commands run by every primary since the last reset (``INFO commandstats``)."""
    count: dict[str, int] = {}
    for client in store.nodes():
        with client:
            for name, stats in client.info("commandstats").items():
                if name in _DATA:
                    count[name] = count.get(name, 0) + stats["calls"]
    return count


def _reset(store: Target) -> None:
    for client in store.nodes():
        with client:
            client.config_resetstat()


def test_invalidating_a_tag_of_10000_entries_costs_what_one_entry_costs(store: Target) -> None:
    many = 10_000
    driver = CountingMemoryDriver() if store.name == "memory" else None
    c = cache.new(driver=driver) if driver is not None else cache.from_url(store.url)
    with c:
        pages = c.resource("page")
        for n in range(many):
            pages.set(str(n), "v", 600, tags=["big"])
        pages.set("lone", "v", 600, tags=["small"])
        timings: dict[str, list[float]] = {"big": [], "small": []}
        costs: dict[str, Any] = {}
        for round_ in range(5):
            for tag in ("big", "small"):
                if driver is not None:
                    driver.calls.clear()
                else:
                    _reset(store)
                began = time.perf_counter()
                c.invalidate_tags(tag)
                timings[tag].append(time.perf_counter() - began)
                costs[tag] = list(driver.calls) if driver is not None else _commands(store)
            if round_ == 0:
                assert c.get_many("page", ["0", "9999", "lone"]) == {}
        # One counter increment, whatever the number of entries: the same commands (or
        # driver calls) for a tag on 10,000 entries as for a tag on one, and no entry read.
        one = ["incr"] if driver is not None else {"cmdstat_incrby": 1}
        assert costs["big"] == costs["small"] == one, costs
    big, small = (statistics.median(timings[tag]) * 1e6 for tag in ("big", "small"))
    print(
        f"\n{store.name}: invalidate_tags, median of 5: 10,000 entries {big:.0f} µs, "
        f"1 entry {small:.0f} µs"
    )


def test_a_batch_of_tagged_entries_on_a_cluster_reads_every_slot_without_crossslot(
    cluster_target: Target,
) -> None:
    with cache.from_url(cluster_target.url) as c:
        tags = [f"t{n}" for n in range(20)]  # counters spread over the slots
        for n in range(200):
            c.set("page", str(n), f"v{n}", 300, tags=[tags[n % 20], tags[(n + 7) % 20]])
        assert c.get_many("page", [str(n) for n in range(200)]) == {
            str(n): f"v{n}" for n in range(200)
        }
        c.invalidate_tags("t0", "t1")
        found = c.get_many("page", [str(n) for n in range(200)])
        gone = {str(n) for n in range(200) if {n % 20, (n + 7) % 20} & {0, 1}}
        assert set(found) == {str(n) for n in range(200)} - gone


def test_with_the_near_cache_another_process_invalidating_a_tag_makes_the_entry_a_miss(
    server_target: Target,
) -> None:
    near_url = f"{server_target.url}?near_cache=true"
    with cache.from_url(near_url) as near, cache.from_url(server_target.url) as other:
        near.get_or_set("page", "home", lambda: "v1", 300, tags=["home"])
        for _ in range(3):  # now answered from this process, counter included
            assert near.get_or_set("page", "home", lambda: "x", 300, tags=["home"]) == "v1"
            assert near.get("page", "home") == "v1"
        other.invalidate_tags("home")
        wait_until(lambda: near.get("page", "home", None) is None, timeout=10)
        assert near.get_or_set("page", "home", lambda: "v2", 300, tags=["home"]) == "v2"


async def test_a_caller_joining_a_load_begun_before_an_invalidation_gets_a_later_value() -> None:
    # The memory driver never suspends a task: each step below runs a task until it waits.
    async with cache.new_async(driver="memory") as c:
        entered, release = asyncio.Event(), asyncio.Event()
        loads_after = 0

        async def before() -> str:
            entered.set()
            await release.wait()
            return "Ada"  # read from the database before the change below

        async def after() -> str:
            nonlocal loads_after
            loads_after += 1
            await asyncio.sleep(0)  # a real loader waits: the others find its load under way
            return "Ada L."

        first = asyncio.create_task(c.get_or_set("page", "p", before, 300, tags=["user:42"]))
        await asyncio.sleep(0)
        assert entered.is_set()  # its loader runs, and waits
        await c.invalidate_tags("user:42")  # user 42 changed meanwhile
        later = [
            asyncio.create_task(c.get_or_set("page", "p", after, 300, tags=["user:42"]))
            for _ in range(3)
        ]
        await asyncio.sleep(0)  # each misses and waits for the load under way
        release.set()
        assert await first == "Ada"  # it asked before the invalidation
        # They asked after: never the value from before; and they load it once, together.
        assert await asyncio.gather(*later) == ["Ada L."] * 3
        assert loads_after == 1
        assert await c.get("page", "p") == "Ada L."


def test_a_thread_joining_a_load_begun_before_an_invalidation_gets_a_later_value() -> None:
    with cache.new(driver="memory") as c:
        entered, release, joined = threading.Event(), threading.Event(), threading.Event()
        got: dict[str, str] = {}

        def before() -> str:
            entered.set()
            release.wait()
            return "Ada"  # read from the database before the change below

        def first() -> None:
            got["first"] = c.get_or_set("page", "p", before, 300, tags=["user:42"])

        def note_the_join(frame: FrameType, event: str, arg: object) -> Any:
            # Set once this thread has found the load under way (its run of the flight).
            if event == "line" and frame.f_locals.get("running") is not None:
                joined.set()
            return note_the_join

        def second() -> None:
            run = SingleFlight.run.__code__
            sys.settrace(lambda frame, *_: note_the_join if frame.f_code is run else None)
            try:
                got["second"] = c.get_or_set("page", "p", lambda: "Ada L.", 300, tags=["user:42"])
            finally:
                sys.settrace(None)

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        threads[0].start()
        entered.wait()
        c.invalidate_tags("user:42")  # user 42 changed meanwhile
        threads[1].start()
        joined.wait()
        release.set()
        for thread in threads:
            thread.join()
        assert got == {"first": "Ada", "second": "Ada L."}
        assert c.get("page", "p") == "Ada L."
