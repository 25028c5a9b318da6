"""Dropping connections never closes one under its user; idle ones close at once.

A driver drops its connections when it disconnects, and when the primary moves
(Sentinel: the channel retires the pipes to the former primary). A pipe that
still carries a command is closed only once its last reply has come; an idle
one is closed at once.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from pevensie_cache import PevensieCache, cache
from pevensie_redis.testing import RedisServer


def channel_of(c: PevensieCache) -> Any:
    return c.driver._channel  # type: ignore[attr-defined]


def two_pipes(c: PevensieCache) -> list[Any]:
    """Make the channel hold two idle shared pipes (lent out together, then given back)."""
    pool = c.driver.connection_pool  # type: ignore[attr-defined]
    lent = [pool.get_connection(), pool.get_connection()]
    for connection in lent:
        pool.release(connection)
    pipes = channel_of(c).pipes
    assert len(pipes) == 2
    return list(pipes)


def test_a_connection_in_use_survives_disconnect_and_is_closed_when_its_reply_came(
    pevensie_redis_server_factory: Any,
) -> None:
    server: RedisServer = pevensie_redis_server_factory()
    c = cache.new(driver="redis", host=server.host, port=server.port, pool_size=2).connect()
    c.set("user", "1", "Ada")
    idle, busy = two_pipes(c)
    outcome: list[object] = []
    server.pause()
    try:
        reader = threading.Thread(target=lambda: outcome.append(c.get("user", "1")))
        reader.start()
        deadline = time.monotonic() + 5
        while not (idle.load or busy.load) and time.monotonic() < deadline:
            time.sleep(0.01)
        if idle.load:  # the read went to the other pipe: name them by what they do
            idle, busy = busy, idle
        assert busy.load == 1
        c.disconnect()
        assert idle.closed  # idle: closed at once
        assert not busy.closed  # in use: still open, still in step
    finally:
        server.resume()
    reader.join(timeout=10)
    assert outcome == ["Ada"]  # its reply came: nothing was closed under it
    assert busy.closed  # closed once its last reply had come


def test_drops_racing_with_use_never_close_a_connection_under_its_user(
    pevensie_redis_server: RedisServer,
) -> None:
    # What a Sentinel failover does to the channel's pipes (the primary moves, and back)
    # while other threads send commands through them.
    c = cache.new(
        driver="redis",
        host=pevensie_redis_server.host,
        port=pevensie_redis_server.port,
        pool_size=16,
        retries=0,
    ).connect()
    channel = channel_of(c)
    stop = threading.Event()
    failures: list[str] = []
    rounds = [0]
    done = [0] * 8  # calls each user completed

    def user(n: int) -> None:
        while not stop.is_set():
            try:
                c.set("drop", str(n), str(rounds[0]))
                if c.get("drop", str(n)) is None:
                    failures.append("a reply crossed")
            except Exception as exc:
                failures.append(f"in use: {exc!r}")
            rounds[0] += 1
            done[n] += 1

    def dropper() -> None:
        # A retired pipe's command that has not gone out moves to another pipe, a few
        # times for free: between two drops every user completes a call, so a busy
        # machine (a thread descheduled across many drops) cannot exhaust those moves.
        while not stop.is_set():
            with channel._lock:
                channel._retire_all_but("elsewhere:6379")
            time.sleep(0.001)
            before = list(done)
            while not stop.is_set() and any(a == b for a, b in zip(done, before, strict=True)):
                time.sleep(0.0005)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(8)]
    threads.append(threading.Thread(target=dropper))
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads interleave often: races show within seconds
    try:
        for thread in threads:
            thread.start()
        time.sleep(3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        sys.setswitchinterval(switch)
        c.disconnect()
    assert rounds[0] > 100
    assert failures == []
