"""``rediss://`` against a server that speaks plain Redis fails at once, naming the fix.

Before, the TLS handshake waited for the whole ``timeout`` and ended in a
``RedisTimeoutError`` that said nothing of TLS; the troubleshooting table
promises a ``RedisProtocolError`` with a hint.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from pevensie_cache import cache
from pevensie_redis import RedisConnectionError, RedisProtocolError
from pevensie_redis.testing.servers import RedisServer

TIMEOUT_MS = 5000


@pytest.mark.parametrize("query", ["", "&cluster=true"], ids=["server", "cluster-seed"])
def test_tls_to_a_plain_server_is_a_protocol_error_long_before_the_timeout(
    pevensie_redis_server: RedisServer, query: str
) -> None:
    pevensie_redis_server.ensure_running()
    url = f"rediss://127.0.0.1:{pevensie_redis_server.port}/0?timeout={TIMEOUT_MS}{query}"
    began = time.monotonic()
    with pytest.raises(RedisProtocolError) as caught:
        cache.from_url(url).connect()
    assert time.monotonic() - began < TIMEOUT_MS / 1000  # within the timeout, not after it
    message = str(caught.value)
    assert "speaks Redis without TLS" in message
    assert "use redis://" in message
    assert isinstance(caught.value, RedisConnectionError)


def test_the_async_face_says_the_same(pevensie_redis_server: RedisServer) -> None:
    pevensie_redis_server.ensure_running()
    url = f"rediss://127.0.0.1:{pevensie_redis_server.port}/0?timeout={TIMEOUT_MS}"

    async def connect() -> None:
        await cache.from_url_async(url).connect()

    began = time.monotonic()
    with pytest.raises(RedisProtocolError, match="speaks Redis without TLS"):
        asyncio.run(connect())
    assert time.monotonic() - began < TIMEOUT_MS / 1000


def test_a_sentinel_url_with_tls_to_plain_sentinels_says_so(
    pevensie_redis_server: RedisServer,
) -> None:
    pevensie_redis_server.ensure_running()  # a plain server stands in for the sentinel here
    url = f"rediss+sentinel://127.0.0.1:{pevensie_redis_server.port}/mymaster?timeout=5s"
    with pytest.raises(RedisProtocolError, match=r"the sentinel there speaks Redis without TLS"):
        cache.from_url(url).connect()
