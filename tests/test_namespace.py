"""The namespace option: every key under ``<namespace>:``, clear kept inside, on any driver.

The facade hands the driver ``<namespace>:<resource_type>`` as the resource
type, so drivers need nothing new; these tests use the memory driver (its
native async face and, for a driver without one, the threaded fallback).
The Redis driver's modes (Cluster hash tags included) are in tests/redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pevensie_cache import (
    AsyncPevensieCache,
    ConfigError,
    LockTimeout,
    PevensieCache,
    ThreadedAsyncDriver,
    cache,
)
from pevensie_cache.memory import AsyncMemoryDriver, MemoryDriver


def test_keys_are_stored_under_the_namespace() -> None:
    with cache.new(namespace="app1") as c:
        c.set("user", "42", "Ada")
        c.set_many("user", {"43": "Bob"})
        assert c.incr("hits", "page") == 1
        assert c.add("user", "44", "Cy") is True
        driver = c.driver
        assert isinstance(driver, MemoryDriver)
        assert driver.keys() == {"app1:user:42", "app1:user:43", "app1:hits:page", "app1:user:44"}
        assert c.get("user", "42") == "Ada"
        assert c.get_many("user", ["42", "43"]) == {"42": "Ada", "43": "Bob"}
        assert c.exists("user", "42") is True
        assert c.ttl("user", "42") is None
        assert c.delete("user", "42") is True
        assert c.namespace == "app1"


def test_two_namespaces_on_one_store_never_see_each_other_and_clear_stays_inside() -> None:
    store = MemoryDriver()
    # Three caches over one store (each connect() starts the memory store afresh: all first).
    first = PevensieCache(store, namespace="app1").connect()
    second = PevensieCache(store, namespace="app2").connect()
    plain = PevensieCache(store).connect()
    first.set("user", "1", "first")
    second.set("user", "1", "second")
    plain.set("user", "1", "plain")
    assert (first.get("user", "1"), second.get("user", "1")) == ("first", "second")
    assert first.clear("user") == 1
    assert first.get("user", "1", None) is None
    assert second.get("user", "1") == "second"
    assert plain.get("user", "1") == "plain"
    assert store.keys() == {"app2:user:1", "user:1"}


def test_locks_and_memoised_functions_live_in_the_namespace() -> None:
    store = MemoryDriver()
    with PevensieCache(store, namespace="app1") as c:
        with c.lock("job", "nightly", wait_seconds=0):
            assert "app1:job:nightly" in store._locks
            with pytest.raises(LockTimeout):
                c.lock("job", "nightly", wait_seconds=0).acquire()

        @c.cached("report", ttl_seconds=60)
        def report(month: int) -> dict[str, int]:
            return {"month": month}

        assert report(3) == {"month": 3}
        assert [key.split(":", 2)[:2] for key in store.keys()]  # noqa: SIM118 == [["app1", "report"]]


@pytest.mark.parametrize(
    "build",
    [
        lambda: cache.from_url("memory://?namespace=app1&max_entries=10"),
        lambda: cache.from_url("memory://?max_entries=10", namespace="app1"),
        lambda: cache.from_url("memory://?namespace=other&max_entries=10", namespace="app1"),
        lambda: cache.from_config({"driver": "memory", "namespace": "app1", "max_entries": "10"}),
        lambda: cache.from_config({"cache.url": "memory://?namespace=app1"}, prefix="cache."),
        lambda: cache.new(driver="memory", namespace="app1", max_entries=10),
        lambda: cache.new(MemoryDriver(max_entries=10), namespace="app1"),
    ],
)
def test_every_builder_takes_the_namespace(build: Any) -> None:
    c = build()
    assert c.namespace == "app1"
    assert isinstance(c.driver, MemoryDriver)


def test_an_empty_namespace_in_text_means_none_as_for_every_optional_option() -> None:
    assert cache.from_url("memory://?namespace=").namespace is None
    assert cache.from_config({"driver": "memory", "namespace": ""}).namespace is None


def test_from_env_takes_the_namespace_from_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEVENSIE_CACHE_URL", "memory://?namespace=app1")
    assert cache.from_env().namespace == "app1"
    assert cache.from_env_async().namespace == "app1"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: cache.new(namespace="a:b"), "namespace must not contain ':'"),
        (lambda: cache.new(namespace=""), "namespace must not be empty"),
        (lambda: cache.new(namespace=5), "namespace must be a str"),
        (lambda: cache.from_url("memory://?namespace=a:b"), "namespace must not contain ':'"),
        (lambda: cache.from_config({"driver": "memory", "namespace": 5}), "must be a str"),
        (lambda: cache.from_url("memory://?namespace=a&namespace=b"), "given twice"),
    ],
)
def test_a_bad_namespace_is_a_config_error(build: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


def test_the_async_face_and_the_threaded_fallback_keep_the_namespace() -> None:
    async def main() -> None:
        async with cache.new_async(namespace="app1") as native:
            await native.set("user", "1", "Ada")
            driver = native.driver
            assert isinstance(driver, AsyncMemoryDriver)
            assert driver.store.keys() == {"app1:user:1"}
            assert await native.clear("user") == 1
        store = MemoryDriver()
        async with AsyncPevensieCache(ThreadedAsyncDriver(store), namespace="app1") as threaded:
            await threaded.set("user", "1", "Ada")
            assert await threaded.get_many("user", ["1"]) == {"1": "Ada"}
            async with threaded.lock("job", "n", wait_seconds=0) as held:
                await held.extend(5)
            assert store.keys() == {"app1:user:1"}

    asyncio.run(main())


@pytest.mark.parametrize(
    ("url", "driver_url", "taken"),
    [
        ("redis://:p%40ss@h:1/2?namespace=a&timeout=2s", "redis://:p%40ss@h:1/2?timeout=2s", "a"),
        ("redis://h/0?timeout=2s&namespace=a", "redis://h/0?timeout=2s", "a"),
        ("redis://h/0?namespace=a", "redis://h/0", "a"),
        ("redis://h/0?namespace=a#frag", "redis://h/0#frag", "a"),
        ("redis://h/0#x?namespace=a", "redis://h/0#x?namespace=a", None),
        ("redis://h/0?timeout=2s", "redis://h/0?timeout=2s", None),
    ],
)
def test_the_driver_gets_the_url_without_the_caches_options_and_otherwise_unchanged(
    url: str, driver_url: str, taken: str | None
) -> None:
    from pevensie_cache.urls import take_query_options

    rest, found = take_query_options(url, {"namespace", "fail_open"})
    assert rest == driver_url
    assert found.get("namespace") == taken
