"""The connection pool is bounded: a caller waits at most ``timeout`` for a connection.

When every connection is lent out (``connection_pool.get_connection()``) the
caller gets :class:`RedisPoolExhausted`, never a hang, and the driver never
opens more than ``pool_size`` connections.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from reliability_support import (
    connect_async_cache,
    connect_cache,
    hang_bound,
    named_clients,
    unique_client_name,
)

from pevensie_cache import PevensieCache
from pevensie_redis import RedisDriver, RedisPoolExhausted, RedisTimeoutError
from pevensie_redis.testing import RedisServer


def pool_of(c: PevensieCache) -> Any:
    driver = c.driver
    assert isinstance(driver, RedisDriver)
    pool = driver.connection_pool
    assert pool is not None
    return pool


def test_waiting_caller_gets_pool_exhausted_after_the_timeout_when_every_connection_is_held(
    private_server: RedisServer,
) -> None:
    timeout_ms = 500
    name = unique_client_name("pool")
    c = connect_cache(private_server, pool_size=2, timeout=timeout_ms, client_name=name)
    try:
        c.set("user", "1", "Ada")
        pool = pool_of(c)
        held = [pool.get_connection(), pool.get_connection()]  # every connection busy
        try:
            for operation in (
                lambda: c.get("user", "1"),
                lambda: c.set("user", "1", "x"),
                lambda: c.get_many("user", ["1"]),
                lambda: c.set_many("user", {"1": "x"}, ttl_seconds=5),
            ):
                start = time.monotonic()
                with pytest.raises(RedisPoolExhausted) as caught:
                    operation()
                elapsed = time.monotonic() - start
                assert elapsed >= timeout_ms / 1000 * 0.95  # it did wait for a connection
                assert elapsed < hang_bound(timeout_ms, 0)
                assert "pool_size" in str(caught.value)
            with private_server.client() as raw:
                assert len(named_clients(raw, name)) <= 2
        finally:
            for connection in held:
                pool.release(connection)
        assert c.get("user", "1") == "Ada"  # a freed connection serves the next caller
    finally:
        c.disconnect()


def test_callers_beyond_the_pool_get_pool_exhausted_while_a_stalled_server_holds_it(
    private_server: RedisServer,
) -> None:
    timeout_ms = 600
    name = unique_client_name("stalled")
    c = connect_cache(private_server, pool_size=2, timeout=timeout_ms, retries=1, client_name=name)
    c.set("user", "1", "Ada")
    outcomes: dict[str, BaseException | str] = {}
    lock = threading.Lock()
    waiter_done = threading.Event()
    pool = pool_of(c)
    # Every connection lent out, each to a holder that waits on the stalled server.
    held = [pool.get_connection(), pool.get_connection()]

    def call(label: str) -> None:
        try:
            result: BaseException | str = c.get("user", "1")
        except Exception as exc:
            result = exc
        with lock:
            outcomes[label] = result

    def hold(label: str, connection: Any) -> None:
        try:
            connection.send_command("GET", "user:1")
            result: BaseException | str = connection.read_response()
        except Exception as exc:
            result = exc
        with lock:
            outcomes[label] = result
        waiter_done.wait(hang_bound(timeout_ms, 1))  # held until the waiter has its answer
        pool.release(connection)

    private_server.pause()
    try:
        holders = [threading.Thread(target=hold, args=(f"holder{i}", held[i])) for i in range(2)]
        for thread in holders:
            thread.start()
        time.sleep(0.15)  # both holders are now waiting on the stalled server
        start = time.monotonic()
        call("waiter")
        waited = time.monotonic() - start
        waiter_done.set()
        for thread in holders:
            thread.join(timeout=hang_bound(timeout_ms, 1))
        assert not any(thread.is_alive() for thread in holders)
    finally:
        private_server.resume()
    try:
        assert isinstance(outcomes["waiter"], RedisPoolExhausted), outcomes
        assert waited < hang_bound(timeout_ms, 0)
        for label in ("holder0", "holder1"):
            assert isinstance(outcomes[label], RedisTimeoutError), outcomes
        assert c.get("user", "1") == "Ada"
        with private_server.client() as raw:
            assert len(named_clients(raw, name)) <= 2
    finally:
        c.disconnect()


def test_the_pool_never_opens_more_than_pool_size_connections_under_load(
    private_server: RedisServer,
) -> None:
    pool_size = 3
    name = unique_client_name("bounded")
    c = connect_cache(private_server, pool_size=pool_size, timeout=5000, client_name=name)
    stop = threading.Event()
    errors: list[BaseException] = []
    samples: list[int] = []

    def hammer(worker: int) -> None:
        try:
            i = 0
            while not stop.is_set():
                c.set("load", f"{worker}-{i % 50}", str(i))
                c.get("load", f"{worker}-{i % 50}")
                i += 1
        except Exception as exc:
            errors.append(exc)

    with private_server.client() as raw:
        received_before = int(raw.info("stats")["total_connections_received"])
        workers = [threading.Thread(target=hammer, args=(n,)) for n in range(12)]
        for thread in workers:
            thread.start()
        try:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                samples.append(len(named_clients(raw, name)))
                time.sleep(0.02)
        finally:
            stop.set()
            for thread in workers:
                thread.join(timeout=30)
        received = int(raw.info("stats")["total_connections_received"]) - received_before
    c.disconnect()
    assert errors == []
    assert max(samples) <= pool_size
    assert max(samples) >= 1
    # The raw client opened one connection; the pool at most pool_size: no churn.
    assert received <= pool_size + 1


def test_a_connection_the_pool_no_longer_owns_is_closed_when_it_comes_back(
    private_server: RedisServer,
) -> None:
    """release() closes a connection to a server no longer the one (Sentinel: the primary)."""
    c = connect_cache(private_server, pool_size=1)
    pool = pool_of(c)
    try:
        first = pool.get_connection()
        pool.release(first)
        assert pool.get_connection() is first  # owned: kept open and handed out again
        disown(c, first)
        pool.release(first)
        assert first.closed  # closed, never handed out again
        second = pool.get_connection()
        assert second is not first
        second.send_command("PING")
        assert second.read_response() == b"PONG"
        pool.release(second)
    finally:
        c.disconnect()


def disown(c: PevensieCache, connection: Any) -> None:
    """Make the driver's channel follow another server than ``connection``'s (a failover)."""
    channel = c.driver._channel  # type: ignore[attr-defined]
    with channel._lock:
        channel._retire_all_but("elsewhere:6379")


@pytest.mark.parametrize("retries", [0, 2])
def test_a_pool_wait_is_not_retried_whatever_the_retries(
    private_server: RedisServer, retries: int
) -> None:
    # RELIABILITY.md: RedisPoolExhausted comes after one timeout, on both faces.
    timeout_ms = 400
    bound = timeout_ms / 1000 * 1.9  # a retried wait takes at least two timeouts
    c = connect_cache(private_server, pool_size=1, timeout=timeout_ms, retries=retries)
    pool = pool_of(c)
    held = pool.get_connection()
    try:
        start = time.monotonic()
        with pytest.raises(RedisPoolExhausted):
            c.get("user", "1")
        assert timeout_ms / 1000 * 0.95 <= time.monotonic() - start < bound
    finally:
        pool.release(held)
        c.disconnect()

    async def on_the_async_face() -> float:
        a = await connect_async_cache(
            private_server, pool_size=1, timeout=timeout_ms, retries=retries
        )
        leases = a.driver.connection_pool
        assert leases is not None
        lent = await leases.get_connection()
        try:
            start = time.monotonic()
            with pytest.raises(RedisPoolExhausted):
                await a.get("user", "1")
            return time.monotonic() - start
        finally:
            leases.release(lent)
            await a.disconnect()

    assert timeout_ms / 1000 * 0.95 <= asyncio.run(on_the_async_face()) < bound
