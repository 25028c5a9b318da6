"""A pool told to drop its connections never closes one that another thread is using."""

from __future__ import annotations

import sys
import threading
import time

from pevensie_redis import compat
from pevensie_redis.config import RedisConfig
from pevensie_redis.pool import CachePool, pool_options
from pevensie_redis.testing import RedisServer


def make_pool(server: RedisServer, size: int) -> CachePool:
    config = RedisConfig(host=server.host, port=server.port, pool_size=size)
    return CachePool(**pool_options(config))


def test_a_connection_in_use_survives_disconnect_and_is_closed_when_released(
    pevensie_redis_server: RedisServer,
) -> None:
    pool = make_pool(pevensie_redis_server, 2)
    idle = pool.get_connection()
    busy = pool.get_connection()
    pool.release(idle)
    try:
        pool.disconnect()
        assert not compat.is_connected(idle)  # idle: closed at once
        busy.send_command("PING")  # in use: still open, still in step
        assert busy.read_response() == b"PONG"
    finally:
        pool.release(busy)
    assert not compat.is_connected(busy)  # closed as it came back
    again = pool.get_connection()
    try:
        again.send_command("PING")
        assert again.read_response() == b"PONG"
    finally:
        pool.release(again)
        pool.disconnect()


def test_drops_racing_with_checkouts_never_close_a_connection_under_its_user(
    pevensie_redis_server: RedisServer,
) -> None:
    # What a Cluster slot-map refresh does to every node's pool while other threads
    # take, use and return its connections.
    pool = make_pool(pevensie_redis_server, 16)
    stop = threading.Event()
    failures: list[str] = []
    rounds = [0]

    def user() -> None:
        while not stop.is_set():
            try:
                connection = pool.get_connection()  # (re)connects a dropped connection
            except Exception as exc:
                failures.append(f"checkout: {exc!r}")
                continue
            try:
                connection.send_command("PING")
                if connection.read_response() != b"PONG":
                    failures.append("a reply crossed")
            except Exception as exc:
                failures.append(f"in use: {exc!r}")
                connection.disconnect()
            finally:
                pool.release(connection)
            rounds[0] += 1

    def dropper() -> None:
        while not stop.is_set():
            pool.disconnect_free_connections()

    threads = [threading.Thread(target=user) for _ in range(8)]
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
        pool.disconnect()
    assert rounds[0] > 100
    assert failures == []
