"""The Redis driver passes the core's conformance suite, against a real server.

Both faces run it, plain and with the near cache on (every operation must
behave the same with reads served locally).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio

from pevensie_cache import AsyncPevensieCache, PevensieCache, cache
from pevensie_cache.testing import AsyncCacheConformance, CacheConformance
from pevensie_redis.testing.servers import RedisServer

# The outcome depends on the server: it answers every command the driver sends, and tracks
# keys for the near cache.
pytestmark = pytest.mark.server_dependent


class RawKeys:
    @pytest.fixture
    def stored_keys(self, pevensie_redis_server: Any) -> Iterator[Callable[[], set[str]]]:
        raw = pevensie_redis_server.client()

        def keys() -> set[str]:
            return {k if isinstance(k, str) else k.decode() for k in raw.scan_iter(count=1000)}

        yield keys
        raw.close()


def flushed_url(server: RedisServer, query: str) -> str:
    server.ensure_running()
    with server.client() as raw:
        raw.flushdb()
    return server.url + query


class TestRedisConformance(RawKeys, CacheConformance):
    query = ""

    @pytest.fixture
    def cache_under_test(self, pevensie_redis_server: RedisServer) -> Iterator[PevensieCache]:
        c = cache.from_url(flushed_url(pevensie_redis_server, self.query)).connect()
        yield c
        if c.connected:
            c.disconnect()


class TestNearCacheConformance(TestRedisConformance):
    query = "?near_cache=true&near_cache_size=1000"


class TestAsyncRedisConformance(RawKeys, AsyncCacheConformance):
    query = ""

    @pytest_asyncio.fixture
    async def cache_under_test(
        self, pevensie_redis_server: RedisServer
    ) -> AsyncIterator[AsyncPevensieCache]:
        c = await cache.from_url_async(flushed_url(pevensie_redis_server, self.query)).connect()
        yield c
        if c.connected:
            await c.disconnect()


class TestAsyncNearCacheConformance(TestAsyncRedisConformance):
    query = "?near_cache=true&near_cache_size=1000"
