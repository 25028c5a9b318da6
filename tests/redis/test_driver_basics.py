"""The driver's basics on a real server: connect and disconnect, set, get, delete, TTLs.

Connecting twice, disconnecting twice, reconnecting, pooled connections closed
on disconnect, and the default configuration replaced field by field (the
scenarios of the Gleam driver's suite). The server comes from the
``pevensie_redis`` pytest plugin (container, bundled Valkey, or
``PEVENSIE_TEST_REDIS_URL``).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from pevensie_cache import AlreadyConnected, CacheMiss, NotConnected, PevensieCache, cache
from pevensie_redis import RedisConfig, RedisDriver, default_config, new_cache_driver
from pevensie_redis.testing.servers import RedisServer


def _config_for(url: str) -> RedisConfig:
    return RedisConfig.from_url(url)


def test_connect_then_disconnect(pevensie_redis_url: str) -> None:
    c = cache.new(driver=new_cache_driver(_config_for(pevensie_redis_url)))
    assert not _is_connected(c)
    assert c.connect() is c
    assert _is_connected(c)
    c.disconnect()
    assert not _is_connected(c)


def _is_connected(c: PevensieCache) -> bool:
    return c.connected


def test_the_gleam_idiom_replace_default_config(pevensie_redis_server: RedisServer) -> None:
    host, port = pevensie_redis_server.host, pevensie_redis_server.port
    config = replace(default_config(), host=host, port=port)
    with cache.new(driver=new_cache_driver(config)) as c:
        c.set("gleam", "idiom", "ok")
        assert c.get("gleam", "idiom") == "ok"


def test_set_and_get_without_ttl(pevensie_redis_cache: PevensieCache) -> None:
    pevensie_redis_cache.set("user", "1", "Lucy")
    assert pevensie_redis_cache.get("user", "1") == "Lucy"


def test_set_with_a_one_second_ttl_is_a_miss_after_it(pevensie_redis_cache: PevensieCache) -> None:
    pevensie_redis_cache.set("user", "2", "Edmund", ttl_seconds=1)
    assert pevensie_redis_cache.get("user", "2") == "Edmund"
    time.sleep(1.1)
    with pytest.raises(CacheMiss):
        pevensie_redis_cache.get("user", "2")


def test_a_later_ttl_overrides_an_earlier_one(pevensie_redis_cache: PevensieCache) -> None:
    pevensie_redis_cache.set("user", "3", "Susan", ttl_seconds=100)
    pevensie_redis_cache.set("user", "3", "Susan", ttl_seconds=1)
    time.sleep(1.1)
    with pytest.raises(CacheMiss):
        pevensie_redis_cache.get("user", "3")


def test_set_without_ttl_clears_an_earlier_ttl(pevensie_redis_cache: PevensieCache) -> None:
    pevensie_redis_cache.set("user", "4", "Peter", ttl_seconds=1)
    pevensie_redis_cache.set("user", "4", "Peter")
    time.sleep(1.1)
    assert pevensie_redis_cache.get("user", "4") == "Peter"


def test_set_then_delete_then_get_is_a_miss(pevensie_redis_cache: PevensieCache) -> None:
    pevensie_redis_cache.set("user", "5", "Aslan")
    pevensie_redis_cache.delete("user", "5")
    with pytest.raises(CacheMiss):
        pevensie_redis_cache.get("user", "5")


def test_deleting_a_key_that_never_existed_is_fine(pevensie_redis_cache: PevensieCache) -> None:
    pevensie_redis_cache.delete("user", "never")
    with pytest.raises(CacheMiss):
        pevensie_redis_cache.get("user", "never")
    assert pevensie_redis_cache.get("user", "never", None) is None


def test_connect_twice_is_already_connected(pevensie_redis_cache: PevensieCache) -> None:
    with pytest.raises(AlreadyConnected):
        pevensie_redis_cache.connect()
    assert pevensie_redis_cache.connected


def test_disconnect_twice_is_not_connected(pevensie_redis_url: str) -> None:
    c = cache.from_url(pevensie_redis_url).connect()
    c.disconnect()
    with pytest.raises(NotConnected):
        c.disconnect()
    with pytest.raises(NotConnected):
        c.get("user", "1")


def test_a_cache_reconnects_after_disconnect(pevensie_redis_url: str) -> None:
    c = cache.from_url(pevensie_redis_url).connect()
    c.set("user", "6", "Caspian")
    c.disconnect()
    c.connect()
    try:
        assert c.get("user", "6") == "Caspian"
    finally:
        c.disconnect()


def test_disconnect_closes_every_pooled_connection(pevensie_redis_server: RedisServer) -> None:
    url = pevensie_redis_server.url
    driver = new_cache_driver(RedisConfig.from_url(url, client_name="pevensie-close-test"))
    c = cache.new(driver=driver).connect()
    for i in range(20):
        c.set("close", str(i), "x")
    raw = pevensie_redis_server.client()
    try:
        assert _named_connections(raw, "pevensie-close-test") >= 1
        c.disconnect()
        deadline = time.monotonic() + 5
        while _named_connections(raw, "pevensie-close-test") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _named_connections(raw, "pevensie-close-test") == 0
    finally:
        raw.close()


def test_the_driver_type_is_exported(pevensie_redis_cache: PevensieCache) -> None:
    assert isinstance(pevensie_redis_cache.driver, RedisDriver)
    assert "redis://" in repr(pevensie_redis_cache.driver)


def _named_connections(raw: Any, name: str) -> int:
    clients = raw.client_list()
    return sum(1 for client in clients if client.get("name") == name)
