"""Turning the near cache on: configuration, the driver and its statistics, refusals at connect."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from near_support import FACES, near_url, open_face
from tracking_servers import tracking_server

from pevensie_cache import ConfigError, cache
from pevensie_redis import RedisConfig
from pevensie_redis.driver import NearRedisDriver
from pevensie_redis.driver_async import AsyncNearRedisDriver
from pevensie_redis.testing import RedisServer
from pevensie_test_support import loops

LISTENER_THREAD = "pevensie-near-cache-invalidations"


def listener_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == LISTENER_THREAD and t.is_alive()]


def test_url_and_keywords_turn_the_near_cache_on() -> None:
    by_url = cache.from_url("redis://127.0.0.1:6379/0?near_cache=true&near_cache_size=50")
    by_name = cache.new(driver="redis", host="127.0.0.1", near_cache=True, near_cache_size=50)
    assert isinstance(by_url.driver, NearRedisDriver)
    assert by_url.driver.config == by_name.driver.config
    assert by_url.driver.config.near_cache_size == 50
    assert isinstance(cache.new_async(driver="redis", near_cache=True).driver, AsyncNearRedisDriver)
    assert RedisConfig().near_cache is False


def test_the_near_cache_drivers_and_their_stats_are_importable_from_the_package() -> None:
    # What the near-cache guide narrows c.driver with, for near_cache_stats() to type-check.
    import pevensie_redis
    from pevensie_redis.near import NearStats

    url = "redis://127.0.0.1:6379/0?near_cache=true"
    cluster = url + "&cluster=true"
    assert isinstance(cache.from_url(url).driver, pevensie_redis.NearRedisDriver)
    assert isinstance(cache.from_url(cluster).driver, pevensie_redis.NearRedisClusterDriver)
    assert isinstance(cache.from_url_async(url).driver, pevensie_redis.AsyncNearRedisDriver)
    assert isinstance(
        cache.from_url_async(cluster).driver, pevensie_redis.AsyncNearRedisClusterDriver
    )
    assert pevensie_redis.NearStats is NearStats


def test_the_byte_bound_takes_units_in_urls_and_keywords_and_shows_them_back() -> None:
    url = "redis://127.0.0.1:6379/0?near_cache=true&near_cache_max_bytes=8MiB"
    by_url = cache.from_url(url).driver.config
    by_name = cache.new(driver="redis", host="127.0.0.1", near_cache=True,
                        near_cache_max_bytes="8388608").driver.config  # fmt: skip
    assert by_url == by_name
    assert by_url.near_cache_max_bytes == 8 << 20
    assert "near_cache_max_bytes=8MiB" in by_url.display_url()
    assert RedisConfig.from_url(by_url.display_url()) == by_url
    assert RedisConfig().near_cache_max_bytes == 64 << 20
    async_config = cache.new_async(driver="redis", near_cache=True, near_cache_max_bytes="512kB")
    assert async_config.driver.config.near_cache_max_bytes == 512_000
    with pytest.raises(ConfigError, match="must be an int"):
        RedisConfig(near_cache=True, near_cache_max_bytes="8MiB")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"near_cache": True, "near_cache_size": 0}, "near_cache_size"),
        ({"near_cache": True, "near_cache_max_bytes": "1kb"}, r"at least 1024 \(bytes\), got 1000"),
        ({"near_cache": True, "near_cache_max_bytes": "8 MegaB"}, "unknown unit 'MegaB'"),
        ({"near_cache": True, "near_cache_max_byte": "8MiB"}, "did you mean 'near_cache_max_b"),
    ],
)
def test_a_near_cache_it_cannot_have_is_a_configuration_error(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        cache.new(driver="redis", **options)


@pytest.mark.parametrize("kind", FACES)
def test_stats_count_hits_misses_and_entries_and_are_none_when_disconnected(
    kind: str, pevensie_redis_server: RedisServer
) -> None:
    pevensie_redis_server.ensure_running()
    face = open_face(kind, near_url(pevensie_redis_server.url))
    try:
        start = face.stats()
        assert start.enabled
        assert (start.hits, start.misses, start.flushes, start.entries) == (0, 0, 0, 0)
        face.set("stats", "1", "one")
        face.get("stats", "1")
        face.get("stats", "absent", None)
        while face.stats().hits < 2:  # a fill may be spoiled by our own write's invalidation
            face.get("stats", "1")
            face.get("stats", "absent", None)
        stats = face.stats()
        assert stats.entries == 2
        assert stats.misses >= 2
    finally:
        face.close()
    assert face.cache.driver.near_cache_stats() is None


def refused_at_connect(kind: str, url: str) -> ConfigError:
    """Connect a near cache at ``url``; return the ConfigError, checking nothing kept running."""
    if kind == "sync":
        threads_before = len(listener_threads())
        with pytest.raises(ConfigError) as caught:
            cache.from_url(url).connect()
        assert len(listener_threads()) == threads_before
        return caught.value

    async def connect() -> tuple[ConfigError, set[asyncio.Task[object]]]:
        before = asyncio.all_tasks()
        with pytest.raises(ConfigError) as refused:
            await cache.from_url_async(url).connect()
        await asyncio.sleep(0.3)  # a listener left behind would try again by now
        left = asyncio.all_tasks() - before - {asyncio.current_task()}  # type: ignore[operator]
        return refused.value, left

    error, left = loops.run(connect())
    assert left == set()
    return error


@pytest.mark.server_dependent
@pytest.mark.parametrize("kind", FACES)
@pytest.mark.parametrize(
    ("rule", "refused"),
    [
        (["+@all", "-client"], "CLIENT ID"),
        (["+@all", "-client|tracking"], "CLIENT TRACKING"),
        (["+@all", "-subscribe"], "SUBSCRIBE"),
        (["+@all", "resetchannels"], "SUBSCRIBE"),  # SUBSCRIBE allowed, its channel not
    ],
)
def test_a_server_that_refuses_tracking_is_a_configuration_error_and_nothing_is_left_running(
    kind: str,
    rule: list[str],
    refused: str,
    pevensie_redis_server_factory: Callable[..., RedisServer],
) -> None:
    """An ACL user denied one of the commands (or the channel) the near cache needs."""
    server = pevensie_redis_server_factory()
    with server.client() as raw:
        channels = [] if "resetchannels" in rule else ["*"]
        commands = [c for c in rule if c != "resetchannels"]
        raw.acl_setuser("reader", enabled=True, passwords=["+pw"], keys=["*"], channels=channels,
                        reset_channels=True, commands=commands)  # fmt: skip
    url = f"redis://reader:pw@{server.host}:{server.port}/0?near_cache=true&timeout=1000"
    message = str(refused_at_connect(kind, url))
    assert message.startswith("near_cache needs key tracking, and the server's ACL does not allow")
    assert f"does not allow this user {refused} (it said: NOPERM" in message
    assert "acl_rule" in message
    assert "pw" not in message.replace("pevensie", "")


@pytest.mark.parametrize("kind", FACES)
@pytest.mark.parametrize(
    ("refuses", "says", "probes"),
    [
        ("TRACKING", ("the server does not know CLIENT TRACKING (it said: ", "unknown subc"), 0),
        ("BCAST", ("the server refused BCAST (it said: ", "syntax error)"), 1),
        ("REDIRECT", ("the server refused REDIRECT (it said: ", "syntax error)"), 2),
    ],
)
def test_a_server_without_the_tracking_it_needs_is_refused_at_connect_naming_what_it_lacks(
    kind: str, refuses: str, says: tuple[str, str], probes: int
) -> None:
    """A server without CLIENT TRACKING (Garnet), or without BCAST or REDIRECT (Dragonfly).

    The near cache would be served stale if it ran there, so connect() refuses it, and
    no read is ever sent.
    """
    with tracking_server(refuses) as server:
        message = str(refused_at_connect(kind, f"{server.url}?near_cache=true&timeout=1000"))
        sent = [b" ".join(command) for command in server.commands]
    assert all(part in message for part in says), message
    assert message.endswith("use Redis 6 or newer, or Valkey, or drop near_cache")
    tracking = [command for command in sent if command.upper().startswith(b"CLIENT TRACKING")]
    assert tracking[0] == b"CLIENT TRACKING ON BCAST REDIRECT 7"
    assert len(tracking) == 1 + probes  # the probes that found what was refused
    assert not any(command.upper().startswith((b"GET", b"SUBSCRIBE")) for command in sent)


def _flood(server: RedisServer, stop: threading.Event) -> None:
    """Another client writes as fast as it can: a stream of invalidations."""
    with server.client() as raw:
        n = 0
        while not stop.is_set():
            pipe = raw.pipeline(transaction=False)
            for _ in range(50):
                n += 1
                pipe.set(f"flood:{n % 1000}", "x")
            pipe.execute()


@pytest.mark.server_dependent
@pytest.mark.parametrize("kind", FACES)
def test_connect_and_disconnect_work_while_invalidations_flow(
    kind: str, pevensie_redis_server_factory: Callable[..., RedisServer]
) -> None:
    """Another client writes without pause while caches connect and disconnect, 60 times.

    Async face: the first message can arrive in the same read as the subscription's
    confirmation (it used to close the pipe: connect() failed), and a cancellation that
    lands as a message arrives can be lost in asyncio.wait_for on Python before 3.12 (it
    used to hang disconnect() for good).
    """
    server = pevensie_redis_server_factory()
    url = near_url(server.url)
    stop = threading.Event()
    flood = threading.Thread(target=_flood, args=(server, stop))
    flood.start()

    def sync_rounds(rounds: int) -> list[float]:
        took = []
        for _ in range(rounds):
            c = cache.from_url(url).connect()
            c.get("flood", "1", None)
            time.sleep(0.01)
            started = time.monotonic()
            c.disconnect()
            took.append(time.monotonic() - started)
        return took

    async def async_rounds(rounds: int) -> list[float]:
        took = []
        for _ in range(rounds):
            c = await cache.from_url_async(url).connect()
            await c.get("flood", "1", None)
            await asyncio.sleep(0.01)
            started = time.monotonic()
            await asyncio.wait_for(c.disconnect(), 10)
            took.append(time.monotonic() - started)
        return took

    try:
        took = sync_rounds(60) if kind == "sync" else loops.run(async_rounds(60))
    finally:
        stop.set()
        flood.join()
    assert max(took) < 5
