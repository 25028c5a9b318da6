"""RedisConfig fields and URL forms of the Cluster and Sentinel modes (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest

from pevensie_cache import ConfigError, cache
from pevensie_redis import RedisClusterDriver, RedisConfig, RedisDriver, RedisSentinelDriver
from pevensie_redis.modes import new_cache_driver


def test_defaults_are_a_single_server() -> None:
    config = RedisConfig()
    assert (config.cluster, config.cluster_hash_tag) == (False, False)
    assert (config.sentinels, config.service_name) == ((), None)
    assert type(new_cache_driver(config)) is RedisDriver


def test_cluster_url() -> None:
    config = RedisConfig.from_url("redis://10.0.0.5:7000?cluster=true&cluster_hash_tag=yes")
    assert (config.host, config.port, config.cluster, config.cluster_hash_tag) == (
        "10.0.0.5",
        7000,
        True,
        True,
    )
    assert config.display_url() == "redis://10.0.0.5:7000/0?cluster=true&cluster_hash_tag=true"
    assert RedisConfig.from_url(config.display_url()) == config
    assert isinstance(new_cache_driver(config), RedisClusterDriver)


def test_sentinel_url_with_credentials_tls_and_db() -> None:
    url = "rediss+sentinel://app:p%40ss@s1:26380,[::1],s3/mymaster/2?timeout=300ms"
    config = RedisConfig.from_url(url)
    assert config.sentinels == (("s1", 26380), ("::1", 26379), ("s3", 26379))
    assert (config.service_name, config.db, config.tls, config.timeout) == (
        "mymaster",
        2,
        True,
        300,
    )
    assert (config.username, config.password) == ("app", "p@ss")
    shown = config.display_url()
    assert (
        shown == "rediss+sentinel://app:***@s1:26380,[::1]:26379,s3:26379/mymaster/2?timeout=300ms"
    )
    assert "p@ss" not in repr(config)
    assert RedisConfig.from_url(shown.replace("***", "p%40ss")) == config
    assert isinstance(new_cache_driver(config), RedisSentinelDriver)


@pytest.mark.parametrize("scheme", ["redis+sentinel", "valkey+sentinel", "valkeys+sentinel"])
def test_sentinel_schemes_pick_the_redis_driver(scheme: str) -> None:
    c = cache.from_url(f"{scheme}://127.0.0.1:26379/pevensie")
    assert isinstance(c.driver, RedisSentinelDriver)
    assert c.driver.config.tls == scheme.startswith("valkeys")


def test_sentinels_from_lists_become_tuples() -> None:
    config = RedisConfig(sentinels=[["a", 1], ("b", 2)], service_name="x")  # type: ignore[arg-type]
    assert config.sentinels == (("a", 1), ("b", 2))
    assert hash(config) == hash(RedisConfig(sentinels=(("a", 1), ("b", 2)), service_name="x"))


def test_sentinels_in_a_list_may_be_written_host_port_as_in_a_toml_file() -> None:
    built = cache.from_config(
        {"driver": "redis", "service_name": "x", "sentinels": ["a:1", " b ", "[::1]:26380"]}
    )
    assert built.driver.config.sentinels == (("a", 1), ("b", 26379), ("::1", 26380))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cluster_hash_tag": True}, "needs cluster=True"),
        ({"cluster": True, "db": 1}, "only database 0"),
        ({"cluster": True, "unix_socket_path": "/tmp/r.sock"}, "not unix_socket_path"),
        ({"cluster": "yes"}, "cluster must be a bool"),
        ({"sentinels": [("a", 1)]}, "need service_name"),
        ({"service_name": "x"}, "needs sentinels"),
        ({"sentinels": "a:1", "service_name": "x"}, "list of \\(host, port\\) pairs"),
        ({"sentinels": [("a", 0)], "service_name": "x"}, "sentinel port"),
        ({"sentinels": [("a", True)], "service_name": "x"}, "sentinel port"),
        ({"sentinels": [("", 1)], "service_name": "x"}, "sentinel host"),
        ({"sentinels": [("a",)], "service_name": "x"}, "pair"),
        ({"sentinels": ["a:1", "b:x"], "service_name": "x"}, "address \\(number 2\\) 'b:x'"),
        ({"sentinels": ["a:1,b:2"], "service_name": "x"}, "address \\(number 1\\)"),
        ({"sentinels": ["a:0"], "service_name": "x"}, "sentinel port"),
        ({"sentinels": [("a", 1)], "service_name": ""}, "service_name must not be empty"),
        ({"cluster": True, "sentinels": [("a", 1)], "service_name": "x"}, "not both"),
    ],
)
def test_invalid_combinations_are_config_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RedisConfig(**fields)


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://s1",  # no service name
        "redis+sentinel://s1/name/notadb",
        "redis+sentinel://s1/name/0/extra",
        "redis+sentinel://s1,,s2/name",
        "redis+sentinel://s1:99999/name",
        "redis+sentinel://s1/name#fragment",
        "redis://h?cluster=maybe",
        "redis+sentinel://s1/name?cluster=true",
    ],
)
def test_invalid_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        RedisConfig.from_url(url)


def test_a_password_never_shows_in_sentinel_url_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        RedisConfig.from_url("redis+sentinel://user:hunter2@s1:notaport/name")
    assert "hunter2" not in str(caught.value)


def test_keywords_build_the_same_as_urls() -> None:
    by_name = cache.new(driver="redis", sentinels=[("s1", 26379)], service_name="svc", db=3)
    by_url = cache.from_url("redis+sentinel://s1/svc/3")
    assert by_name.driver.config == by_url.driver.config  # type: ignore[attr-defined]
