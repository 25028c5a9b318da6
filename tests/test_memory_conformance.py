"""The memory driver passes the conformance suite every driver must pass, on both faces."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import ClassVar

import pytest
import pytest_asyncio

from pevensie_cache import AsyncPevensieCache, PevensieCache, cache
from pevensie_cache.memory import AsyncMemoryDriver, MemoryDriver
from pevensie_cache.testing import AsyncCacheConformance, CacheConformance


class TestMemoryConformance(CacheConformance):
    options: ClassVar[dict[str, int]] = {}

    @pytest.fixture
    def cache_under_test(self) -> Iterator[PevensieCache]:
        c = cache.new(driver="memory", **self.options).connect()
        yield c
        if c.connected:
            c.disconnect()

    @pytest.fixture
    def stored_keys(self, cache_under_test: PevensieCache) -> Callable[[], set[str]]:
        driver = cache_under_test.driver
        assert isinstance(driver, MemoryDriver)
        return driver.keys


class TestBoundedMemoryConformance(TestMemoryConformance):
    """The same behaviour holds with an LRU bound large enough for every test."""

    options: ClassVar[dict[str, int]] = {"max_entries": 10_000}


class TestAsyncMemoryConformance(AsyncCacheConformance):
    options: ClassVar[dict[str, int]] = {}

    @pytest_asyncio.fixture
    async def cache_under_test(self) -> AsyncIterator[AsyncPevensieCache]:
        c = await cache.new_async(driver="memory", **self.options).connect()
        yield c
        if c.connected:
            await c.disconnect()

    @pytest.fixture
    def stored_keys(self, cache_under_test: AsyncPevensieCache) -> Callable[[], set[str]]:
        driver = cache_under_test.driver
        assert isinstance(driver, AsyncMemoryDriver)
        return driver.store.keys


class TestAsyncBoundedMemoryConformance(TestAsyncMemoryConformance):
    options: ClassVar[dict[str, int]] = {"max_entries": 10_000}
