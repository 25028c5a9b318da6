"""fail_open=True against a real server that dies, stalls and comes back, on both faces.

A killed server reads as misses and takes writes as no-ops, a paused one the
same after ``timeout``; when it is back the same cache serves again; a cache
built while the server is down connects all the same and finds it later.
Authentication errors still raise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

import pytest

from pevensie_cache import cache
from pevensie_redis import RedisAuthenticationError
from pevensie_redis.testing.servers import RedisServer


@pytest.fixture
def server(pevensie_redis_server_factory: Callable[..., RedisServer]) -> Iterator[RedisServer]:
    made = pevensie_redis_server_factory()
    yield made
    made.ensure_running()


def url_of(server: RedisServer) -> str:
    return f"redis://127.0.0.1:{server.port}/0?fail_open=true&timeout=300ms&retries=0"


def test_a_killed_server_reads_as_misses_then_serves_again(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with cache.from_url(url_of(server)) as c:
        c.set("user", "1", "Ada")
        server.kill()
        with caplog.at_level(logging.WARNING):
            assert c.get("user", "1", "fallback") == "fallback"
            c.set("user", "2", "lost")
            assert c.get_many("user", ["1", "2"]) == {}
            assert c.incr("rate", "ip") == 1
            assert c.get_or_set("page", "home", lambda: "rendered") == "rendered"
        assert "failed with RedisConnectionError" in caplog.text
        server.restart()  # the data is gone with the process; the cache serves again
        deadline = time.monotonic() + 10
        while True:
            c.set("user", "3", "back")
            if c.get("user", "3", None) == "back":
                break
            assert time.monotonic() < deadline, "the cache did not serve again"
            time.sleep(0.1)


def test_a_paused_server_reads_as_misses_after_the_timeout(server: RedisServer) -> None:
    with cache.from_url(url_of(server)) as c:
        c.set("user", "1", "Ada")
        server.pause()
        try:
            began = time.monotonic()
            assert c.get("user", "1", None) is None
            assert time.monotonic() - began < 5  # bounded by the timeout (300 ms), not hung
        finally:
            server.resume()
        assert c.get("user", "1") == "Ada"


def test_a_server_down_at_connect_is_found_once_it_is_up(server: RedisServer) -> None:
    server.kill()
    c = cache.from_url(url_of(server)).connect()  # no error: served open
    assert c.get("user", "1", None) is None
    server.restart()
    deadline = time.monotonic() + 10
    while c.get("user", "1", None) is None:
        c.set("user", "1", "Ada")
        assert time.monotonic() < deadline, "the cache never connected"
        time.sleep(0.2)
    assert c.get("user", "1") == "Ada"
    c.disconnect()


def test_the_async_face_fails_open_too(server: RedisServer) -> None:
    async def main() -> None:
        async with cache.from_url_async(url_of(server)) as c:
            await c.set("user", "1", "Ada")
            server.kill()
            assert await c.get("user", "1", "fallback") == "fallback"
            await c.set("user", "1", "lost")
            assert await c.exists("user", "1") is False
            server.restart()
            deadline = time.monotonic() + 10
            while (await c.get("user", "9", None)) is None:
                await c.set("user", "9", "back")
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)

    asyncio.run(main())


def test_wrong_credentials_still_raise(
    pevensie_redis_server_factory: Callable[..., RedisServer],
) -> None:
    guarded = pevensie_redis_server_factory(["--requirepass", "right-one"])
    url = f"redis://:wrong-one@127.0.0.1:{guarded.port}/0?fail_open=true"
    with pytest.raises(RedisAuthenticationError):
        cache.from_url(url).connect()


def _multi_round_trip_calls(c: object) -> list[tuple[str, Callable[[], object]]]:
    tags = ["team:1", "team:2", "team:3"]
    return [
        ("get_or_set", lambda: c.get_or_set("page", "p", lambda: "loaded", 60)),  # type: ignore[attr-defined]
        (
            "get_or_set, tags and a lock",
            lambda: c.get_or_set("page", "q", lambda: "loaded", 60, lock=True, tags=tags),  # type: ignore[attr-defined]
        ),
        ("set with tags", lambda: c.set("page", "r", "v", 60, tags=tags)),  # type: ignore[attr-defined]
        ("invalidate_tags", lambda: c.invalidate_tags(*tags)),  # type: ignore[attr-defined]
    ]


def test_a_call_of_several_round_trips_waits_for_one_timeout_on_a_paused_server(
    server: RedisServer,
) -> None:
    # Each round trip used to wait its own timeout: four for a locked, tagged get_or_set.
    timeout = 0.5
    url = f"redis://{server.host}:{server.port}/0?fail_open=true&timeout=500ms&retries=0"
    with cache.from_url(url) as c:
        c.set("user", "1", "Ada")  # connected
        server.pause()
        try:
            for name, run in _multi_round_trip_calls(c):
                began = time.monotonic()
                result = run()
                took = time.monotonic() - began
                assert took < timeout * 2.5, f"{name} took {took:.2f} s"
                if name.startswith("get_or_set"):
                    assert result == "loaded"  # served open: the loader's value
        finally:
            server.resume()
        assert c.get_or_set("page", "p", lambda: "again", 60) == "again"  # nothing was stored


def test_the_async_face_waits_for_one_timeout_per_call_too(server: RedisServer) -> None:
    timeout = 0.5
    url = f"redis://{server.host}:{server.port}/0?fail_open=true&timeout=500ms&retries=0"

    async def main() -> None:
        async with cache.from_url_async(url) as c:
            await c.set("user", "1", "Ada")
            server.pause()
            try:
                for name, run in _multi_round_trip_calls(c):
                    began = time.monotonic()
                    result = await run()  # type: ignore[misc]
                    took = time.monotonic() - began
                    assert took < timeout * 2.5, f"{name} took {took:.2f} s"
                    if name.startswith("get_or_set"):
                        assert result == "loaded"
            finally:
                server.resume()

    asyncio.run(main())


def test_a_locked_get_or_set_on_a_paused_server_waits_for_one_timeout(server: RedisServer) -> None:
    # The lease waiters' subscription to lock releases used to wait out a timeout of its
    # own once the call's first round trip had been served open.
    timeout = 0.5
    url = f"redis://{server.host}:{server.port}/0?fail_open=true&timeout=500ms&retries=0"
    with cache.from_url(url) as c:
        c.set("user", "1", "Ada")
        server.pause()
        try:
            began = time.monotonic()
            assert c.get_or_set("page", "l", lambda: "loaded", 60, lock=True) == "loaded"
            took = time.monotonic() - began
        finally:
            server.resume()
        assert took < timeout * 1.9, f"took {took:.2f} s"
