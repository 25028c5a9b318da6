"""The async face of the Redis driver passes the core's conformance suite, against a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio

from pevensie_cache import AsyncPevensieCache, cache
from pevensie_cache.testing import AsyncCacheConformance
from pevensie_redis.testing.servers import RedisServer


class TestAsyncRedisConformance(AsyncCacheConformance):
    @pytest_asyncio.fixture
    async def cache_under_test(
        self, pevensie_redis_server: RedisServer
    ) -> AsyncIterator[AsyncPevensieCache]:
        pevensie_redis_server.ensure_running()
        with pevensie_redis_server.client() as raw:
            raw.flushdb()
        c = await cache.from_url_async(pevensie_redis_server.url).connect()
        yield c
        if c.connected:
            await c.disconnect()

    @pytest.fixture
    def stored_keys(self, pevensie_redis_server: Any) -> Iterator[Callable[[], set[str]]]:
        raw = pevensie_redis_server.client()

        def keys() -> set[str]:
            return {k if isinstance(k, str) else k.decode() for k in raw.scan_iter(count=1000)}

        yield keys
        raw.close()
