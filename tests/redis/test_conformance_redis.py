"""The Redis driver passes the core's conformance suite, against a real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pevensie_cache import PevensieCache
from pevensie_cache.testing import CacheConformance


class TestRedisConformance(CacheConformance):
    @pytest.fixture
    def cache_under_test(self, pevensie_redis_cache: PevensieCache) -> PevensieCache:
        return pevensie_redis_cache

    @pytest.fixture
    def stored_keys(self, pevensie_redis_server: Any) -> Iterator[Callable[[], set[str]]]:
        raw = pevensie_redis_server.client()

        def keys() -> set[str]:
            return {k if isinstance(k, str) else k.decode() for k in raw.scan_iter(count=1000)}

        yield keys
        raw.close()
