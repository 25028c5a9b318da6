"""Inspectors: what a driver's plugin lets operator tools see, and what happens without one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from clock_support import ShiftedClock

from pevensie_cache import PevensieCache, UnsupportedOperation, cache, hookimpl
from pevensie_cache.cache import identify_driver
from pevensie_cache.inspection import CacheInspector, KeyTtl, ServerInfo, resource_type_of
from pevensie_cache.memory import MemoryDriver
from pevensie_cache.plugins import register_plugin, reset


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    reset()
    yield
    reset()


@pytest.fixture
def c() -> Iterator[PevensieCache]:
    with cache.new(driver="memory") as connected:
        yield connected


def test_the_memory_inspector_answers_ttls(c: PevensieCache) -> None:
    inspector = cache.inspector(c)
    assert isinstance(inspector, CacheInspector)
    c.set("user", "1", "a", ttl_seconds=100)
    c.set("user", "2", "b")
    assert inspector.ttl("user", "3") == KeyTtl(exists=False)
    assert inspector.ttl("user", "2") == KeyTtl(exists=True, seconds=None)
    left = inspector.ttl("user", "1")
    assert left.exists
    assert left.seconds is not None
    assert 90 < left.seconds <= 100


def test_the_memory_inspector_lists_one_resource_type_in_pages(c: PevensieCache) -> None:
    c.set_many("a*b", {f"k{i}": "v" for i in range(25)})
    c.set_many("axb", {"k0": "v"})
    c.set_many("a", {"*b:k1": "v"})  # stored as "a:*b:k1", not a key of "a*b"
    pages = list(cache.inspector(c).keys("a*b", 10))
    assert [len(page) for page in pages] == [10, 10, 5]
    assert sorted(key for page in pages for key in page) == sorted(f"k{i}" for i in range(25))


def test_the_memory_inspector_samples_and_describes_the_store(c: PevensieCache) -> None:
    c.set_many("user", {str(i): "u" for i in range(6)})
    c.set_many("session", {str(i): "s" for i in range(4)})
    inspector = cache.inspector(c)
    assert inspector.server_info() == ServerInfo(server="memory (in-process)", keys=10)
    assert inspector.server_info().hit_ratio is None
    whole = inspector.sample(1000)
    assert (whole.sampled, whole.total) == (10, 10)
    assert dict(whole.by_resource_type) == {"user": 6, "session": 4}
    assert inspector.sample(3).sampled == 3
    assert inspector.baseline() is None


def test_the_librarys_own_keys_count_as_lock_and_tag(c: PevensieCache) -> None:
    c.set("user", "1", "Ada", tags=["team:7"])
    sample = cache.inspector(c).sample(100)
    assert dict(sample.by_resource_type) == {"user": 1, ":tag": 1}
    assert sample.foreign == 0


@pytest.mark.parametrize(
    ("stored", "resource_type"),
    [
        ("user:1", "user"),
        ("user:a:b", "user"),
        (":lock:user:1", ":lock"),
        (":tag:team:7", ":tag"),
        (":other:x", None),
        (":lock", None),
        ("no-colon", None),
    ],
)
def test_a_stored_name_is_read_as_its_resource_type(stored: str, resource_type: str | None) -> None:
    assert resource_type_of(stored) == resource_type


async def test_the_async_memory_cache_has_the_same_inspector() -> None:
    async with cache.new_async(driver="memory") as c:
        await c.set("user", "1", "a", ttl_seconds=5)
        found = cache.inspector(c).ttl("user", "1")
        assert found.exists
        assert found.seconds is not None
        assert 0 < found.seconds <= 5
        assert identify_driver(c)[0] == "memory"


def test_a_driver_without_an_inspector_is_unsupported() -> None:
    class Bare:
        def connect(self) -> None: ...
        def disconnect(self) -> None: ...
        def set(self, resource_type: str, key: str, value: str, ttl: int | None) -> None: ...
        def get(self, resource_type: str, key: str) -> str | None:
            return None

        def delete(self, resource_type: str, key: str) -> None: ...

    bare = cache.new(driver=Bare())
    assert identify_driver(bare) == ("Bare", None)
    with pytest.raises(UnsupportedOperation, match="the Bare driver offers no inspector"):
        cache.inspector(bare)


def test_a_plugin_registers_an_inspector_with_its_driver() -> None:
    seen: list[object] = []

    class Inspector:
        def server_info(self) -> ServerInfo:
            return ServerInfo(server="handmade", version="1.0")

        def ttl(self, resource_type: str, key: str) -> KeyTtl:
            return KeyTtl(exists=False)

        def keys(self, resource_type: str, page_size: int) -> Iterator[list[str]]:
            yield from ()

        def sample(self, limit: int) -> Any:
            raise UnsupportedOperation("no sampling here")

        def baseline(self) -> None:
            return None

    class Handmade(MemoryDriver):
        pass

    def inspector(driver: object) -> Inspector | None:
        seen.append(driver)
        return Inspector() if isinstance(driver, Handmade) else None

    class Plugin:
        @hookimpl
        def register_cache_drivers(self, register: Any) -> None:
            register("handmade", lambda **o: Handmade(**o), inspector=inspector)

    register_plugin(Plugin(), name="handmade-plugin")
    with cache.new(driver="handmade") as handmade:
        assert cache.inspector(handmade).server_info().server == "handmade"
        assert identify_driver(handmade)[0] == "handmade"
    with cache.new(driver="memory") as memory:
        assert identify_driver(memory)[0] == "memory"  # the subclass's plugin is not fooled
    assert all(type(driver) is Handmade for driver in seen if isinstance(driver, MemoryDriver))


def test_a_non_callable_inspector_is_the_plugins_failure() -> None:
    class Plugin:
        @hookimpl
        def register_cache_drivers(self, register: Any) -> None:
            register("badinspector", lambda **o: MemoryDriver(**o), inspector="not callable")

    register_plugin(Plugin(), name="bad-inspector-plugin")
    [info] = [info for info in cache.drivers() if info.name == "bad-inspector-plugin"]
    assert not info.loaded
    assert "inspector is not callable" in (info.error or "")


def test_memory_ttl_counts_down() -> None:
    clock = ShiftedClock()
    with cache.new(driver=MemoryDriver(clock=clock)) as c:
        # A minute: the clock also flows (a loaded machine once took a whole second here).
        c.set("user", "1", "a", ttl_seconds=60)
        first = cache.inspector(c).ttl("user", "1").seconds
        clock.advance(0.05)
        later = cache.inspector(c).ttl("user", "1").seconds
        assert first is not None
        assert later is not None
        assert later < first
