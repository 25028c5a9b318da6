"""Discoverability: errors that say what to do, forgiving names, a clean public namespace.

Also a with-block on a live cache. Each test pins one friction a new user met
in their first hour (issue 15).
"""

from __future__ import annotations

import pytest

from pevensie_cache import ArgumentTypeError, DriverNotFound, cache


@pytest.fixture
def memory_cache() -> cache.PevensieCache:
    return cache.new(driver="memory").connect()


def test_a_value_that_is_not_a_str_says_how_to_store_it(memory_cache: cache.PevensieCache) -> None:
    with pytest.raises(ArgumentTypeError, match=r"not dict.*codec='json'"):
        memory_cache.set("user", "1", {"name": "Ada"})  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match=r"not bytes \(decode bytes first"):
        memory_cache.set("user", "1", b"Ada")  # type: ignore[arg-type]


def test_a_bad_value_in_a_batch_names_its_key_never_the_value(
    memory_cache: cache.PevensieCache,
) -> None:
    with pytest.raises(ArgumentTypeError) as caught:
        memory_cache.set_many("user", {"ok": "fine", "bad-one": 12345})  # type: ignore[dict-item]
    assert "items['bad-one']" in str(caught.value)
    assert "12345" not in str(caught.value)
    assert memory_cache.get_many("user", ["ok", "bad-one"]) == {}


def test_driver_names_are_matched_in_any_case() -> None:
    assert type(cache.new(driver="Memory").driver).__name__ == "MemoryDriver"
    assert type(cache.new(driver="REDIS", port=6390).driver).__name__ == "RedisDriver"


def test_a_misspelt_driver_name_or_scheme_gets_a_suggestion_on_its_own_line() -> None:
    with pytest.raises(DriverNotFound) as caught:
        cache.new(driver="rdis")
    first, *rest = str(caught.value).splitlines()
    assert first == "no cache driver named 'rdis' (did you mean 'redis'?)."
    assert "Installed drivers:" in rest
    with pytest.raises(DriverNotFound, match=r"did you mean 'redis://'\?"):
        cache.from_url("rediz://localhost")


def test_with_on_a_connected_cache_connects_nothing_and_leaves_it_connected(
    memory_cache: cache.PevensieCache,
) -> None:
    with memory_cache as c:
        c.set("user", "1", "Ada")
    assert memory_cache.connected
    with cache.new(driver="memory") as fresh:
        assert fresh.connected
    assert not fresh.connected


def test_dir_of_the_packages_shows_the_public_api_only() -> None:
    import pevensie_cache

    assert {"annotations", "facade", "validation", "cache_module"}.isdisjoint(dir(pevensie_cache))
    assert "new" in dir(cache)
    assert "from_url_async" in dir(cache)
    assert {"Any", "os", "threading", "Mapping"}.isdisjoint(dir(cache))
