"""Typed errors of the Redis driver, and the guarantees the fast command path keeps.

Server faults (killed, paused, pool exhaustion) are in tests/reliability; this
file covers the error types and what each carries.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pevensie_cache import DriverError, cache
from pevensie_redis import (
    RedisAuthenticationError,
    RedisConfig,
    RedisConnectionError,
    RedisDriverError,
    RedisPoolExhausted,
    RedisServerError,
    RedisTimeoutError,
    new_cache_driver,
)
from pevensie_redis.testing.servers import RedisServer


@pytest.fixture
def raw(pevensie_redis_server: RedisServer) -> Iterator[Any]:
    client = pevensie_redis_server.client()
    yield client
    client.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_every_error_class_is_a_driver_error() -> None:
    for error in (
        RedisConnectionError,
        RedisTimeoutError,
        RedisAuthenticationError,
        RedisServerError,
        RedisPoolExhausted,
    ):
        assert issubclass(error, RedisDriverError)
        assert issubclass(error, DriverError)


def test_connecting_to_a_closed_port_is_a_connection_error() -> None:
    c = cache.new(driver="redis", host="127.0.0.1", port=_closed_port(), timeout=1000)
    with pytest.raises(RedisConnectionError) as caught:
        c.connect()
    assert not c.connected
    assert "connecting to redis://127.0.0.1:" in str(caught.value)
    assert caught.value.__cause__ is not None


@pytest.mark.server_dependent
def test_a_wrongtype_reply_is_a_server_error_with_the_server_message(
    pevensie_redis_cache: Any, raw: Any
) -> None:
    raw.hset("user:hash", "field", "value")
    with pytest.raises(RedisServerError) as caught:
        pevensie_redis_cache.get("user", "hash")
    assert caught.value.server_message.startswith("WRONGTYPE")
    assert "WRONGTYPE" in str(caught.value)
    assert caught.value.__cause__ is not None
    # The connection is still in step: the next command works.
    pevensie_redis_cache.set("user", "after", "ok")
    assert pevensie_redis_cache.get("user", "after") == "ok"


@pytest.mark.server_dependent
def test_a_server_error_in_a_batch_leaves_the_connection_usable(
    pevensie_redis_cache: Any, raw: Any
) -> None:
    raw.hset("user:hash", "field", "value")
    pevensie_redis_cache.set_many("user", {str(i): "v" for i in range(1500)})
    # GET-family commands on a hash fail; MGET returns nil for it instead.
    assert "hash" not in pevensie_redis_cache.get_many("user", ["hash", "1"])
    pevensie_redis_cache.delete_many("user", ["hash", "1"])
    assert raw.exists("user:hash") == 0


def test_a_value_that_is_not_utf8_is_a_driver_error_and_the_connection_survives(
    pevensie_redis_cache: Any, pevensie_redis_server: RedisServer
) -> None:
    binary = pevensie_redis_server.client(decode_responses=False)
    binary.set(b"user:binary", b"\xff\xfe\x00")
    binary.close()
    with pytest.raises(RedisDriverError, match="not UTF-8"):
        pevensie_redis_cache.get("user", "binary")
    with pytest.raises(RedisDriverError, match="not UTF-8"):
        pevensie_redis_cache.get_many("user", ["binary"])
    pevensie_redis_cache.set("user", "text", "fine")
    assert pevensie_redis_cache.get("user", "text") == "fine"


@pytest.mark.parametrize("retries", [0, 1])
def test_a_connection_killed_while_idle_is_replaced_at_checkout(
    pevensie_redis_server: RedisServer, raw: Any, retries: int
) -> None:
    config = RedisConfig.from_url(pevensie_redis_server.url, retries=retries)
    with cache.new(driver=new_cache_driver(config)) as c:
        c.set("user", "r", "before")
        raw.client_kill_filter(_type="normal", skipme=True)
        assert c.get("user", "r") == "before"  # the pool's health check reconnected
        raw.client_kill_filter(_type="normal", skipme=True)
        c.set("user", "r", "after")
        raw.client_kill_filter(_type="normal", skipme=True)
        c.delete("user", "r")
        assert raw.exists("user:r") == 0


def test_without_retries_a_timeout_surfaces_and_the_next_call_works(
    pevensie_redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = pevensie_redis_server_factory()
    config = RedisConfig.from_url(server.url, retries=0, timeout=300)
    with cache.new(driver=new_cache_driver(config)) as c:
        c.set("user", "t", "v")
        server.pause()
        try:
            with pytest.raises(RedisTimeoutError) as caught:
                c.get("user", "t")
        finally:
            server.resume()
        assert "GET" in str(caught.value)
        # The timed-out connection was closed before it went back to the pool.
        assert c.get("user", "t") == "v"


def test_a_driver_used_without_connect_says_so() -> None:
    driver = new_cache_driver(RedisConfig(port=_closed_port()))
    with pytest.raises(RedisConnectionError, match="not connected"):
        driver.get("user", "1")
    with pytest.raises(RedisConnectionError, match="not connected"):
        driver.get_many("user", ["1"])


def test_map_error_sorts_redis_py_exceptions() -> None:
    from redis import exceptions as rx

    from pevensie_redis.channel import PoolWaitTimeout
    from pevensie_redis.errors import map_error

    assert isinstance(map_error(rx.TimeoutError("Timeout reading"), "GET"), RedisTimeoutError)
    assert isinstance(map_error(rx.ConnectionError("refused"), "GET"), RedisConnectionError)
    assert isinstance(
        map_error(rx.AuthenticationError("invalid password"), "GET"), RedisAuthenticationError
    )
    assert isinstance(map_error(PoolWaitTimeout("busy"), "GET"), RedisPoolExhausted)
    # redis-py strips the code of the reply "OOM command not allowed"; from 7.2 on it
    # keeps it as status_code, before that only the exception class tells it.
    oom = map_error(rx.OutOfMemoryError("command not allowed"), "SET")
    assert isinstance(oom, RedisServerError)
    assert oom.server_message == "OOM command not allowed"
    noperm = map_error(rx.NoPermissionError("this user has no permissions"), "SET")
    assert "NOPERM this user has no permissions" in str(noperm)
    plain = map_error(rx.ResponseError("ERR unknown command 'FOO'"), "FOO")
    assert isinstance(plain, RedisServerError)
    assert plain.server_message == "ERR unknown command 'FOO'"
    other = map_error(rx.DataError("bad"), "SET")
    assert type(other) is RedisDriverError


@pytest.fixture
def not_redis() -> Iterator[int]:
    """A loopback port where an HTTP-like server answers instead of Redis."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(timeout=5)
    listener.close()


@pytest.mark.asyncio
async def test_a_server_that_is_not_redis_is_a_protocol_error_that_is_a_connection_error(
    not_redis: int,
) -> None:
    from pevensie_redis import RedisProtocolError

    url = f"redis://127.0.0.1:{not_redis}/0?timeout=2000&retries=0"
    with pytest.raises(RedisProtocolError, match="not the Redis protocol") as sync_error:
        cache.from_url(url).connect()
    with pytest.raises(RedisProtocolError, match="not the Redis protocol") as async_error:
        await cache.from_url_async(url).connect()
    assert isinstance(sync_error.value, RedisConnectionError)
    assert isinstance(async_error.value, RedisConnectionError)


@pytest.mark.parametrize("tags", [["t"], ["t", "u"]])
def test_a_value_that_is_not_utf8_read_with_tags_is_a_driver_error(
    pevensie_redis_cache: Any, pevensie_redis_server: RedisServer, tags: list[str]
) -> None:
    binary = pevensie_redis_server.client(decode_responses=False)
    binary.set(b"user:envelope-like", b"\xff\xfe\x00")  # an envelope's first byte, then not UTF-8
    binary.set(b"user:latin-1", b"caf\xe9")
    binary.close()
    for key in ("envelope-like", "latin-1"):
        with pytest.raises(RedisDriverError, match="not UTF-8"):
            pevensie_redis_cache.get_or_set("user", key, lambda: "v", 60, tags=tags)
    pevensie_redis_cache.get_or_set("user", "text", lambda: "fine", 60, tags=tags)
    assert pevensie_redis_cache.get_or_set("user", "text", lambda: "x", 60, tags=tags) == "fine"
