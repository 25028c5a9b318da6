"""RedisConfig: defaults, validation, URL parsing, masking, and how caches are built from it.

No server is needed here.
"""

from __future__ import annotations

import dataclasses
import ssl
import subprocess
import sys
from typing import Any

import pytest

from pevensie_cache import ConfigError, cache
from pevensie_redis import RedisConfig, RedisDriver, default_config, new_cache_driver

SECRET = "s3cr&t:p@ss/word"
SECRET_QUOTED = "s3cr%26t%3Ap%40ss%2Fword"


def test_default_config_matches_the_gleam_original() -> None:
    config = default_config()
    assert (config.host, config.port, config.timeout, config.pool_size) == (
        "localhost",
        6379,
        5000,
        10,
    )
    assert config.username is None
    assert config.password is None
    assert config.db == 0
    assert config.tls is False
    assert config.tls_verify is True
    assert config.retries == 1
    assert config == RedisConfig()


def test_config_is_frozen_and_replace_is_the_update_idiom() -> None:
    config = default_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.host = "elsewhere"  # type: ignore[misc]
    changed = dataclasses.replace(config, host="cache.example.com")
    assert changed.host == "cache.example.com"
    assert changed.port == 6379


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost", {"host": "localhost", "port": 6379, "db": 0, "tls": False}),
        ("redis://cache.example.com:6380/2", {"host": "cache.example.com", "port": 6380, "db": 2}),
        ("valkey://10.0.0.5:7000/1", {"host": "10.0.0.5", "port": 7000, "db": 1, "tls": False}),
        ("rediss://cache.example.com", {"tls": True, "tls_verify": True, "port": 6379}),
        ("valkeys://cache.example.com:6390", {"tls": True, "port": 6390}),
        ("redis://[::1]:6379/3", {"host": "::1", "port": 6379, "db": 3}),
        ("REDIS://Example.COM", {"host": "example.com"}),
        (
            "unix:///run/redis/redis.sock?db=4",
            {"unix_socket_path": "/run/redis/redis.sock", "db": 4, "tls": False},
        ),
        ("redis://app@localhost", {"username": "app", "password": None}),
        ("redis://:pw@localhost", {"username": None, "password": "pw"}),
        ("redis://app:pw@localhost", {"username": "app", "password": "pw"}),
        (
            f"redis://user%20name:{SECRET_QUOTED}@localhost",
            {"username": "user name", "password": SECRET},
        ),
        (
            "redis://h?timeout=250&pool_size=3&client_name=web-1&retries=0",
            {"timeout": 250, "pool_size": 3, "client_name": "web-1", "retries": 0},
        ),
        ("redis://h?db=5", {"db": 5}),
        (
            "rediss://h?tls_ca_file=/ca.pem&tls_cert_file=/c.pem&tls_key_file=/k.pem",
            {"tls_ca_file": "/ca.pem", "tls_cert_file": "/c.pem", "tls_key_file": "/k.pem"},
        ),
        (
            "rediss://h?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem",
            {"tls_ca_file": "/ca.pem", "tls_cert_file": "/c.pem", "tls_key_file": "/k.pem"},
        ),
        ("rediss://h?ssl_cert_reqs=none", {"tls": True, "tls_verify": False}),
        ("rediss://h?ssl_cert_reqs=required", {"tls_verify": True}),
        ("rediss://h?tls_verify=false", {"tls_verify": False}),
    ],
)
def test_from_url(url: str, expected: dict[str, Any]) -> None:
    config = RedisConfig.from_url(url)
    for name, value in expected.items():
        assert getattr(config, name) == value, name


def test_from_url_overrides_replace_what_the_url_says() -> None:
    config = RedisConfig.from_url("redis://h:1/2?timeout=100", port=3, timeout=200)
    assert (config.port, config.db, config.timeout) == (3, 2, 200)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        (f"http://app:{SECRET_QUOTED}@h", "redis://"),
        (f"redis://app:{SECRET_QUOTED}@h:notaport", "invalid Redis URL"),
        (f"redis://app:{SECRET_QUOTED}@h:70000", "invalid Redis URL"),
        (f"redis://app:{SECRET_QUOTED}@h/zero", "database number"),
        (f"redis://app:{SECRET_QUOTED}@h?colour=blue", "unknown Redis URL option 'colour'"),
        (f"redis://app:{SECRET_QUOTED}@h?timeout=soon", "timeout must be a whole number"),
        (f"redis://app:{SECRET_QUOTED}@h/1?db=2", "db is given twice"),
        (f"redis://app:{SECRET_QUOTED}@h?tls_ca_file=/ca.pem", "tls_ca_file needs tls=True"),
        (f"rediss://app:{SECRET_QUOTED}@h?ssl_cert_reqs=optional", "ssl_cert_reqs"),
        (f"rediss://app:{SECRET_QUOTED}@h?tls_verify=maybe", "true or false"),
        (f"unix://app:{SECRET_QUOTED}@host/sock", "socket path"),
        (f"unix://app:{SECRET_QUOTED}@", "socket path"),
        (f"redis://app:{SECRET_QUOTED}@h#frag", "fragment"),
        (f"redis://app:{SECRET_QUOTED}@h?timeout=0", "timeout must be at least 1"),
        (f"redis://app:{SECRET_QUOTED}@h?pool_size=0", "pool_size must be at least 1"),
    ],
)
def test_bad_urls_raise_config_error_without_the_password(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RedisConfig.from_url(url)
    message = str(caught.value)
    assert fragment in message
    assert SECRET not in message
    assert SECRET_QUOTED not in message
    assert "s3cr" not in repr(caught.value)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"host": ""}, "host must not be empty"),
        ({"host": "a b"}, "host must be a host name"),
        ({"host": None}, "host must be a str"),
        ({"port": 0}, "port must be between 1 and 65535"),
        ({"port": "6379"}, "port must be an int"),
        ({"port": True}, "port must be an int"),
        ({"timeout": 0}, "timeout must be at least 1"),
        ({"timeout": 1.5}, "timeout must be an int (milliseconds)"),
        ({"pool_size": 0}, "pool_size must be at least 1"),
        ({"db": -1}, "db must be at least 0"),
        ({"username": ""}, "username must not be empty"),
        ({"username": 7}, "username must be a str or None"),
        ({"password": ""}, "password must not be empty"),
        ({"tls": "yes"}, "tls must be a bool"),
        ({"tls_verify": 0}, "tls_verify must be a bool"),
        ({"tls_ca_file": "/ca.pem"}, "tls_ca_file needs tls=True"),
        ({"tls": True, "tls_key_file": "/k.pem"}, "tls_key_file needs tls_cert_file"),
        ({"unix_socket_path": "/s", "tls": True}, "TLS is not supported over a Unix socket"),
        ({"client_name": "has space"}, "client_name must not contain spaces"),
        ({"retries": -1}, "retries must be between 0 and 100"),
    ],
)
def test_every_field_is_validated(fields: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RedisConfig(**fields)
    assert fragment in str(caught.value)


def test_a_bad_password_value_is_never_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        RedisConfig(password="abc\x00secret")
    assert "secret" not in str(caught.value)


def test_repr_shows_stars_instead_of_the_password() -> None:
    config = RedisConfig(username="app", password=SECRET)
    text = repr(config)
    assert SECRET not in text
    assert "password='***'" in text
    assert "username='app'" in text
    assert "password=None" in repr(default_config())
    assert SECRET not in str(config)
    assert SECRET not in repr(new_cache_driver(config))


def test_display_url_masks_the_password_and_round_trips_the_rest() -> None:
    config = RedisConfig.from_url(
        f"rediss://app:{SECRET_QUOTED}@cache.example.com:6380/2"
        "?timeout=250&client_name=web&tls_ca_file=/ca.pem&tls_verify=false"
    )
    shown = config.display_url()
    assert SECRET not in shown
    assert SECRET_QUOTED not in shown
    assert shown.startswith("rediss://app:***@cache.example.com:6380/2?")
    again = RedisConfig.from_url(shown, password=SECRET)
    assert again == config


def test_display_url_of_defaults_unix_and_ipv6() -> None:
    assert default_config().display_url() == "redis://localhost:6379/0"
    assert RedisConfig(unix_socket_path="/tmp/r.sock", db=1).display_url() == (
        "unix:///tmp/r.sock?db=1"
    )
    assert RedisConfig(host="::1").display_url() == "redis://[::1]:6379/0"


def test_cache_new_by_name_and_from_url_build_the_same_driver() -> None:
    by_name = cache.new(
        driver="redis", host="cache.example.com", port=6380, db=2, password=SECRET, timeout=250
    )
    by_url = cache.from_url(f"redis://:{SECRET_QUOTED}@cache.example.com:6380/2?timeout=250")
    assert isinstance(by_name.driver, RedisDriver)
    assert isinstance(by_url.driver, RedisDriver)
    assert by_name.driver.config == by_url.driver.config
    assert not by_name.connected


@pytest.mark.parametrize("scheme", ["redis", "rediss", "valkey", "valkeys"])
def test_every_scheme_selects_the_redis_driver(scheme: str) -> None:
    built = cache.from_url(f"{scheme}://cache.example.com")
    assert isinstance(built.driver, RedisDriver)
    assert built.driver.config.tls is (scheme in ("rediss", "valkeys"))


def test_unix_scheme_selects_the_redis_driver() -> None:
    built = cache.from_url("unix:///run/redis.sock")
    assert isinstance(built.driver, RedisDriver)
    assert built.driver.config.unix_socket_path == "/run/redis.sock"


def test_cache_new_takes_a_base_config_plus_fields() -> None:
    base = RedisConfig(host="cache.example.com", pool_size=3)
    built = cache.new(driver="redis", config=base, port=7000)
    assert isinstance(built.driver, RedisDriver)
    assert built.driver.config == dataclasses.replace(base, port=7000)


def test_cache_new_rejects_unknown_options_and_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        cache.new(driver="redis", hots="typo")
    assert "hots" in str(caught.value)
    assert "host" in str(caught.value)


def test_from_config_mapping_with_url_and_options() -> None:
    built = cache.from_config({"url": "redis://cache.example.com/1", "pool_size": 4})
    assert isinstance(built.driver, RedisDriver)
    assert (built.driver.config.db, built.driver.config.pool_size) == (1, 4)


def test_new_cache_driver_takes_a_config_and_defaults_without_one() -> None:
    assert new_cache_driver().config == default_config()
    config = RedisConfig(host="h")
    assert new_cache_driver(config).config is config


def test_endpoints_follow_the_config() -> None:
    from pevensie_redis.endpoint import endpoint

    plain = endpoint(RedisConfig(host="cache.example", timeout=1500, client_name="web"))
    assert (plain.host, plain.port, plain.path) == ("cache.example", 6379, None)
    assert plain.timeout == 1.5
    assert plain.tls is None
    assert any(b"SETNAME" in command and b"web" in command for command in plain.handshake)

    tls = endpoint(RedisConfig(host="cache.example", tls=True))
    assert tls.tls is not None
    assert tls.tls.verify_mode == ssl.CERT_REQUIRED
    assert tls.tls.check_hostname is True
    assert tls.server_hostname == "cache.example"

    unverified = endpoint(RedisConfig(host="cache.example", tls=True, tls_verify=False))
    assert unverified.tls is not None
    assert unverified.tls.verify_mode == ssl.CERT_NONE
    assert unverified.server_hostname is None

    unix = endpoint(RedisConfig(unix_socket_path="/run/r.sock", db=2))
    assert (unix.host, unix.path, unix.label) == (None, "/run/r.sock", "/run/r.sock")
    assert any(b"SELECT" in command and b"\r\n2\r\n" in command for command in unix.handshake)

    other = endpoint(RedisConfig(host="cache.example"), "10.0.0.7", 7001)
    assert (other.host, other.port, other.label) == ("10.0.0.7", 7001, "10.0.0.7:7001")


def test_listing_drivers_and_importing_the_package_do_not_import_redis_py() -> None:
    code = (
        "import sys\n"
        "import pevensie_cache\n"
        "from pevensie_cache import cache\n"
        "names = [d.name for d in cache.drivers()]\n"
        "assert 'redis' in names, names\n"
        "import pevensie_redis\n"
        "from pevensie_redis import RedisConfig\n"
        "RedisConfig.from_url('rediss://h/1')\n"
        "assert 'redis' not in sys.modules, 'redis-py was imported'\n"
        "cache.new(driver='redis', host='h')\n"
        "assert 'redis' in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
