"""get_or_set and @cached in one process: 32 concurrent callers, one loader call.

The loader takes 200 ms, so every caller arrives while it runs. Each test runs
with and without ``lock=True`` (the lease lock on the server), on one server
and on a Cluster.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from aside_support import Target

from pevensie_cache import LockTimeout, cache
from pevensie_redis import AsyncRedisDriver, RedisConfig, RedisDriver

CALLERS = 32
LOAD_TIME = 0.2
FAILING_LOAD_TIME = 1.0
"""A failed load stores nothing, so a caller whose miss arrives after it ends loads again:
a loader that fails gives every caller (whose GET may queue behind the others' on a busy
machine) a whole second to join its flight."""


class Loader:
    """A 200 ms loader that counts its calls (thread-safe)."""

    def __init__(
        self, result: Any = "loaded", error: Exception | None = None, load_time: float = LOAD_TIME
    ) -> None:
        self.calls = 0
        self.load_time = load_time
        self._count = threading.Lock()
        self.result = result
        self.error = error

    def __call__(self) -> Any:
        with self._count:
            self.calls += 1
        time.sleep(self.load_time)
        if self.error is not None:
            raise self.error
        return self.result

    async def load_async(self) -> Any:
        with self._count:
            self.calls += 1
        await asyncio.sleep(self.load_time)
        if self.error is not None:
            raise self.error
        return self.result


def in_threads(call: Any) -> list[Any]:
    """Run ``call()`` in 32 threads released together; return each result or exception."""
    outcomes: list[Any] = [None] * CALLERS
    start = threading.Barrier(CALLERS)

    def run(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = call()
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.parametrize("lock", [False, True], ids=["no-lock", "lock"])
def test_32_threads_run_a_200ms_loader_once(target: Target, lock: bool) -> None:
    loader = Loader()
    with cache.from_url(target.url) as c:
        began = time.perf_counter()
        outcomes = in_threads(lambda: c.get_or_set("page", "home", loader, 60, lock=lock))
        took = time.perf_counter() - began
        assert outcomes == ["loaded"] * CALLERS
        assert loader.calls == 1
        assert c.get("page", "home") == "loaded"
    print(f"\n{target.name} lock={lock}: 32 threads served in {took:.3f} s")


@pytest.mark.parametrize("lock", [False, True], ids=["no-lock", "lock"])
async def test_32_tasks_run_a_200ms_loader_once(target: Target, lock: bool) -> None:
    loader = Loader()
    async with cache.from_url_async(target.url) as c:
        outcomes = await asyncio.gather(
            *(
                c.get_or_set("page", "home", loader.load_async, 60, lock=lock)
                for _ in range(CALLERS)
            )
        )
        assert outcomes == ["loaded"] * CALLERS
        assert loader.calls == 1
        assert await c.get("page", "home") == "loaded"


@pytest.mark.parametrize("lock", [False, True], ids=["no-lock", "lock"])
def test_32_threads_calling_a_cached_function_run_it_once(target: Target, lock: bool) -> None:
    loader = Loader()
    with cache.from_url(target.url) as c:

        @c.cached("report", ttl_seconds=60, lock=lock)
        def report(region: str) -> dict[str, Any]:
            return {"region": region, "rows": loader()}

        outcomes = in_threads(lambda: report("eu"))
        assert outcomes == [{"region": "eu", "rows": "loaded"}] * CALLERS
        assert loader.calls == 1


@pytest.mark.parametrize("lock", [False, True], ids=["no-lock", "lock"])
def test_a_raising_loader_stores_nothing_and_every_waiter_gets_its_exception(
    target: Target, lock: bool
) -> None:
    failure = LookupError("upstream is down")
    loader = Loader(error=failure, load_time=FAILING_LOAD_TIME)
    with cache.from_url(target.url) as c:
        outcomes = in_threads(
            lambda: c.get_or_set("page", "broken", loader, 60, lock=lock, lock_lease=30)
        )
        assert loader.calls == 1
        assert all(outcome is failure for outcome in outcomes)
        assert c.get("page", "broken", default=None) is None
    with target.raw() as raw:
        assert raw.exists("page:broken", ":lock:page:broken") == 0  # nothing stored, no lock left


@pytest.mark.parametrize("lock", [False, True], ids=["no-lock", "lock"])
async def test_a_raising_async_loader_stores_nothing_and_every_waiting_task_gets_its_exception(
    target: Target, lock: bool
) -> None:
    failure = LookupError("upstream is down")
    loader = Loader(error=failure, load_time=FAILING_LOAD_TIME)
    async with cache.from_url_async(target.url) as c:
        outcomes = await asyncio.gather(
            *(
                c.get_or_set("page", "broken", loader.load_async, 60, lock=lock, lock_lease=30)
                for _ in range(CALLERS)
            ),
            return_exceptions=True,
        )
        assert loader.calls == 1
        assert all(outcome is failure for outcome in outcomes)
        assert await c.get("page", "broken", default=None) is None
    with target.raw() as raw:
        assert raw.exists("page:broken", ":lock:page:broken") == 0


def test_after_a_raising_loader_the_lock_is_free_at_once_for_another_process(
    target: Target,
) -> None:
    # Two caches: two processes as far as the lock is concerned (each has its own flights).
    with cache.from_url(target.url) as first, cache.from_url(target.url) as second:
        with pytest.raises(LookupError):
            first.get_or_set(
                "page", "k", Loader(error=LookupError("down")), lock=True, lock_lease=30
            )
        began = time.perf_counter()
        # With the lock still held, this would wait for 30 s and raise LockTimeout after 1 s.
        value = second.get_or_set("page", "k", Loader("second try"), lock=True, lock_wait=1)
        took = time.perf_counter() - began
        assert value == "second try"
        assert took < 1
    print(f"\n{target.name}: the next caller loaded after {took:.3f} s (the lease is 30 s)")


def test_a_caller_waiting_on_a_lock_gets_lock_timeout_within_lock_wait(target: Target) -> None:
    with cache.from_url(target.url) as holder, cache.from_url(target.url) as waiter:
        release = threading.Event()

        def slow() -> str:
            release.wait(30)
            return "late"

        loading = threading.Thread(
            target=lambda: holder.get_or_set("page", "slow", slow, lock=True, lock_lease=30)
        )
        loading.start()
        try:
            with target.raw() as raw:
                deadline = time.monotonic() + 30
                while not raw.exists(":lock:page:slow") and time.monotonic() < deadline:
                    time.sleep(0.005)
            began = time.perf_counter()
            with pytest.raises(LockTimeout, match="'page', key 'slow'"):
                waiter.get_or_set("page", "slow", Loader(), lock=True, lock_wait=0.5)
            took = time.perf_counter() - began
            assert 0.5 <= took < 1.5
        finally:
            release.set()
            loading.join()
        assert waiter.get("page", "slow") == "late"


@pytest.mark.parametrize("fresh", [{}, {"stale_seconds": 30, "tags": ["t"]}])
def test_lock_wait_bounds_a_thread_waiting_for_a_load_of_the_same_cache(
    store: Target, fresh: dict[str, Any]
) -> None:
    # The docstring's promise: the others wait at most lock_wait, in this process too.
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "late"

    with cache.from_url(store.url) as c:
        loading = threading.Thread(
            target=lambda: c.get_or_set("page", "k", slow, 60, lock=True, lock_wait=20, **fresh)
        )
        loading.start()
        try:
            assert started.wait(10)
            began = time.perf_counter()
            with pytest.raises(LockTimeout, match="'page', key 'k'"):
                c.get_or_set("page", "k", Loader(), 60, lock=True, lock_wait=0.5, **fresh)
            took = time.perf_counter() - began
            assert 0.5 <= took < 1.5
        finally:
            release.set()
            loading.join()
        assert c.get("page", "k") == "late"


@pytest.mark.parametrize("fresh", [{}, {"stale_seconds": 30, "tags": ["t"]}])
async def test_lock_wait_bounds_a_task_waiting_for_a_load_of_the_same_cache(
    store: Target, fresh: dict[str, Any]
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        started.set()
        await asyncio.wait_for(release.wait(), 10)
        return "late"

    async with cache.from_url_async(store.url) as c:
        loading = asyncio.create_task(
            c.get_or_set("page", "k", slow, 60, lock=True, lock_wait=20, **fresh)
        )
        try:
            await asyncio.wait_for(started.wait(), 10)
            began = time.perf_counter()
            with pytest.raises(LockTimeout, match="'page', key 'k'"):
                await c.get_or_set("page", "k", Loader(), 60, lock=True, lock_wait=0.5, **fresh)
            took = time.perf_counter() - began
            assert 0.5 <= took < 1.5
        finally:
            release.set()
            assert await loading == "late"
        assert await c.get("page", "k") == "late"


class MissThenPause(RedisDriver):
    """The real driver, but the first GET of thread ``late`` waits after its reply, until told.

    It puts a caller exactly where a loaded machine can: it has seen the miss,
    and not yet joined the flight, when the flight ends.
    """

    def __init__(self, url: str) -> None:
        super().__init__(RedisConfig.from_url(url))
        self.missed = threading.Event()
        self.go_on = threading.Event()

    def get(self, resource_type: str, key: str) -> str | None:
        value = super().get(resource_type, key)
        if threading.current_thread().name == "late" and not self.missed.is_set():
            self.missed.set()
            self.go_on.wait(30)
        return value


def test_a_caller_that_missed_just_before_a_load_ended_does_not_load_again(
    server_target: Target,
) -> None:
    driver = MissThenPause(server_target.url)
    loader = Loader()
    results: list[str] = []
    with cache.new(driver=driver) as c:
        late = threading.Thread(
            target=lambda: results.append(c.get_or_set("page", "home", loader)), name="late"
        )
        late.start()
        try:
            assert driver.missed.wait(30)
            assert c.get_or_set("page", "home", loader) == "loaded"  # loads, stores, ends
        finally:
            driver.go_on.set()
            late.join()
    assert results == ["loaded"]
    assert loader.calls == 1


class AsyncMissThenPause(AsyncRedisDriver):
    """:class:`MissThenPause` for the async face: the first GET of task ``late`` waits."""

    def __init__(self, url: str) -> None:
        super().__init__(RedisConfig.from_url(url))
        self.missed = asyncio.Event()
        self.go_on = asyncio.Event()

    async def get(self, resource_type: str, key: str) -> str | None:
        value = await super().get(resource_type, key)
        task = asyncio.current_task()
        if task is not None and task.get_name() == "late" and not self.missed.is_set():
            self.missed.set()
            await self.go_on.wait()
        return value


async def test_a_task_that_missed_just_before_a_load_ended_does_not_load_again(
    server_target: Target,
) -> None:
    driver = AsyncMissThenPause(server_target.url)
    loader = Loader()
    async with cache.new_async(driver=driver) as c:
        late = asyncio.create_task(c.get_or_set("page", "home", loader.load_async), name="late")
        await asyncio.wait_for(driver.missed.wait(), 30)
        assert await c.get_or_set("page", "home", loader.load_async) == "loaded"
        driver.go_on.set()
        assert await asyncio.wait_for(late, 30) == "loaded"
    assert loader.calls == 1
