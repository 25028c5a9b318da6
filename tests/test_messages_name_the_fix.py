"""Every mistake of the first hour gets an error (or a warning) that names the fix.

Each test pins one message of issue 22 (sections 2 and 3), on the face or
faces it concerns. The Redis configuration's own are in
tests/redis/test_config_messages.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import decimal
import uuid
from typing import Any

import pytest
from pevensie_test_echo.driver import EchoDriver

from pevensie_cache import (
    ArgumentTypeError,
    ArgumentValueError,
    ConfigError,
    DriverNotFound,
    NotConnected,
    cache,
)
from pevensie_cache.memory import MemoryDriver
from pevensie_cache.options import UnknownOptionError
from pevensie_cache.registry import KNOWN_DRIVERS, Registry


def test_a_dict_value_names_the_resource_call_on_the_cache_object() -> None:
    with cache.new() as c:
        with pytest.raises(ArgumentTypeError) as caught:
            c.set("user", "1", {"name": "Ada"})  # type: ignore[arg-type]
        assert "c.resource('user', codec='json').set(key, value)" in str(caught.value)
        assert "your cache object" in str(caught.value)
        with pytest.raises(ArgumentTypeError) as loaded:
            c.get_or_set("user", "2", lambda: {"name": "Bob"})
        assert "c.resource('user', codec='json').get_or_set(key, loader)" in str(loaded.value)
        assert not hasattr(cache, "resource")  # the module has none: the hint must not say so


def test_a_scheme_of_a_driver_not_installed_says_what_to_pip_install() -> None:
    empty = Registry()  # what the core alone finds: no pevensie-redis
    for scheme in ("redis", "rediss", "valkey", "redis+sentinel", "unix"):
        with pytest.raises(DriverNotFound) as caught:
            empty.lookup_scheme(scheme)
        assert "pip install pevensie-redis" in str(caught.value).splitlines()[0]
    with pytest.raises(DriverNotFound, match=r"not installed: pip install pevensie-redis"):
        empty.lookup("redis")


def test_the_known_schemes_are_the_redis_drivers_own() -> None:
    from pevensie_redis.config import SCHEMES

    assert set(KNOWN_DRIVERS["redis"][1]) == set(SCHEMES)


@pytest.mark.parametrize("builder", [cache.new, cache.new_async])
def test_a_url_given_as_a_driver_name_points_to_from_url(builder: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        builder("redis://:s3cret@localhost:6379/0")
    message = str(caught.value)
    assert "use cache.from_url('redis://:***@localhost:6379/0')" in message
    assert "s3cret" not in message


def test_a_url_option_beside_a_driver_name_points_to_from_url() -> None:
    with pytest.raises(ConfigError, match=r"use cache\.from_url\(url, \*\*options\)"):
        cache.new(driver="redis", url="redis://localhost:6379/0")


@pytest.mark.parametrize("name", ["valkey", "rediss", "Valkey"])
def test_a_scheme_given_as_a_driver_name_names_the_driver(name: str) -> None:
    with pytest.raises(DriverNotFound) as caught:
        cache.new(driver=name)
    first = str(caught.value).splitlines()[0]
    assert f"{name.lower()}:// is a URL scheme of the driver 'redis'; use driver='redis'" in first


def test_a_well_known_foreign_option_name_points_to_ours() -> None:
    with pytest.raises(ConfigError) as caught:
        cache.new(driver="redis", max_connections=50)
    assert "'max_connections' (did you mean 'pool_size'?)" in str(caught.value)
    with pytest.raises(ConfigError, match=r"'socket_timeout' \(did you mean 'timeout'\?\)"):
        cache.from_url("redis://localhost?socket_timeout=2")


def test_a_foreign_name_in_a_url_points_to_what_a_url_can_say() -> None:
    # ssl as a keyword is our tls; in a URL, tls is not a query option: the scheme says it.
    with pytest.raises(ConfigError, match=r"'ssl' \(did you mean 'tls'\?\)"):
        cache.new(driver="redis", ssl=True)
    with pytest.raises(ConfigError, match=r"'ssl' \(did you mean 'rediss://'\?\)"):
        cache.from_url("redis://localhost?ssl=true")
    with pytest.raises(ConfigError, match=r"'database' \(did you mean 'db'\?\)"):
        cache.from_url("redis://localhost?database=2")


def test_an_unknown_option_lists_the_caches_own_options_too() -> None:
    with pytest.raises(ConfigError) as caught:
        cache.new(driver="redis", namspace="app1")
    message = str(caught.value)
    assert "'namspace' (did you mean 'namespace'?)" in message
    assert "valid options: host, port" in message
    assert message.endswith("; cache options: namespace, fail_open")
    with pytest.raises(ConfigError, match="cache options: namespace, fail_open"):
        cache.new(driver="memory", max_entires=3)


@pytest.mark.parametrize("operation", ["get", "set", "delete", "exists", "ttl", "incr"])
def test_not_connected_says_how_to_connect_on_the_sync_face(operation: str) -> None:
    c = cache.new()
    arguments = ("user", "1", "x") if operation == "set" else ("user", "1")
    with pytest.raises(NotConnected) as caught:
        getattr(c, operation)(*arguments)
    message = str(caught.value)
    assert message.startswith(f"{operation}() on a cache that is not connected")
    assert "c = cache.new(...).connect()" in message
    assert "with cache.new(...) as c:" in message


def test_not_connected_says_await_and_async_with_on_the_async_face() -> None:
    async def main() -> str:
        try:
            await cache.new_async().get("user", "1")
        except NotConnected as exc:
            return str(exc)
        raise AssertionError("no NotConnected")

    message = asyncio.run(main())
    assert "c = await cache.new_async(...).connect()" in message
    assert "async with cache.new_async(...) as c:" in message


def test_with_on_an_async_cache_says_async_with() -> None:
    c: Any = cache.new_async()
    with pytest.raises(TypeError, match="use `async with`, not `with`"), c:
        pass
    lock: Any = c.lock("job", "nightly")
    with pytest.raises(TypeError, match="use `async with`"), lock:
        pass


def test_async_with_on_a_sync_cache_says_with() -> None:
    async def main() -> None:
        c: Any = cache.new()
        async with c:
            pass

    with pytest.raises(TypeError, match="use `with`, not `async with`"):
        asyncio.run(main())


def test_the_sync_face_inside_a_running_event_loop_warns() -> None:
    async def main() -> None:
        c = cache.new(EchoDriver())  # a store that would wait for I/O, as Redis does
        with pytest.warns(RuntimeWarning, match="blocks the loop.*use the async face"):
            c.connect()
        c.disconnect()

    asyncio.run(main())


def test_the_memory_store_does_not_warn_inside_an_event_loop(recwarn: Any) -> None:
    async def main() -> None:
        with cache.new() as c:  # in-process: nothing to wait for
            c.set("user", "1", "x")

    asyncio.run(main())
    assert [w for w in recwarn if issubclass(w.category, RuntimeWarning)] == []


@pytest.mark.parametrize(
    ("builder", "named"),
    [(cache.from_env, "cache.from_env("), (cache.from_env_async, "cache.from_env_async(")],
)
def test_an_unset_environment_variable_says_what_to_set_or_pass(
    monkeypatch: pytest.MonkeyPatch, builder: Any, named: str
) -> None:
    monkeypatch.delenv("PEVENSIE_CACHE_URL", raising=False)
    with pytest.raises(ConfigError) as caught:
        builder()
    message = str(caught.value)
    assert "PEVENSIE_CACHE_URL is not set" in message
    assert "redis://localhost:6379/0" in message  # what to set it to
    assert f"{named}default='memory://')" in message  # or what to pass


def test_an_empty_environment_variable_is_told_apart_from_an_unset_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PEVENSIE_CACHE_URL", "")
    with pytest.raises(ConfigError, match="PEVENSIE_CACHE_URL is set but empty"):
        cache.from_env()
    assert isinstance(cache.from_env(default="memory://").driver, MemoryDriver)


@pytest.mark.parametrize(
    ("url", "error", "fault"),
    [
        ("memory://?max_entris=5", UnknownOptionError, "did you mean 'max_entries'?"),
        ("memory://?max_entries=many", ConfigError, "max_entries"),
        ("nosuchscheme://h/0", DriverNotFound, "no cache driver for URL scheme"),
    ],
)
def test_a_bad_url_in_the_environment_names_the_variable_it_came_from(
    monkeypatch: pytest.MonkeyPatch, url: str, error: type[Exception], fault: str
) -> None:
    monkeypatch.setenv("APP_CACHE", url)
    for builder in (cache.from_env, cache.from_env_async):
        with pytest.raises(error) as caught:
            builder("APP_CACHE")
        assert str(caught.value).startswith("APP_CACHE: ")
        assert fault in str(caught.value)


def test_ttl_seconds_as_a_fraction_says_how_to_round() -> None:
    with cache.new() as c, pytest.raises(ArgumentValueError) as caught:
        c.set("user", "1", "x", ttl_seconds=1.5)
    message = str(caught.value)
    assert "ttl_seconds is whole seconds, got 1.5" in message
    assert "math.ceil(1.5) == 2" in message
    assert "datetime.timedelta" in message


def test_a_ttl_of_the_wrong_type_lists_every_type_ttl_seconds_takes() -> None:
    with cache.new() as c, pytest.raises(ArgumentTypeError) as caught:
        c.set("user", "1", "x", ttl_seconds="60")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "ttl_seconds must be None, an int, a float without fraction (60.0) "
        "or a datetime.timedelta, not str"
    )
    with cache.new() as c:
        c.set("user", "1", "x", ttl_seconds=60.0)  # what the message offers is taken


class UserRecord:
    """A class of the application's, which JSON cannot hold."""


@pytest.mark.parametrize(
    "value", [object(), {1}, uuid.UUID(int=1), decimal.Decimal(1), UserRecord()]
)
def test_a_value_json_cannot_hold_is_named_by_its_type(value: object) -> None:
    with cache.new() as c, pytest.raises(ArgumentTypeError) as caught:
        c.resource("user", codec="json").set("1", value)
    said = f"the json codec cannot encode a value of type {type(value).__name__}:"
    assert said in str(caught.value)


def test_the_dataclass_replace_of_a_config_is_checked_like_a_new_one() -> None:
    from pevensie_redis import default_config

    with pytest.raises(ConfigError, match="timeout is in milliseconds"):
        dataclasses.replace(default_config(), timeout=5)
