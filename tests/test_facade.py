"""The facade: building caches, connection state, errors, and the batch fallbacks."""

from __future__ import annotations

from typing import Any

import pytest

from pevensie_cache import (
    AlreadyConnected,
    ArgumentError,
    ArgumentValueError,
    CacheMiss,
    ConfigError,
    DriverError,
    NotConnected,
    PevensieCache,
    PevensieCacheError,
    cache,
)
from pevensie_cache.memory import MemoryDriver


class Exploding:
    """A driver whose every operation raises a foreign exception holding a secret."""

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        raise OSError("connection to redis://u:hunter2@db failed")

    def get(self, resource_type: str, key: str) -> str | None:
        raise OSError("connection to redis://u:hunter2@db failed")

    def delete(self, resource_type: str, key: str) -> None:
        raise OSError("connection to redis://u:hunter2@db failed")


class Counting(MemoryDriver):
    """A memory driver without batch methods, counting single calls."""

    get_many = set_many = delete_many = None  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def set(self, *args: Any) -> None:
        self.calls += 1
        super().set(*args)


def test_new_defaults_to_the_memory_driver() -> None:
    c = cache.new()
    assert isinstance(c.driver, MemoryDriver)
    assert not c.connected


def test_connect_returns_the_same_cache() -> None:
    c = cache.new(driver="memory")
    assert c.connect() is c
    assert c.connected
    c.disconnect()
    assert not c.connected


def test_connect_twice_and_disconnect_twice_are_errors() -> None:
    c = cache.new(driver="memory").connect()
    with pytest.raises(AlreadyConnected):
        c.connect()
    c.disconnect()
    with pytest.raises(NotConnected):
        c.disconnect()


def test_operations_before_connect_raise_not_connected() -> None:
    c = cache.new(driver="memory")
    with pytest.raises(NotConnected, match="not connected"):
        c.set("user", "1", "x")
    with pytest.raises(NotConnected):
        c.get("user", "1")
    with pytest.raises(NotConnected):
        c.delete("user", "1")
    with pytest.raises(NotConnected, match=r"get_or_set\(\) on a cache that is not connected"):
        c.get_or_set("user", "1", lambda: "x")


def test_context_manager_connects_and_disconnects() -> None:
    c = cache.new(driver="memory")
    with c as inside:
        assert inside is c
        assert c.connected
        c.set("user", "1", "x")
    assert not c.connected


def test_context_manager_disconnects_when_the_body_raises() -> None:
    c = cache.new(driver="memory")
    with pytest.raises(RuntimeError), c:
        raise RuntimeError("boom")
    assert not c.connected


def test_cache_miss_is_a_key_error_with_a_clear_message() -> None:
    with cache.new() as c, pytest.raises(KeyError) as caught:
        c.get("user", "404")
    assert isinstance(caught.value, CacheMiss)
    assert str(caught.value) == "no cached value for resource type 'user', key '404'"


def test_argument_errors_are_value_and_type_errors() -> None:
    with cache.new() as c:
        with pytest.raises(ValueError, match="must not contain ':'"):
            c.set("a:b", "k", "v")
        with pytest.raises(TypeError, match=r"value must be a str, not bytes \(decode bytes first"):
            c.set("a", "k", b"v")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"ttl_seconds must be None, an int, .*, not bool"):
            c.set("a", "k", "v", ttl_seconds=True)
        with pytest.raises(ArgumentValueError, match="at least 1, got 0"):
            c.set("a", "k", "v", ttl_seconds=0)


@pytest.mark.parametrize(
    "seconds", [10**15 + 1, 10**16, 1e17, 10**400], ids=["max+1", "1e16", "1e17-float", "1e400"]
)
def test_durations_beyond_the_longest_ttl_are_refused_by_every_call(seconds: Any) -> None:
    # Redis refuses an expiry past 64-bit milliseconds (a server error, after the
    # call): every call refuses it first, with the bound in the message, on any driver.
    loads: list[int] = []

    def load() -> str:
        loads.append(1)
        return "v"

    calls = [
        lambda c: c.set("a", "k", "v", ttl_seconds=seconds),
        lambda c: c.set_many("a", {"k": "v"}, ttl_seconds=seconds),
        lambda c: c.add("a", "k", "v", ttl_seconds=seconds),
        lambda c: c.incr("a", "k", ttl_seconds=seconds),
        lambda c: c.touch("a", "k", ttl_seconds=seconds),
        lambda c: c.get_or_set("a", "k", load, ttl_seconds=seconds),
        lambda c: c.get_or_set("a", "k", load, ttl_seconds=60, stale_seconds=int(seconds)),
        lambda c: c.get_or_set("a", "k", load, ttl_seconds=60, lock=True, lock_lease=seconds),
        lambda c: c.get_or_set("a", "k", load, ttl_seconds=60, lock=True, lock_wait=seconds),
        lambda c: c.resource("a").set("k", "v", ttl_seconds=seconds),
        lambda c: c.lock("a", "k", ttl_seconds=seconds),
        lambda c: c.lock("a", "k", wait_seconds=seconds),
        lambda c: c.acquire_lock("a", "k", "token", seconds),
    ]
    with cache.new() as c:
        for call in calls:
            with pytest.raises(ArgumentValueError, match="at most 1000000000000000 seconds"):
                call(c)
        assert loads == []
        assert c.get("a", "k", default=None) is None


_BAD_LOCK_TIMES = ["10", True, 0, -1, float("nan"), float("inf")]


@pytest.mark.parametrize(
    ("name", "seconds"),
    [("lock_lease", None)] + [(n, s) for n in ("lock_lease", "lock_wait") for s in _BAD_LOCK_TIMES],
)
def test_get_or_set_checks_its_lock_times_as_the_lock_checks_its_own(
    name: str, seconds: Any
) -> None:
    loads: list[int] = []

    def load() -> str:
        loads.append(1)
        return "v"

    with cache.new() as c:
        with pytest.raises(ArgumentError) as by_lock:
            c.lock("a", "k", ttl_seconds=seconds)
        with pytest.raises(type(by_lock.value)) as by_get_or_set:
            c.get_or_set("a", "k", load, lock=True, **{name: seconds})
        assert str(by_get_or_set.value) == str(by_lock.value).replace("ttl_seconds", name)
        assert loads == []


def test_options_with_a_driver_object_are_an_error() -> None:
    with pytest.raises(ConfigError, match="max_entries"):
        cache.new(driver=MemoryDriver(), max_entries=3)


def test_unknown_options_are_a_config_error_naming_them() -> None:
    with pytest.raises(ConfigError, match=r"unknown memory driver option 'bogus'.*max_entries"):
        cache.new(driver="memory", bogus=1)
    with pytest.raises(ConfigError, match="max_entries"):
        cache.new(driver="memory", max_entries=0)


def test_something_that_is_not_a_driver_is_rejected() -> None:
    with pytest.raises(ConfigError, match="not a cache driver"):
        cache.new(driver=object())  # type: ignore[arg-type]


def test_foreign_driver_exceptions_become_driver_errors_without_their_text() -> None:
    c = cache.new(driver=Exploding()).connect()
    for call in (
        lambda: c.set("a", "k", "v"),
        lambda: c.get("a", "k"),
        lambda: c.delete("a", "k"),
        lambda: c.get_many("a", ["k"]),
        lambda: c.get_or_set("a", "k", lambda: "v"),  # its lookup, before any load
    ):
        with pytest.raises(DriverError) as caught:
            call()
        assert isinstance(caught.value, PevensieCacheError)
        assert isinstance(caught.value.__cause__, OSError)
        assert "hunter2" not in str(caught.value)
        assert "OSError" in str(caught.value)


def test_drivers_without_batch_methods_get_a_fallback() -> None:
    driver = Counting()
    with cache.new(driver=driver) as c:
        c.set_many("bulk", {"a": "1", "b": "2"}, ttl_seconds=30)
        assert driver.calls == 2
        assert c.get_many("bulk", ["a", "b", "c"]) == {"a": "1", "b": "2"}
        c.delete_many("bulk", ["a"])
        assert c.get_many("bulk", ["a", "b"]) == {"b": "2"}


def test_from_url_picks_the_driver_by_scheme() -> None:
    c = cache.from_url("memory://?max_entries=5")
    assert isinstance(c.driver, MemoryDriver)
    assert c.driver.max_entries == 5
    assert cache.from_url("MEMORY://", max_entries=7).driver.max_entries == 7  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url", ["memory", "", "://x", "memory://?max_entries=x", "memory://?other=1"]
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises((ConfigError, LookupError)):
        cache.from_url(url)


def test_from_config_with_a_driver_name_and_options() -> None:
    c = cache.from_config({"driver": "memory", "max_entries": 9})
    assert c.driver.max_entries == 9  # type: ignore[attr-defined]


def test_from_config_with_a_url_and_a_prefix() -> None:
    c = cache.from_config(
        {"cache.url": "memory://", "cache.max_entries": 4, "other": "ignored"}, prefix="cache."
    )
    assert c.driver.max_entries == 4  # type: ignore[attr-defined]


def test_from_config_errors() -> None:
    with pytest.raises(ConfigError, match="needs driver or url"):
        cache.from_config({"max_entries": 3})
    with pytest.raises(ConfigError, match="does not match"):
        cache.from_config({"driver": "dupe-only", "url": "memory://"})
    with pytest.raises(ConfigError, match="must be a mapping"):
        cache.from_config([("driver", "memory")])  # type: ignore[arg-type]


def test_from_env_reads_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEVENSIE_CACHE_URL", "memory://?max_entries=11")
    assert cache.from_env().driver.max_entries == 11  # type: ignore[attr-defined]
    monkeypatch.delenv("PEVENSIE_CACHE_URL")
    with pytest.raises(ConfigError, match="PEVENSIE_CACHE_URL is not set"):
        cache.from_env()
    assert isinstance(cache.from_env(default="memory://").driver, MemoryDriver)


def test_repr_says_driver_and_state() -> None:
    c = cache.new(driver="memory", max_entries=3)
    assert repr(c) == "<PevensieCache MemoryDriver(max_entries=3) disconnected>"
    c.connect()
    assert repr(c).endswith("connected>")


def test_a_cache_object_is_exposed_as_pevensie_cache() -> None:
    assert isinstance(cache.new(), PevensieCache)
