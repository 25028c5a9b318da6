"""Lease waiters through Sentinel: woken by the release before a failover and after it.

The waiters' one subscriber connection goes to the primary the sentinels
name; the primary's death breaks it (waiters poll meanwhile), and it
subscribes again on the new primary, where releases are published from then
on. Polling is slowed to 30 s, so a waiter back within seconds was woken.
Both faces, each on a topology of its own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from test_sentinel_driver import FAILOVER_BOUND, sentinel_url

from pevensie_cache import AsyncPevensieCache, PevensieCache, cache, lease, lease_async
from pevensie_cache.errors import PevensieCacheError
from pevensie_test_support import LocalSentinel
from pevensie_test_support.lock_watches import watch_entered

WOKEN_BOUND = 5.0
"""Seconds within which a woken waiter returns: far below the 30 s poll."""


@pytest.fixture
def slow_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in (lease, lease_async):
        monkeypatch.setattr(module, "LOCK_POLL_MAX", 30.0)
        monkeypatch.setattr(module, "LOCK_POLL_FIRST", 30.0)


def _round_sync(
    holder: PevensieCache, waiter: PevensieCache, entered: threading.Event, key: str
) -> float:
    """The waiter waits for ``key``'s lease; return how long after the release it returned.

    ``entered``: set once the waiter waits on its lock watch (:func:`watch_entered`).
    """
    assert holder.acquire_lock("page", key, "holder", 30)
    entered.clear()
    returned: list[Any] = []

    def wait() -> None:
        returned.append(waiter.get_or_set("page", key, lambda: "from the waiter", lock=True))
        returned.append(time.monotonic())

    waiting = threading.Thread(target=wait)
    waiting.start()
    assert entered.wait(30)  # the waiter has tried once and waits on its watch
    holder.set("page", key, "from the holder")
    holder.release_lock("page", key, "holder")
    released = time.monotonic()
    waiting.join(WOKEN_BOUND + 30)
    value, at = returned
    assert value == "from the holder"
    return float(at - released)


async def _round_async(
    holder: AsyncPevensieCache, waiter: AsyncPevensieCache, entered: threading.Event, key: str
) -> float:
    assert await holder.acquire_lock("page", key, "holder", 30)
    entered.clear()
    waiting = asyncio.create_task(
        waiter.get_or_set("page", key, lambda: "from the waiter", lock=True)
    )
    assert await asyncio.to_thread(entered.wait, 30)  # it has tried once and waits
    await holder.set("page", key, "from the holder")
    await holder.release_lock("page", key, "holder")
    released = time.monotonic()
    value = await asyncio.wait_for(waiting, WOKEN_BOUND + 30)
    took = time.monotonic() - released
    assert value == "from the holder"
    return took


def _failover(topology: LocalSentinel, writer: Any) -> None:
    """Kill the primary and wait until ``writer()`` succeeds on the new one."""
    old = topology.kill_primary()
    deadline = time.monotonic() + FAILOVER_BOUND
    while True:
        try:
            writer()
            break
        except PevensieCacheError:
            assert time.monotonic() < deadline, "no failover in time"
            time.sleep(0.1)
    assert topology.current_primary() is not old


@pytest.mark.slow
@pytest.mark.usefixtures("slow_polls")
def test_a_waiting_thread_is_woken_before_and_after_a_failover(
    fresh_sentinel: LocalSentinel,
) -> None:
    url = sentinel_url(fresh_sentinel, query="?timeout=1000")
    with cache.from_url(url) as holder, cache.from_url(url) as waiter:
        entered = watch_entered(waiter.driver)
        before = _round_sync(holder, waiter, entered, "before")
        _failover(fresh_sentinel, lambda: holder.set("page", "probe", "x"))
        after = _round_sync(holder, waiter, entered, "after")
    assert before < WOKEN_BOUND
    assert after < WOKEN_BOUND
    print(f"\nsentinel, sync: woken {before * 1000:.2f} ms before, {after * 1000:.2f} ms after")


@pytest.mark.slow
@pytest.mark.usefixtures("slow_polls")
async def test_a_waiting_task_is_woken_before_and_after_a_failover(
    fresh_sentinel: LocalSentinel,
) -> None:
    url = sentinel_url(fresh_sentinel, query="?timeout=1000")
    async with cache.from_url_async(url) as holder, cache.from_url_async(url) as waiter:
        entered = watch_entered(waiter.driver)
        before = await _round_async(holder, waiter, entered, "before")
        old = fresh_sentinel.kill_primary()
        deadline = time.monotonic() + FAILOVER_BOUND
        while True:
            try:
                await holder.set("page", "probe", "x")
                break
            except PevensieCacheError:
                assert time.monotonic() < deadline, "no failover in time"
                await asyncio.sleep(0.1)
        assert fresh_sentinel.current_primary() is not old
        after = await _round_async(holder, waiter, entered, "after")
    assert before < WOKEN_BOUND
    assert after < WOKEN_BOUND
    print(f"\nsentinel, async: woken {before * 1000:.2f} ms before, {after * 1000:.2f} ms after")
