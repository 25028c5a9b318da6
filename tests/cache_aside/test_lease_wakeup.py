"""Lease waiters are woken by the holder's release, not by polling; polling stays the fallback.

The waiters' polling is slowed to 30 s here, so a waiter that returns within
a few milliseconds of the release was woken by it; each test also counts the
waiter's attempts at the lock (the first, and one after the wake-up). The
wake-up latency measured (release done -> waiter returned with the value) is
printed; RELIABILITY.md records it.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aside_support import Target

from pevensie_cache import (
    AsyncPevensieCache,
    PevensieCache,
    cache,
    lease,
    lease_async,
    locks,
    locks_async,
)
from pevensie_cache.memory import MemoryDriver
from pevensie_test_support.lock_watches import watch_entered

ROUNDS = 5


@pytest.fixture
def slow_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiters poll every 30 s at most and at first: anything faster is a wake-up."""
    for module in (lease, lease_async):
        monkeypatch.setattr(module, "LOCK_POLL_MAX", 30.0)
        monkeypatch.setattr(module, "LOCK_POLL_FIRST", 30.0)


class Watched:
    """Wraps a driver: when its lock releases end, and how often each thread tried to lock."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.released_at = 0.0
        self.attempts: dict[str, int] = {}

    def install(self) -> None:
        driver = self.driver
        acquire, release = driver.acquire_lock, driver.release_lock

        def acquire_lock(*args: Any) -> Any:
            name = threading.current_thread().name
            self.attempts[name] = self.attempts.get(name, 0) + 1
            return acquire(*args)

        def release_lock(*args: Any) -> None:
            release(*args)
            self.released_at = time.perf_counter()

        driver.acquire_lock, driver.release_lock = acquire_lock, release_lock


@contextmanager
def sync_pair(store: Target) -> Iterator[tuple[PevensieCache, PevensieCache]]:
    """Two caches on ``store``: two processes, as far as the lock goes (one memory store)."""
    if store.name == "memory":
        shared = MemoryDriver()
        holder, waiter = cache.new(driver=shared).connect(), cache.new(driver=shared).connect()
    else:
        holder, waiter = cache.from_url(store.url).connect(), cache.from_url(store.url).connect()
    try:
        yield holder, waiter
    finally:
        holder.disconnect()
        waiter.disconnect()


@pytest.mark.usefixtures("slow_polls")
def test_a_waiting_thread_is_woken_by_the_release_not_by_polling(store: Target) -> None:
    latencies: list[float] = []
    with sync_pair(store) as (holder, waiter):
        watched = Watched(holder.driver)
        watched.install()
        counted = Watched(waiter.driver)
        counted.install()
        entered = watch_entered(waiter.driver)
        for round_ in range(ROUNDS):
            key = f"home-{round_}"
            loading = threading.Event()
            finish = threading.Event()

            def slow(loading: threading.Event = loading, finish: threading.Event = finish) -> str:
                loading.set()
                assert finish.wait(30)
                return "from the holder"

            holding = threading.Thread(
                target=lambda key=key, slow=slow: holder.get_or_set("page", key, slow, lock=True)
            )
            holding.start()
            assert loading.wait(30)
            returned: list[Any] = []

            def wait(key: str = key, returned: list[Any] = returned) -> None:
                value = waiter.get_or_set("page", key, lambda: "from the waiter", lock=True)
                returned.append((value, time.perf_counter()))

            entered.clear()
            waiting = threading.Thread(target=wait, name=f"waiter-{round_}")
            waiting.start()
            # Its first attempt has failed, it looked the value up, and it waits on its
            # lock watch (opened before that attempt): the release below must wake it.
            assert entered.wait(30)
            finish.set()
            holding.join(30)
            waiting.join(30)
            [(value, at)] = returned
            assert value == "from the holder"
            latencies.append(at - watched.released_at)
            # Its first attempt, and one after the wake-up: no poll in between.
            assert counted.attempts[f"waiter-{round_}"] == 2
            assert at - watched.released_at < 5.0  # far below the 30 s poll
    print(
        f"\n{store.name}, sync: release -> waiter returned with the value: median "
        f"{statistics.median(latencies) * 1000:.2f} ms, max {max(latencies) * 1000:.2f} ms "
        f"over {ROUNDS} rounds"
    )


async def _async_pair(store: Target) -> tuple[AsyncPevensieCache, AsyncPevensieCache]:
    if store.name == "memory":
        shared = MemoryDriver()
        return (
            AsyncPevensieCache(shared.async_view()),
            AsyncPevensieCache(shared.async_view()),
        )
    return cache.from_url_async(store.url), cache.from_url_async(store.url)


@pytest.mark.usefixtures("slow_polls")
async def test_a_waiting_task_is_woken_by_the_release_not_by_polling(store: Target) -> None:
    holder, waiter = await _async_pair(store)
    latencies: list[float] = []
    async with holder, waiter:
        released: list[float] = []
        attempts = 0
        release, acquire = holder.driver.release_lock, waiter.driver.acquire_lock  # type: ignore[attr-defined]

        async def release_lock(*args: Any) -> None:
            await release(*args)
            released.append(time.perf_counter())

        async def acquire_lock(*args: Any) -> Any:
            nonlocal attempts
            attempts += 1
            return await acquire(*args)

        holder.driver.release_lock = release_lock  # type: ignore[attr-defined]
        waiter.driver.acquire_lock = acquire_lock  # type: ignore[attr-defined]
        entered = watch_entered(waiter.driver)
        for round_ in range(ROUNDS):
            key = f"home-{round_}"
            loading, finish = asyncio.Event(), asyncio.Event()

            async def slow(loading: asyncio.Event = loading, finish: asyncio.Event = finish) -> str:
                loading.set()
                await finish.wait()
                return "from the holder"

            holding = asyncio.create_task(holder.get_or_set("page", key, slow, lock=True))
            await asyncio.wait_for(loading.wait(), 30)
            attempts = 0
            entered.clear()
            waiting = asyncio.create_task(
                waiter.get_or_set("page", key, lambda: "from the waiter", lock=True)
            )
            # Its first attempt has failed, it looked the value up, and it waits on its
            # lock watch: the release below must wake it.
            assert await asyncio.to_thread(entered.wait, 30)
            finish.set()
            value = await asyncio.wait_for(waiting, 30)
            at = time.perf_counter()
            await holding
            assert value == "from the holder"
            assert attempts == 2
            latencies.append(at - released[-1])
            assert latencies[-1] < 5.0
    print(
        f"\n{store.name}, async: release -> waiter returned with the value: median "
        f"{statistics.median(latencies) * 1000:.2f} ms, max {max(latencies) * 1000:.2f} ms "
        f"over {ROUNDS} rounds"
    )


def test_a_lease_that_expires_unreleased_is_still_taken_over_by_polling(store: Target) -> None:
    with sync_pair(store) as (holder, waiter):
        assert holder.acquire_lock("page", "home", "crashed-holder", 0.5)
        began = time.perf_counter()
        value = waiter.get_or_set("page", "home", lambda: "from the waiter", lock=True)
        took = time.perf_counter() - began
        assert value == "from the waiter"
        assert 0.4 <= took < 5.0


def test_a_lease_is_released_only_by_its_holder(store: Target) -> None:
    with sync_pair(store) as (holder, other):
        assert holder.acquire_lock("page", "home", "holder-token", 10)
        other.release_lock("page", "home", "another-token")  # compare-and-delete: nothing
        assert other.acquire_lock("page", "home", "another-token", 10) is False
        holder.release_lock("page", "home", "holder-token")
        assert other.acquire_lock("page", "home", "another-token", 10) is True


@pytest.fixture
def slow_lock_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """``c.lock()`` waiters poll every 30 s at most and at first: anything faster is a wake-up."""
    for module in (locks, locks_async):
        monkeypatch.setattr(module, "POLL_MAX", 30.0)
        monkeypatch.setattr(module, "POLL_FIRST", 30.0)


@pytest.mark.usefixtures("slow_lock_polls")
def test_a_thread_waiting_in_lock_is_woken_by_the_holders_release(store: Target) -> None:
    with sync_pair(store) as (holder, waiter):
        entered = watch_entered(waiter.driver)
        took: list[float] = []
        with holder.lock("report", "monthly", ttl_seconds=30):

            def wait() -> None:
                with waiter.lock("report", "monthly", ttl_seconds=30, wait_seconds=20):
                    took.append(time.perf_counter())

            waiting = threading.Thread(target=wait)
            waiting.start()
            assert entered.wait(30)  # the waiter's first try failed; it waits on its watch
            released_from = time.perf_counter()
        waiting.join(30)
        [at] = took
        assert at - released_from < 5.0  # far below the 30 s poll


@pytest.mark.usefixtures("slow_lock_polls")
async def test_a_task_waiting_in_lock_is_woken_by_the_holders_release(store: Target) -> None:
    holder, waiter = await _async_pair(store)
    async with holder, waiter:
        entered = watch_entered(waiter.driver)
        async with holder.lock("report", "monthly", ttl_seconds=30):

            async def wait() -> float:
                async with waiter.lock("report", "monthly", ttl_seconds=30, wait_seconds=20):
                    return time.perf_counter()

            waiting = asyncio.create_task(wait())
            assert await asyncio.to_thread(entered.wait, 30)  # first try failed; it waits
            released_from = time.perf_counter()
        at = await asyncio.wait_for(waiting, 30)
        assert at - released_from < 5.0
