"""Freshness options and tags: their input rules, the envelope, and the background work's bounds.

On the memory driver (the rules are the facade's, the same on every driver);
the Redis driver's side is in ``tests/cache_aside``.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pevensie_test_echo.driver import EchoDriver

from pevensie_cache import (
    ArgumentTypeError,
    ArgumentValueError,
    PevensieCache,
    ThreadedAsyncDriver,
    UnsupportedOperation,
    cache,
    freshness,
    freshness_async,
)
from pevensie_cache.envelope import is_envelope, pack, pack_tags, unpack, unpack_tags
from pevensie_cache.memory import MemoryDriver
from pevensie_cache.primitives import BACKGROUND_LIMIT, BACKGROUND_THREADS

TEXT = st.text(st.characters(blacklist_categories=["Cs"]))  # what a value may hold
TAGS = st.lists(st.text(st.characters(blacklist_categories=["Cs"]), min_size=1), unique=True)


@given(TEXT)
def test_no_value_the_api_accepts_is_ever_taken_for_an_envelope(value: str) -> None:
    assert not is_envelope(value)


@given(TEXT, st.one_of(st.none(), st.floats(0, 4e9)), st.floats(0, 1e5), TAGS)
def test_an_envelope_gives_back_exactly_what_it_was_packed_with(
    value: str, expiry: float | None, compute: float, tags: list[str]
) -> None:
    versions = [str(n * 7919) for n in range(len(tags))]
    text = pack(value, expiry, compute, pack_tags(tags, versions))
    assert is_envelope(text)
    opened = unpack(text, "t", "k")
    assert opened.value == value
    assert opened.expiry == (None if expiry is None else pytest.approx(expiry, abs=0.001))
    assert opened.compute == pytest.approx(compute, abs=0.001)
    assert unpack_tags(opened.tags) == dict(zip(tags, versions, strict=True))


@given(TEXT)
def test_a_value_round_trips_through_set_and_get_whatever_it_holds(value: str) -> None:
    with cache.new() as c:
        c.set("t", "k", value)
        c.set("t", "tagged", value, tags=["x"])
        assert c.get("t", "k") == value
        assert c.get("t", "tagged") == value
        assert c.get_many("t", ["k", "tagged"]) == {"k": value, "tagged": value}


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"stale_seconds": 0}, ArgumentValueError),
        ({"stale_seconds": 10**16}, ArgumentValueError),  # beyond TTL_MAX
        ({"stale_seconds": 1.5}, ArgumentValueError),  # a TTL's rules: whole seconds
        ({"stale_seconds": float("nan")}, ArgumentValueError),
        ({"stale_seconds": True}, ArgumentTypeError),
        ({"stale_seconds": "5"}, ArgumentTypeError),
        ({"early_recompute": 0.0}, ArgumentValueError),
        ({"early_recompute": -1}, ArgumentValueError),
        ({"early_recompute": float("inf")}, ArgumentValueError),
        ({"early_recompute": 10**400}, ArgumentValueError),  # no float holds it
        ({"early_recompute": 10**5000}, ArgumentValueError),  # nor any text
        ({"early_recompute": -(10**5000)}, ArgumentValueError),
        ({"early_recompute": "yes"}, ArgumentTypeError),
        ({"stale_on_error": 1}, ArgumentTypeError),
        ({"stale_on_error": True}, ArgumentValueError),  # without stale_seconds
        ({"tags": "user:1"}, ArgumentTypeError),
        ({"tags": [""]}, ArgumentValueError),
        ({"tags": [None]}, ArgumentTypeError),
        ({"tags": [["nested"]]}, ArgumentTypeError),
        # Without lock=True too: a background refresh takes a lease of lock_lease.
        ({"stale_seconds": 5, "lock_lease": None}, ArgumentTypeError),
        ({"stale_seconds": 5, "lock_lease": "10"}, ArgumentTypeError),
        ({"stale_seconds": 5, "lock_lease": float("nan")}, ArgumentValueError),
        ({"early_recompute": True, "lock_lease": 10**30}, ArgumentValueError),
        ({"tags": ["t"], "lock_wait": 0}, ArgumentValueError),
    ],
)
def test_bad_freshness_options_are_typed_errors_that_load_and_write_nothing(
    options: dict[str, Any], error: type[Exception]
) -> None:
    calls: list[int] = []
    with cache.new() as c:
        with pytest.raises(error):
            c.get_or_set("t", "k", lambda: calls.append(1) or "v", 60, **options)
        with pytest.raises(error):
            c.resource("t", codec="json").get_or_set(
                "k", lambda: calls.append(1) or 1, 60, **options
            )
        assert calls == []
        assert c.get("t", "k", None) is None


def test_a_refresh_without_the_lock_takes_a_lease_of_lock_lease_in_any_accepted_form() -> None:
    with cache.new() as c:
        c.get_or_set("t", "k", lambda: "old", 1, stale_seconds=60)
        c._fresh.background.idle()
        time.sleep(1.05)
        lease = datetime.timedelta(seconds=3)
        assert c.get_or_set("t", "k", lambda: "new", 1, stale_seconds=60, lock_lease=lease) == "old"
        c._fresh.background.idle()
        assert c.get("t", "k") == "new"


@pytest.mark.parametrize("option", [{"stale_seconds": 5}, {"early_recompute": True}])
def test_stale_seconds_and_early_recompute_need_a_ttl(option: dict[str, Any]) -> None:
    with cache.new() as c:
        with pytest.raises(ArgumentValueError, match="need ttl_seconds"):
            c.get_or_set("t", "k", lambda: "v", **option)
        with pytest.raises(ArgumentValueError, match="need ttl_seconds"):

            @c.cached("memo", **option)
            def f() -> int:
                return 1


def test_a_cached_function_refuses_tags_that_are_not_a_callable() -> None:
    with cache.new() as c, pytest.raises(ArgumentTypeError, match="callable"):
        c.cached("memo", 60, tags=["a"])  # type: ignore[arg-type]


def test_a_driver_that_cannot_store_envelopes_says_so_and_nothing_is_emulated() -> None:
    with cache.new(driver=EchoDriver()) as c:
        for call in (
            lambda: c.get_or_set("t", "k", lambda: "v", 60, stale_seconds=5),
            lambda: c.get_or_set("t", "k", lambda: "v", 60, tags=["a"]),
            lambda: c.set("t", "k", "v", tags=["a"]),
            lambda: c.invalidate_tags("a"),
        ):
            with pytest.raises(UnsupportedOperation, match="EchoDriver"):
                call()
        assert c.get("t", "k", None) is None


async def test_a_driver_run_in_threads_that_cannot_store_envelopes_is_named() -> None:
    # The message once named the wrapper: "the ThreadedAsyncDriver driver cannot store ...".
    async with cache.new_async(driver=ThreadedAsyncDriver(EchoDriver())) as c:
        with pytest.raises(UnsupportedOperation, match="the EchoDriver driver cannot store"):
            await c.get_or_set("t", "k", lambda: "v", 60, stale_seconds=5)


async def test_a_sync_driver_run_in_threads_keeps_envelopes() -> None:
    async with cache.new_async(driver=ThreadedAsyncDriver(cache.new().driver)) as c:
        assert await c.get_or_set("t", "k", lambda: "v", 60, stale_seconds=5, tags=["a"]) == "v"
        assert await c.get("t", "k") == "v"
        await c.invalidate_tags("a")
        assert await c.get("t", "k", None) is None


def test_touch_changes_how_long_the_store_keeps_an_entry_not_when_it_goes_stale() -> None:
    with cache.new() as c:
        c.get_or_set("t", "k", lambda: "old", 1, stale_seconds=60)
        assert c.touch("t", "k", 3600)
        time.sleep(1.05)
        assert c.get("t", "k", None) is None  # past its TTL
        assert c.get_or_set("t", "k", lambda: "new", 1, stale_seconds=60) == "old"  # stale


def test_background_refreshes_keep_threads_and_runs_bounded_under_sustained_traffic() -> None:
    before = threading.active_count()
    keys = 3 * BACKGROUND_LIMIT
    with cache.new() as c:
        for n in range(keys):
            c.get_or_set("t", str(n), lambda: "old", 1, stale_seconds=60)
        time.sleep(1.05)
        most = 0

        def slow() -> str:
            time.sleep(0.01)
            return "new"

        for _ in range(3):
            for n in range(keys):
                assert c.get_or_set("t", str(n), slow, 1, stale_seconds=60) in ("old", "new")
                most = max(most, threading.active_count() - before)
                assert c._fresh.background.running() <= BACKGROUND_LIMIT
        assert most <= BACKGROUND_THREADS
        c._fresh.background.idle()
        assert c._fresh.background.running() == 0
    # Disconnecting stopped the threads.
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


async def test_async_refreshes_are_bounded_and_disconnect_cancels_them() -> None:
    c = await cache.new_async().connect()
    blocked = asyncio.Event()
    for n in range(2 * BACKGROUND_LIMIT):
        await c.get_or_set("t", str(n), lambda: "old", 1, stale_seconds=60)
    await asyncio.sleep(1.05)

    async def forever() -> str:
        blocked.set()
        await asyncio.sleep(3600)
        return "never"

    for n in range(2 * BACKGROUND_LIMIT):
        assert await c.get_or_set("t", str(n), forever, 1, stale_seconds=60) == "old"
    assert c._fresh.background.running() == BACKGROUND_LIMIT  # the rest were not started
    await asyncio.wait_for(blocked.wait(), 10)
    tasks = len(asyncio.all_tasks())
    began = time.perf_counter()
    await c.disconnect()
    assert time.perf_counter() - began < 5
    assert c._fresh.background.running() == 0
    assert len(asyncio.all_tasks()) == tasks - BACKGROUND_LIMIT


def test_a_json_resource_with_freshness_and_tags_returns_values_of_its_type() -> None:
    with cache.new() as c:
        users = c.resource("user", codec="json")
        loaded = users.get_or_set("1", lambda: {"n": 1}, 60, stale_seconds=5, tags=["user:1"])
        assert loaded == {"n": 1}
        assert users.get_or_set("1", lambda: {"n": 2}, 60, stale_seconds=5, tags=["user:1"]) == {
            "n": 1
        }
        assert users.get("1") == {"n": 1}
        users.set("2", [1, 2], 60, tags=["user:2"])
        assert users.get_many(["1", "2", "3"]) == {"1": {"n": 1}, "2": [1, 2]}
        c.invalidate_tags("user:1")
        assert users.get_many(["1", "2"]) == {"2": [1, 2]}


def test_tags_live_in_the_cache_s_namespace() -> None:
    shared = MemoryDriver()
    first, second = PevensieCache(shared, namespace="a"), PevensieCache(shared, namespace="b")
    with first, second:
        first.set("page", "home", "a's", 60, tags=["site"])
        second.set("page", "home", "b's", 60, tags=["site"])
        assert first.get_or_set("page", "p", lambda: "a", 60, stale_seconds=5, tags=["site"])
        first.invalidate_tags("site")
        assert first.get("page", "home", None) is None
        assert first.get("page", "p", None) is None
        assert second.get("page", "home") == "b's"  # another namespace, another counter
        stored = shared.keys()  # the store's own listing, not a dict
        assert all(key.startswith(("a:", "b:")) for key in stored)


@pytest.mark.parametrize("face", [freshness, freshness_async])
def test_xfetch_reaches_exactly_as_far_before_expiry_as_its_largest_draw(
    monkeypatch: pytest.MonkeyPatch, face: Any
) -> None:
    # random.random() is at most 1 - 2**-53, so a draw -log(1 - u) is at most 53 ln 2:
    # with a loader of 100 ms and beta 2, no read more than 0.2 * 36.74 s before expiry
    # can be chosen, and a read just inside that reach is chosen by the largest draw.
    draws: list[float] = []
    largest = 1 - 2**-53
    monkeypatch.setattr(face.random, "random", lambda: draws.append(largest) or largest)
    now = 1_000_000.0
    reach = 0.1 * 2.0 * 53 * math.log(2)
    assert face._early(now, now + reach * 0.999, "100", 2.0)
    assert not face._early(now, now + reach * 1.001, "100", 2.0)
    drawn = len(draws)
    assert not face._early(now, now + 3600, "100", 2.0)
    assert len(draws) == drawn  # out of any draw's reach: nothing drawn
    monkeypatch.setattr(face.random, "random", lambda: 0.0)  # the smallest draw: 0
    assert not face._early(now, now + 0.001, "100", 2.0)
    assert face._early(now, now, "100", 2.0)
    assert not face._early(now, now, "0", 2.0)  # a loader too fast to time: never early
    assert not face._early(now, now, "?", 2.0)  # not ours to judge: served as it is
