"""Large values travel on a connection of their own, so small commands never queue behind them.

A command carrying more than 256 KiB, or a read whose reply was that large
not long ago, goes to the channel's large connection (while ``pool_size``
allows); a connection receiving a reply of more than 256 KiB takes no new
command. Both faces share this logic (the channel is generated from one
source); the sync face is checked here, the async one through the same code.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from pevensie_cache import cache
from pevensie_redis.pipe_core import LARGE_REPLY
from pevensie_redis.testing import RedisServer

BIG = "x" * (2 * 1024 * 1024)  # 2 MiB: far above the 256 KiB mark


def channel_of(c: Any) -> Any:
    return c.driver._channel


def test_a_large_write_and_the_reads_of_its_key_go_to_a_connection_of_their_own(
    pevensie_redis_server: RedisServer,
) -> None:
    with cache.new(
        driver="redis", host=pevensie_redis_server.host, port=pevensie_redis_server.port
    ) as c:
        channel = channel_of(c)
        c.set("small", "1", "one")
        shared = channel.pipes
        c.set("big", "1", BIG)  # a large command: the large connection
        bulk = channel._bulk
        assert bulk is not None
        assert bulk not in shared
        assert c.get("big", "1") == BIG  # read on a shared pipe: now remembered as large
        assert c.get("big", "1") == BIG
        assert channel.pipes == shared  # no new shared pipe for it
        assert c.get("small", "1") == "one"
        assert channel._bulk is bulk


def test_a_pipe_receiving_a_large_reply_takes_no_new_command(
    pevensie_redis_server: RedisServer,
) -> None:
    with cache.new(
        driver="redis",
        host=pevensie_redis_server.host,
        port=pevensie_redis_server.port,
        pool_size=4,
    ) as c:
        channel = channel_of(c)
        c.set("big", "1", BIG)
        [pipe] = channel.pipes
        pipe._partial = LARGE_REPLY + 1  # as it is while a large reply arrives
        try:
            assert pipe.receiving_large
            assert c.get("small", "absent", None) is None  # served elsewhere
            others = [p for p in channel.pipes if p is not pipe]
            assert others, "another pipe was opened for the new command"
        finally:
            pipe._partial = 0


async def test_once_the_large_reply_is_in_small_commands_fill_the_first_pipe_again(
    pevensie_redis_server: RedisServer,
) -> None:
    # The pipe opened while the first one received a large reply stays open, for the
    # overflow only: commands spread evenly over two pipes would share a write and a
    # read half as often.
    c = await cache.new_async(
        driver="redis",
        host=pevensie_redis_server.host,
        port=pevensie_redis_server.port,
        pool_size=4,
    ).connect()
    try:
        channel = channel_of(c)
        await c.set("small", "1", "one")
        [first] = channel.pipes
        first._partial = LARGE_REPLY + 1  # as it is while a large reply arrives
        try:
            assert await c.get("small", "1") == "one"  # served by a pipe opened for it
        finally:
            first._partial = 0
        [second] = [p for p in channel.pipes if p is not first]
        before = (first.last_reply, second.last_reply)
        await asyncio.sleep(0.01)  # so that a reply on either pipe moves its clock
        values = await asyncio.gather(*[c.get("small", "1") for _ in range(20)])
        assert values == ["one"] * 20
        assert first.last_reply > before[0]
        assert second.last_reply == before[1], "commands went to the second pipe"
    finally:
        await c.disconnect()


def test_small_reads_keep_their_values_while_another_thread_reads_a_large_one(
    pevensie_redis_server: RedisServer,
) -> None:
    with cache.new(
        driver="redis", host=pevensie_redis_server.host, port=pevensie_redis_server.port
    ) as c:
        c.set("big", "1", BIG)
        c.set_many("small", {str(i): f"v{i}" for i in range(50)}, None)
        stop = threading.Event()
        errors: list[str] = []

        def read_big() -> None:
            while not stop.is_set():
                if c.get("big", "1") != BIG:
                    errors.append("the large value came back wrong")

        reader = threading.Thread(target=read_big)
        reader.start()
        try:
            for round_ in range(20):
                for i in range(50):
                    assert c.get("small", str(i)) == f"v{i}", round_
        finally:
            stop.set()
            reader.join(timeout=30)
        assert errors == []


@pytest.mark.parametrize("size", [LARGE_REPLY - 100, LARGE_REPLY + 100, 4 * LARGE_REPLY])
async def test_values_around_the_mark_round_trip_on_the_async_face(
    pevensie_redis_server: RedisServer, size: int
) -> None:
    c = await cache.new_async(
        driver="redis", host=pevensie_redis_server.host, port=pevensie_redis_server.port
    ).connect()
    try:
        value = "y" * size
        await c.set("sized", str(size), value)
        results = await asyncio.gather(
            c.get("sized", str(size)), c.get("sized", "absent", None), c.get("sized", str(size))
        )
        assert results == [value, None, value]
    finally:
        await c.disconnect()


@pytest.mark.parametrize("reader", ["hiredis", "python"])
def test_a_large_reply_split_anywhere_reads_back_whole_with_either_reader(
    pevensie_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    """Large bulk strings bypass the reader; what follows them in the same read does not."""
    if reader == "python":
        from pevensie_redis import pipe_core
        from pevensie_redis.protocol.resp import Resp2Reader

        monkeypatch.setattr(pipe_core, "make_reader", Resp2Reader)
    with cache.new(
        driver="redis", host=pevensie_redis_server.host, port=pevensie_redis_server.port
    ) as c:
        values = {str(n): chr(65 + n) * (LARGE_REPLY + 1 + n * 7919) for n in range(6)}
        c.set_many("split", values, None)
        c.set("split", "small", "s")
        for _ in range(3):
            # A batch: large replies and a small one in one stream, read in whatever pieces.
            assert c.get_many("split", [*values, "small"]) == {**values, "small": "s"}
            for key, value in values.items():
                assert c.get("split", key) == value
                assert c.get("split", "small") == "s"
