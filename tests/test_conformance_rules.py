"""The conformance suite's rules for third-party drivers: optional operations, declared.

A driver without the optional operations declares them in ``unsupported``: the
cases that need them are skipped, and one case checks each really raises
``UnsupportedOperation``. Run here on a driver that has only the five required
operations, on the sync face and, in worker threads, on the async face (the
threaded fallback of a driver registered without an async face).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from pevensie_cache import AsyncPevensieCache, PevensieCache, ThreadedAsyncDriver, cache
from pevensie_cache.memory import MemoryDriver
from pevensie_cache.testing import AsyncCacheConformance, CacheConformance


class RequiredOnly(MemoryDriver):
    """The five required operations and the batch ones; every optional one left out."""

    add = incr = touch = clear = None  # type: ignore[assignment]
    exists = ttl_ms = None  # type: ignore[assignment]
    acquire_lock = release_lock = extend_lock = None  # type: ignore[assignment]


class LocksWithoutExtend(MemoryDriver):
    """Everything but ``extend_lock``."""

    extend_lock = None  # type: ignore[assignment]


class TestRequiredOnly(CacheConformance):
    driver_class: ClassVar[type[MemoryDriver]] = RequiredOnly
    unsupported = frozenset({"add", "incr", "touch", "clear", "ttl", "lock", "extend"})

    @pytest.fixture
    def cache_under_test(self) -> Iterator[PevensieCache]:
        with cache.new(driver=self.driver_class()) as c:
            yield c

    @pytest.fixture
    def stored_keys(self, cache_under_test: PevensieCache) -> Callable[[], set[str]]:
        driver = cache_under_test.driver
        assert isinstance(driver, MemoryDriver)
        return driver.keys


class TestLocksWithoutExtend(TestRequiredOnly):
    driver_class = LocksWithoutExtend
    unsupported = frozenset({"extend"})


class TestRequiredOnlyInThreads(AsyncCacheConformance):
    unsupported = TestRequiredOnly.unsupported

    @pytest_asyncio.fixture
    async def cache_under_test(self) -> AsyncIterator[AsyncPevensieCache]:
        async with cache.new_async(driver=ThreadedAsyncDriver(RequiredOnly())) as c:
            yield c

    @pytest.fixture
    def stored_keys(self, cache_under_test: AsyncPevensieCache) -> Callable[[], set[str]]:
        # The in-process store is the sync driver's, reached through the threaded wrapper.
        threaded = cache_under_test.driver
        assert isinstance(threaded, ThreadedAsyncDriver)
        store = threaded.sync_driver
        assert isinstance(store, MemoryDriver)
        return store.keys


def test_an_unknown_name_in_unsupported_is_an_error_not_a_silent_skip() -> None:
    class Misspelt(TestRequiredOnly):
        unsupported = frozenset({"incrr"})

    with pytest.raises(ValueError, match="the optional operations are"):
        Misspelt()._needs("incr")


def test_a_case_needing_a_declared_operation_is_skipped() -> None:
    suite: Any = TestRequiredOnly()
    with pytest.raises(pytest.skip.Exception, match="declares incr unsupported"):
        suite._needs("incr")
    suite._needs("exists")  # not optional: never skipped
