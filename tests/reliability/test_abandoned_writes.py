"""A write its caller abandoned (cancelled, timed out, interrupted) never lands after a later one.

Sent, an abandoned command runs on the server all the same, after whatever is
queued before it on its connection. With commands of many callers spread over
several connections, the caller's next command on the same key could go to a
less busy one and run first: the abandoned ``set`` then overwrote the newer
value, or brought back a key just deleted. Commands on the key of an abandoned
one now go to its connection until it has run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import textwrap
import time

from reliability_support import ServerFactory, connect_async_cache

from pevensie_redis.channel_async import Channel
from pevensie_redis.endpoint import Endpoint
from pevensie_redis.protocol.commands import pack
from pevensie_redis.testing import RedisServer

TASKS = 32
SECONDS = 3.0


async def test_a_cancelled_set_never_lands_after_the_next_write_of_its_key(
    private_server: RedisServer,
) -> None:
    c = await connect_async_cache(private_server, pool_size=4, timeout=2000)
    checks = 0
    wrong: list[str] = []
    end = time.monotonic() + SECONDS

    async def worker(n: int) -> None:
        nonlocal checks
        rng = random.Random(n)
        key = f"k{n}"
        i = 0
        while time.monotonic() < end:
            i += 1
            # Abandoned about a quarter of the time: mid-flight, or before it went out. Values
            # of 100 kB keep a connection busy, so commands spread over the others.
            old = f"old-{i}-" + "x" * rng.choice((10, 1000, 100_000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(c.set("w", key, old), rng.random() / 300)
            if i % 2:
                await c.set("w", key, "new")
                found = await c.get("w", key, None)
                if found != "new":
                    wrong.append(f"{key}: {found!r:.40} after a set")
            else:
                await c.delete("w", key)
                found = await c.get("w", key, None)
                if found is not None:
                    wrong.append(f"{key}: {found!r:.40} after a delete")
            checks += 1

    try:
        await asyncio.gather(*(worker(n) for n in range(TASKS)))
    finally:
        await c.disconnect()
    assert checks > 1000, checks  # enough traffic to have crossed connections
    assert wrong == [], f"{len(wrong)} of {checks}: {wrong[:5]}"


_GEVENT = """
from gevent import monkey

monkey.patch_all()

import json, random, sys, time
import gevent
from pevensie_cache import cache

host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
c = cache.new(driver="redis", host=host, port=port, pool_size=4, timeout=2000).connect()
checks, wrong = [0], []
end = time.monotonic() + seconds

def worker(n):
    rng = random.Random(n)
    key = f"k{n}"
    i = 0
    while time.monotonic() < end:
        i += 1
        old = f"old-{i}-" + "x" * rng.choice((10, 1000, 100_000))
        try:
            with gevent.Timeout(rng.random() / 300):
                c.set("w", key, old)
        except gevent.Timeout:
            pass
        c.set("w", key, "new")
        found = c.get("w", key, None)
        if found != "new":
            wrong.append(f"{key}: {found!r:.40}")
        checks[0] += 1

gevent.joinall([gevent.spawn(worker, n) for n in range(32)])
c.disconnect()
print(json.dumps({"checks": checks[0], "wrong": wrong[:5], "count": len(wrong)}))
"""


def test_an_interrupted_set_never_lands_after_the_next_write_of_its_key_under_gevent(
    private_server: RedisServer,
) -> None:
    ran = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(_GEVENT),
            private_server.host,
            str(private_server.port),
            str(SECONDS),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    found = json.loads(ran.stdout.strip().splitlines()[-1])
    assert found["checks"] > 1000, found
    assert found["count"] == 0, found


async def test_the_keys_of_abandoned_writes_are_forgotten_once_they_ran(
    private_server: RedisServer,
) -> None:
    # Remembered only until the abandoned command has its reply: then every command goes
    # the usual way again, at the cost of one check of an empty table.
    c = await connect_async_cache(private_server, timeout=2000)
    channel = c.driver._channel  # type: ignore[attr-defined]
    try:
        with private_server.client() as raw:
            raw.execute_command("CLIENT", "PAUSE", "300", "WRITE")
        task = asyncio.create_task(c.set("w", "k", "old"))
        await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert list(channel._after) == [b"w:k"]
        await c.set("w", "k", "new")  # after the abandoned one, on its connection
        await asyncio.sleep(0.1)
        await c.get("w", "other", None)
        assert channel._after == {}
        assert await c.get("w", "k") == "new"
    finally:
        await c.disconnect()


async def test_after_a_failover_a_write_never_follows_an_abandoned_one_to_the_old_primary(
    pevensie_redis_server_factory: ServerFactory,
) -> None:
    old, new = pevensie_redis_server_factory(), pevensie_redis_server_factory()
    current = [endpoint_of(old)]

    async def resolve() -> Endpoint:
        return current[0]

    channel = Channel(resolve, 4, 1, follows_primary=True, timeout=3.0)
    try:
        await channel.execute(pack([b"PING"]), "PING")
        with old.client() as raw:
            raw.execute_command("CLIENT", "PAUSE", "500", "WRITE")
        task = asyncio.create_task(channel.execute(pack([b"SET", b"k", b"old"]), "SET"))
        await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        current[0] = endpoint_of(new)  # the sentinels now name another primary
        with channel._lock:
            channel._retire_all_but(current[0].label)
        await channel.execute(pack([b"SET", b"k", b"new"]), "SET")
        with new.client() as raw:
            assert raw.get("k") == "new"
    finally:
        await channel.close()


def endpoint_of(server: RedisServer) -> Endpoint:
    return Endpoint(
        label=f"{server.host}:{server.port}", host=server.host, port=server.port, timeout=3.0
    )
