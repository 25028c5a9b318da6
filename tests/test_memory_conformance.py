"""The memory driver passes the conformance suite every driver must pass, on both faces.

Its TTL cases move the store's clock forward (``advance_time``) instead of
sleeping: the memory driver takes its clock as an argument. The suite's
default, a real sleep, is what the Redis driver's suites run on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import ClassVar

import pytest
import pytest_asyncio
from clock_support import ShiftedClock

from pevensie_cache import AsyncPevensieCache, PevensieCache, cache
from pevensie_cache.memory import AsyncMemoryDriver, MemoryDriver
from pevensie_cache.testing import AsyncCacheConformance, CacheConformance


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


class TestMemoryConformance(CacheConformance):
    options: ClassVar[dict[str, int]] = {}

    @pytest.fixture
    def cache_under_test(self, clock: ShiftedClock) -> Iterator[PevensieCache]:
        c = cache.new(driver=MemoryDriver(**self.options, clock=clock)).connect()
        yield c
        if c.connected:
            c.disconnect()

    @pytest.fixture
    def stored_keys(self, cache_under_test: PevensieCache) -> Callable[[], set[str]]:
        driver = cache_under_test.driver
        assert isinstance(driver, MemoryDriver)
        return driver.keys

    @pytest.fixture
    def advance_time(self, clock: ShiftedClock) -> Callable[[float], None]:
        return clock.advance


class TestBoundedMemoryConformance(TestMemoryConformance):
    """The same behaviour holds with an LRU bound large enough for every test."""

    options: ClassVar[dict[str, int]] = {"max_entries": 10_000}


class TestAsyncMemoryConformance(AsyncCacheConformance):
    options: ClassVar[dict[str, int]] = {}

    @pytest_asyncio.fixture
    async def cache_under_test(self, clock: ShiftedClock) -> AsyncIterator[AsyncPevensieCache]:
        c = await cache.new_async(driver=AsyncMemoryDriver(**self.options, clock=clock)).connect()
        yield c
        if c.connected:
            await c.disconnect()

    @pytest.fixture
    def stored_keys(self, cache_under_test: AsyncPevensieCache) -> Callable[[], set[str]]:
        driver = cache_under_test.driver
        assert isinstance(driver, AsyncMemoryDriver)
        return driver.store.keys

    @pytest.fixture
    def advance_time(self, clock: ShiftedClock) -> Callable[[float], Awaitable[None]]:
        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        return advance


class TestAsyncBoundedMemoryConformance(TestAsyncMemoryConformance):
    options: ClassVar[dict[str, int]] = {"max_entries": 10_000}
