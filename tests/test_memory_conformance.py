"""The memory driver passes the conformance suite every driver must pass."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pevensie_cache import PevensieCache, cache
from pevensie_cache.memory import MemoryDriver
from pevensie_cache.testing import CacheConformance


class TestMemoryConformance(CacheConformance):
    @pytest.fixture
    def cache(self) -> Iterator[PevensieCache]:
        c = cache.new(driver="memory").connect()
        yield c
        if c.connected:
            c.disconnect()

    @pytest.fixture
    def stored_keys(self, cache: PevensieCache) -> Callable[[], set[str]]:
        driver = cache.driver
        assert isinstance(driver, MemoryDriver)
        return driver.keys


class TestBoundedMemoryConformance(TestMemoryConformance):
    """The same behaviour holds with an LRU bound large enough for every test."""

    @pytest.fixture
    def cache(self) -> Iterator[PevensieCache]:
        c = cache.new(driver="memory", max_entries=10_000).connect()
        yield c
        if c.connected:
            c.disconnect()
