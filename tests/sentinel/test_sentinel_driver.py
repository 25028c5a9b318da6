"""The Sentinel mode on a real primary, replica and three sentinels started by the tests.

The conformance suite runs on both faces; every other test is parametrized over
the faces (:data:`faces.FACES`), and those that kill or pause a node get a
topology of their own per face.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio

from pevensie_cache import AsyncPevensieCache, cache
from pevensie_cache.cache import PevensieCache
from pevensie_cache.testing import AsyncCacheConformance, CacheConformance
from pevensie_redis import (
    AsyncRedisSentinelDriver,
    RedisAuthenticationError,
    RedisConnectionError,
    RedisDriverError,
    RedisSentinelDriver,
    RedisTimeoutError,
)
from pevensie_redis.testing.binaries import free_port
from pevensie_redis.testing.tls import TLSMaterial
from pevensie_test_support import LocalSentinel
from pevensie_test_support.faces import FACES, new_face, replicated

# The outcome depends on the server: Sentinel is the server's.
pytestmark = pytest.mark.server_dependent

FAILOVER_BOUND = 20.0
"""Seconds within which the same cache object must write and read again after the primary dies.

With down-after-milliseconds 1000 the sentinels promote the replica in about
2-3 s here; the bound leaves room for a loaded CI machine.
"""


def sentinel_url(topology: LocalSentinel, password: str | None = None, query: str = "") -> str:
    userinfo = f":{password}@" if password else ""
    hosts = ",".join(f"{host}:{port}" for host, port in topology.sentinels)
    return f"redis+sentinel://{userinfo}{hosts}/{topology.service_name}{query}"


def stored(topology: LocalSentinel) -> set[str]:
    with topology.current_primary().client() as raw:
        return {str(key) for key in raw.scan_iter(count=1000)}


@pytest.fixture
def sentinel_cache(
    redis_sentinel: LocalSentinel, topology_password: str
) -> Iterator[PevensieCache]:
    with redis_sentinel.current_primary().client() as raw:
        raw.flushall()
    c = cache.from_url(sentinel_url(redis_sentinel, topology_password)).connect()
    yield c
    if c.connected:
        c.disconnect()


class TestSentinelConformance(CacheConformance):
    """The whole conformance suite, through the sentinels (password-protected data nodes)."""

    @pytest.fixture
    def cache_under_test(self, sentinel_cache: PevensieCache) -> PevensieCache:
        return sentinel_cache

    @pytest.fixture
    def stored_keys(self, redis_sentinel: LocalSentinel) -> Callable[[], set[str]]:
        return lambda: stored(redis_sentinel)


class TestAsyncSentinelConformance(AsyncCacheConformance):
    """The whole conformance suite on the async face, through the sentinels."""

    @pytest_asyncio.fixture
    async def cache_under_test(
        self, redis_sentinel: LocalSentinel, topology_password: str
    ) -> AsyncIterator[AsyncPevensieCache]:
        with redis_sentinel.current_primary().client() as raw:
            raw.flushall()
        url = sentinel_url(redis_sentinel, topology_password)
        c = await cache.from_url_async(url).connect()
        yield c
        if c.connected:
            await c.disconnect()

    @pytest.fixture
    def stored_keys(self, redis_sentinel: LocalSentinel) -> Callable[[], set[str]]:
        return lambda: stored(redis_sentinel)


@pytest.fixture(params=FACES)
def face_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


DRIVER_OF_FACE = {"sync": RedisSentinelDriver, "async": AsyncRedisSentinelDriver}


def test_url_and_keywords_build_the_sentinel_driver(
    redis_sentinel: LocalSentinel, topology_password: str, face_name: str
) -> None:
    by_url = new_face(face_name, sentinel_url(redis_sentinel, topology_password)).cache
    by_name = new_face(
        face_name,
        sentinels=redis_sentinel.sentinels,
        service_name=redis_sentinel.service_name,
        password=topology_password,
    ).cache
    assert type(by_url.driver) is DRIVER_OF_FACE[face_name]
    assert type(by_name.driver) is DRIVER_OF_FACE[face_name]
    assert by_url.driver.config == by_name.driver.config
    assert topology_password not in repr(by_url)


async def test_writes_go_to_the_primary_and_reach_the_replica(
    redis_sentinel: LocalSentinel, topology_password: str, face_name: str
) -> None:
    c = new_face(face_name, sentinel_url(redis_sentinel, topology_password))
    await c.connect()
    try:
        await c.set("user", "42", f"Ada ({face_name})")
        await c.set_many("user", {"1": "one", "2": face_name}, ttl_seconds=60)
    finally:
        await c.disconnect()
    with redis_sentinel.primary.client() as raw:
        assert raw.get("user:42") == f"Ada ({face_name})"
    replicated(redis_sentinel.primary)
    with redis_sentinel.replica.client() as raw:
        assert raw.mget(["user:42", "user:1", "user:2"]) == [
            f"Ada ({face_name})",
            "one",
            face_name,
        ]


async def test_tls_sentinels_and_primary_with_a_trusted_ca(
    tls_sentinel: LocalSentinel, tls_material: TLSMaterial, face_name: str
) -> None:
    url = sentinel_url(tls_sentinel, query=f"?tls_ca_file={tls_material.ca_file}")
    c = new_face(face_name, url.replace("redis+sentinel://", "rediss+sentinel://"))
    await c.connect()
    try:
        await c.set("user", "42", "Ada", ttl_seconds=60)
        await c.set_many("user", {"1": "one", "2": "two"})
        assert await c.get("user", "42") == "Ada"
        assert await c.get_many("user", ["1", "2", "3"]) == {"1": "one", "2": "two"}
        assert stored(tls_sentinel) >= {"user:42", "user:1", "user:2"}
    finally:
        await c.disconnect()


async def test_tls_with_an_untrusted_ca_is_refused(
    tls_sentinel: LocalSentinel, tls_material: TLSMaterial, face_name: str
) -> None:
    c = new_face(
        face_name,
        sentinels=tls_sentinel.sentinels,
        service_name=tls_sentinel.service_name,
        tls=True,
        tls_ca_file=str(tls_material.untrusted_ca_file),
        timeout=1000,
    )
    with pytest.raises(RedisConnectionError, match="certificate verification failed"):
        await c.connect()
    assert not c.cache.connected


async def test_wrong_password_is_an_authentication_error(
    redis_sentinel: LocalSentinel, topology_password: str, face_name: str
) -> None:
    c = new_face(face_name, sentinel_url(redis_sentinel, "not-the-password"))
    with pytest.raises(RedisAuthenticationError) as caught:
        await c.connect()
    assert "not-the-password" not in str(caught.value)
    assert topology_password not in str(caught.value)
    assert not c.cache.connected


async def test_unknown_service_is_a_connection_error(
    redis_sentinel: LocalSentinel, face_name: str
) -> None:
    hosts = ",".join(f"{host}:{port}" for host, port in redis_sentinel.sentinels)
    c = new_face(face_name, f"redis+sentinel://{hosts}/no-such-service")
    with pytest.raises(RedisConnectionError, match="no-such-service") as caught:
        await c.connect()
    assert "does not monitor" in str(caught.value)
    assert "redis.client.Redis" not in str(caught.value)  # no client reprs in the message


async def test_no_sentinel_answering_is_a_connection_error(face_name: str) -> None:
    c = new_face(
        face_name,
        sentinels=[("127.0.0.1", free_port()), ("127.0.0.1", free_port())],
        service_name="pevensie",
        timeout=500,
    )
    started = time.monotonic()
    with pytest.raises(RedisConnectionError) as caught:
        await c.connect()
    assert time.monotonic() - started < 10
    assert "no sentinel names a primary" in str(caught.value)
    assert not c.cache.connected


async def test_an_unresponsive_primary_times_out_and_is_served_again_after(
    steady_sentinel: LocalSentinel, face_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    timeout_ms, retries = 500, 1
    query = f"?timeout={timeout_ms}&retries={retries}"
    c = new_face(face_name, sentinel_url(steady_sentinel, query=query))
    await c.connect()
    try:
        await c.set("user", "42", "Ada")
        primary = steady_sentinel.current_primary()
        assert primary.pid is not None
        os.kill(primary.pid, signal.SIGSTOP)
        took = []
        try:
            bound = (retries + 1) * timeout_ms / 1000 + 2.0
            for call in (
                lambda: c.get("user", "42"),
                lambda: c.set_many("user", {"1": "x", "2": "y"}, ttl_seconds=5),
            ):
                started = time.monotonic()
                with pytest.raises(RedisTimeoutError):
                    await call()
                took.append(time.monotonic() - started)
                assert took[-1] < bound
        finally:
            os.kill(primary.pid, signal.SIGCONT)
        assert await c.get("user", "42") == "Ada"
        with capsys.disabled():
            print(
                f"\n[sentinel primary paused, {face_name} face] RedisTimeoutError after "
                + ", ".join(f"{seconds:.3f} s" for seconds in took)
                + f" (timeout={timeout_ms}, retries={retries})"
            )
    finally:
        await c.disconnect()


async def test_failover_to_the_replica_is_followed_by_the_same_cache(
    fresh_sentinel: LocalSentinel, face_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    c = new_face(face_name, sentinel_url(fresh_sentinel, query="?timeout=1000"))
    await c.connect()
    try:
        items = {f"k{i}": f"v{i}" for i in range(100)}
        await c.set_many("bulk", items)
        await c.set("user", "42", "Ada")
        old = fresh_sentinel.current_primary()
        replicated(old)  # the replica holds every write before the primary dies

        fresh_sentinel.kill_primary()
        killed_at = time.monotonic()
        failures = 0
        while True:
            try:
                await c.set("user", "43", "written after the failover")
                assert await c.get("user", "43") == "written after the failover"
                break
            except RedisDriverError:
                failures += 1
                assert time.monotonic() - killed_at < FAILOVER_BOUND, "no failover in time"
                await asyncio.sleep(0.05)
        served_after = time.monotonic() - killed_at

        new = fresh_sentinel.current_primary()
        assert new is fresh_sentinel.replica
        assert new is not old
        with new.client() as raw:
            assert raw.execute_command("ROLE")[0] == "master"
            assert raw.get("user:43") == "written after the failover"
        assert await c.get("user", "42") == "Ada"
        assert await c.get_many("bulk", list(items)) == items
        with capsys.disabled():
            print(
                f"\n[sentinel failover, {face_name} face] primary killed -> same cache wrote "
                f"and read again after {served_after:.2f} s ({failures} failed calls meanwhile)"
            )
    finally:
        await c.disconnect()
