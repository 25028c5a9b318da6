"""The large connection reads in the background while small commands are being served.

While small commands are in flight on the shared pipes, the channel's large
connection reads at most ``large_read_rate`` bytes a second (it pauses its
reading, and the server stops sending), so a transfer of megabytes leaves
the small replies the CPU they need. It is never starved: once its oldest
read has waited half its timeout it reads at full speed, so a large read
ends within its timeout; with no small traffic it is not paced at all.

The tests set ``large_read_rate`` so low that a paced read alone would take
longer than its timeout, with ``retries=0`` (a retry would hide a timeout).
How much each side gets per second is a benchmark's business
(``benchmarks/large_bench.py``), not these tests'.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from pevensie_cache import ConfigError, cache
from pevensie_redis import RedisConfig
from pevensie_redis.pipe_core import Pacer
from pevensie_redis.testing import RedisServer
from pevensie_redis.testing.tls import TLSServer

MIB = 1024 * 1024
RATE = 256 * 1024
"""The background rate the tests set: bytes a second."""
LARGE = "L" * MIB
"""Four seconds at that rate: twice the timeout of the caches below."""
SMALL = {str(i): f"v{i}" for i in range(50)}
OPTIONS: dict[str, Any] = {"timeout": "2s", "retries": 0, "large_read_rate": "256KiB"}


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Collect every pause the pacers ask for."""
    asked: list[float] = []
    pause = Pacer.pause

    def recording(self: Pacer, received: int, now: float, deadline: float, timeout: float) -> float:
        seconds = pause(self, received, now, deadline, timeout)
        asked.append(seconds)
        return seconds

    monkeypatch.setattr(Pacer, "pause", recording)
    return asked


@pytest_asyncio.fixture
async def c(pevensie_redis_server: RedisServer) -> AsyncIterator[Any]:
    """An async cache on the test server with :data:`OPTIONS` (its large reads paced)."""
    server = pevensie_redis_server
    opened = await cache.new_async(
        driver="redis", host=server.host, port=server.port, **OPTIONS
    ).connect()
    try:
        yield opened
    finally:
        await opened.disconnect()


def channel_of(c: Any) -> Any:
    return c.driver._channel


async def small_gets_and_a_large_read_alongside(c: Any) -> None:
    """Small gets in 8 tasks while the large value is read twice; both make progress."""
    await c.set("big", "1", LARGE)
    await c.set_many("small", SMALL, None)
    assert await c.get("big", "1") == LARGE  # remembered as large: the large connection next
    stop = False
    served = 0

    async def small(n: int) -> None:
        nonlocal served
        i = n
        while not stop:
            key = str(i % len(SMALL))
            assert await c.get("small", key) == SMALL[key]
            served += 1
            i += 1

    tasks = [asyncio.create_task(small(n)) for n in range(8)]
    try:
        for _ in range(2):
            before = served
            assert await c.get("big", "1") == LARGE  # a timeout error here: starved
            assert served > before, "small gets were served while the large one was read"
    finally:
        stop = True
        await asyncio.gather(*tasks)


async def small_gets_and_a_paced_large_read(c: Any, pauses: list[float]) -> None:
    await small_gets_and_a_large_read_alongside(c)
    assert any(seconds > 0 for seconds in pauses), "the large reads were paced"


async def test_small_gets_go_on_and_a_paced_large_read_ends_within_its_timeout(
    c: Any, pauses: list[float]
) -> None:
    await small_gets_and_a_paced_large_read(c, pauses)


@pytest.mark.server_dependent
async def test_a_paced_large_read_over_tls_ends_within_its_timeout(
    pevensie_redis_tls_server: TLSServer, pauses: list[float]
) -> None:
    server = pevensie_redis_tls_server
    config = RedisConfig(
        host=server.host,
        port=server.port,
        tls=True,
        tls_ca_file=str(server.ca_file),
        timeout=2000,
        retries=0,
        large_read_rate=RATE,
    )
    c = await cache.new_async(driver="redis", config=config).connect()
    try:
        await small_gets_and_a_paced_large_read(c, pauses)
    finally:
        await c.disconnect()


async def test_a_cancelled_large_read_leaves_the_large_connection_reading(
    c: Any, pauses: list[float]
) -> None:
    await c.set("big", "1", LARGE)
    await c.set_many("small", SMALL, None)
    assert await c.get("big", "1") == LARGE
    bulk = channel_of(c)._bulk
    assert bulk is not None
    stop = False

    async def small(n: int) -> None:
        i = n
        while not stop:
            key = str(i % len(SMALL))
            assert await c.get("small", key) == SMALL[key]
            i += 1

    tasks = [asyncio.create_task(small(n)) for n in range(4)]
    try:
        reading = asyncio.create_task(c.get("big", "1"))
        for _ in range(500):  # until the large connection pauses its reading
            if any(seconds > 0 for seconds in pauses):
                break
            await asyncio.sleep(0.01)
        assert any(seconds > 0 for seconds in pauses), "the large read was paced"
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        # While small gets go on: the cancelled read's reply is still read off the
        # connection (and dropped), then this one's.
        assert await c.get("big", "1") == LARGE
    finally:
        stop = True
        await asyncio.gather(*tasks)
    assert await c.get("big", "1") == LARGE  # and with no small traffic
    assert channel_of(c)._bulk is bulk
    assert not bulk.closed


async def test_with_no_small_traffic_a_large_read_is_not_paced(c: Any, pauses: list[float]) -> None:
    await c.set("big", "1", LARGE)
    await c.get("big", "1")
    await asyncio.sleep(0.1)  # the set's reply is a while back: no small command is served
    pauses.clear()
    assert await c.get("big", "1") == LARGE
    assert pauses, "the large connection's reads went through its pacer"
    assert all(seconds == 0 for seconds in pauses)


def test_small_gets_go_on_and_a_paced_large_read_ends_within_its_timeout_on_the_sync_face(
    pevensie_redis_server: RedisServer, pauses: list[float]
) -> None:
    server = pevensie_redis_server
    with cache.new(driver="redis", host=server.host, port=server.port, **OPTIONS) as c:
        c.set("big", "1", LARGE)
        c.set_many("small", SMALL, None)
        assert c.get("big", "1") == LARGE
        stop = threading.Event()
        served = [0] * 4
        errors: list[BaseException] = []

        def small(n: int) -> None:
            i = n
            try:
                while not stop.is_set():
                    key = str(i % len(SMALL))
                    if c.get("small", key) != SMALL[key]:
                        errors.append(AssertionError(f"small {key} came back wrong"))
                    served[n] += 1
                    i += 1
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=small, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(2):
                before = sum(served)
                assert c.get("big", "1") == LARGE  # a timeout error here: starved
                assert sum(served) > before, "small gets were served while the large one was read"
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert errors == []
        assert any(seconds > 0 for seconds in pauses), "the large reads were paced"


def test_the_pacer_asks_for_pauses_only_while_contended_and_before_half_the_timeout() -> None:
    contended = [False]
    pacer = Pacer(lambda: contended[0], rate=MIB)
    deadline = 100.0 + 2.0  # the oldest command was sent at 100 s, with a 2 s timeout
    assert pacer.pause(4 * MIB, 100.0, deadline, 2.0) == 0  # nothing else in flight
    contended[0] = True
    pause = pacer.pause(MIB // 2, 100.1, deadline, 2.0)
    assert 0 < pause <= 0.5  # at most what the bytes cost at the rate
    pause = pacer.pause(4 * MIB, 100.6, deadline, 2.0)
    assert pause == pytest.approx(101.0 - 100.6)  # never past half the timeout
    assert pacer.pause(MIB, 101.0, deadline, 2.0) == 0  # from then on, full speed
    assert pacer.pause(MIB, 101.5, deadline, 2.0) == 0
    contended[0] = False
    assert pacer.pause(4 * MIB, 101.6, 200.0, 2.0) == 0


async def test_a_large_read_rate_of_zero_never_paces(
    pevensie_redis_server: RedisServer, pauses: list[float]
) -> None:
    server = pevensie_redis_server
    url = f"redis://{server.host}:{server.port}/0?large_read_rate=0&retries=0"
    c = await cache.from_url_async(url).connect()
    try:
        await c.set("big", "1", LARGE)
        await c.set_many("small", SMALL, None)
        assert await c.get("big", "1") == LARGE  # remembered as large: the large connection next
        reads = [c.get("big", "1"), *(c.get("small", key) for key in SMALL)]
        got = await asyncio.gather(*reads)
        assert got == [LARGE, *SMALL.values()]
        assert channel_of(c)._bulk is not None, "the large read went to the large connection"
        assert pauses == [], "no pacer was given to the large connection"
    finally:
        await c.disconnect()


def test_large_read_rate_takes_units_and_refuses_a_negative_rate() -> None:
    assert RedisConfig.from_url("redis://h?large_read_rate=64MiB").large_read_rate == 64 << 20
    assert RedisConfig().large_read_rate == 16 << 20
    with pytest.raises(ConfigError, match="large_read_rate"):
        RedisConfig.from_url("redis://h?large_read_rate=-1")
