"""The conformance suite: the behaviour every Pevensie Cache driver must have.

Any driver, ours or a third party's, runs it against itself by subclassing
:class:`CacheConformance` in a test module and overriding two fixtures::

    import pytest
    from pevensie_cache import cache
    from pevensie_cache.testing import CacheConformance

    class TestMyDriver(CacheConformance):
        @pytest.fixture
        def cache(self):
            c = cache.new(driver="mydriver").connect()  # connected and empty
            yield c
            c.disconnect()

        @pytest.fixture
        def stored_keys(self, cache):
            return lambda: set(...)  # every stored key, as "<resource_type>:<key>"

``stored_keys`` lets the suite prove that a rejected call wrote nothing. The
suite needs ``pytest`` and ``hypothesis`` (the ``testing`` extra).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pevensie_cache.cache import PevensieCache
from pevensie_cache.errors import (
    AlreadyConnected,
    ArgumentError,
    ArgumentTypeError,
    ArgumentValueError,
    CacheMiss,
    NotConnected,
)

__all__ = ["BAD_ADDRESSES", "BAD_TTLS", "BAD_VALUES", "CacheConformance"]

StoredKeys = Callable[[], set[str]]

BAD_ADDRESSES: list[tuple[Any, Any, type[ArgumentError]]] = [
    ("", "k", ArgumentValueError),
    ("a:b", "k", ArgumentValueError),
    ("rt", "", ArgumentValueError),
    (None, "k", ArgumentTypeError),
    ("rt", None, ArgumentTypeError),
    (b"rt", "k", ArgumentTypeError),
    ("rt", b"k", ArgumentTypeError),
    ("rt", 42, ArgumentTypeError),
    ("rt", "\ud800", ArgumentValueError),
    ("r\udfff", "k", ArgumentValueError),
]
"""``(resource_type, key, error)`` triples every driver must reject."""

BAD_VALUES: list[tuple[Any, type[ArgumentError]]] = [
    (b"bytes", ArgumentTypeError),
    (bytearray(b"x"), ArgumentTypeError),
    (42, ArgumentTypeError),
    (None, ArgumentTypeError),
    (["a"], ArgumentTypeError),
    ("lone \udc80 surrogate", ArgumentValueError),
]
"""``(value, error)`` pairs every driver must reject."""

BAD_TTLS: list[tuple[Any, type[ArgumentError]]] = [
    (0, ArgumentValueError),
    (-1, ArgumentValueError),
    (True, ArgumentTypeError),
    (1.5, ArgumentTypeError),
    ("10", ArgumentTypeError),
]
"""``(ttl_seconds, error)`` pairs every driver must reject."""

_TTL_WAIT = 1.1  # the Gleam suite's wait after a 1 s TTL
_text = st.text(min_size=1, max_size=300)  # hypothesis text excludes lone surrogates
_no_surrogates = st.characters(exclude_categories=["Cs"])
# Pieces that break naive protocol code: NUL, CR/LF, RESP framing, emoji, bidi controls.
_awkward_piece = st.sampled_from(
    [
        "\x00",
        "\r",
        "\n",
        "\r\n",
        "*3\r\n$3\r\nSET\r\n",
        "$-1\r\n",
        "-ERR x\r\n",
        "+OK\r\n",
        ":1\r\n",
        "%2\r\n",
        "🐍",
        "👩‍💻",
        "é",
        "\u202e",
        "\ufeff",
        " ",
        "\t",
        ":",
        "\\",
        "\x7f",
    ]
)
_awkward_text = st.lists(_awkward_piece | _no_surrogates, min_size=1, max_size=40).map("".join)
_long_text = st.builds(lambda piece, n: piece * n, _awkward_text, st.integers(200, 2000))
_any_key = _awkward_text | _long_text | _text
_any_resource_type = _awkward_text.map(lambda text: text.replace(":", ";"))
_any_value = st.text(max_size=2000) | _awkward_text | _long_text
_lone_surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_with_lone_surrogate = st.tuples(st.text(max_size=20), _lone_surrogate, st.text(max_size=20)).map(
    "".join
)
_PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    # Each driver's subclass runs these tests with its own fixture: by design.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.differing_executors,
        HealthCheck.too_slow,
    ],
)


class CacheConformance:
    """Tests every driver passes. Subclass it and override ``cache`` and ``stored_keys``."""

    @pytest.fixture
    def cache(self) -> PevensieCache:
        """Provide a connected cache holding no keys; override in the subclass."""
        raise NotImplementedError("override the `cache` fixture")

    @pytest.fixture
    def stored_keys(self, cache: PevensieCache) -> StoredKeys:
        """Return a callable listing every stored key; override in the subclass."""
        raise NotImplementedError("override the `stored_keys` fixture")

    # -- the Gleam suite --------------------------------------------------------------

    def test_set_then_get_round_trips(self, cache: PevensieCache) -> None:
        cache.set("user", "42", "Ada")
        assert cache.get("user", "42") == "Ada"

    def test_get_of_absent_key_is_a_miss(self, cache: PevensieCache) -> None:
        with pytest.raises(CacheMiss) as caught:
            cache.get("user", "nobody")
        assert isinstance(caught.value, KeyError)
        assert (caught.value.resource_type, caught.value.key) == ("user", "nobody")

    def test_get_with_default_returns_it_on_a_miss(self, cache: PevensieCache) -> None:
        assert cache.get("user", "nobody", default=None) is None
        assert cache.get("user", "nobody", default="fallback") == "fallback"
        cache.set("user", "1", "there")
        assert cache.get("user", "1", default="fallback") == "there"

    def test_set_overwrites(self, cache: PevensieCache) -> None:
        cache.set("user", "42", "old")
        cache.set("user", "42", "new")
        assert cache.get("user", "42") == "new"

    def test_delete_then_get_is_a_miss(self, cache: PevensieCache) -> None:
        cache.set("user", "42", "Ada")
        cache.delete("user", "42")
        with pytest.raises(CacheMiss):
            cache.get("user", "42")

    def test_delete_of_absent_key_is_fine(self, cache: PevensieCache) -> None:
        cache.delete("user", "never-set")
        with pytest.raises(CacheMiss):
            cache.get("user", "never-set")

    def test_value_expires_after_its_ttl(self, cache: PevensieCache) -> None:
        cache.set("session", "s1", "data", ttl_seconds=1)
        assert cache.get("session", "s1") == "data"
        time.sleep(_TTL_WAIT)
        with pytest.raises(CacheMiss):
            cache.get("session", "s1")

    def test_a_later_ttl_overrides_an_earlier_one(self, cache: PevensieCache) -> None:
        cache.set("session", "s1", "data", ttl_seconds=100)
        cache.set("session", "s1", "data", ttl_seconds=1)
        time.sleep(_TTL_WAIT)
        with pytest.raises(CacheMiss):
            cache.get("session", "s1")

    def test_set_without_ttl_clears_an_earlier_ttl(self, cache: PevensieCache) -> None:
        cache.set("session", "s1", "first", ttl_seconds=1)
        cache.set("session", "s1", "second")
        time.sleep(_TTL_WAIT)
        assert cache.get("session", "s1") == "second"

    # -- addressing and values --------------------------------------------------------

    def test_resource_types_are_separate_namespaces(self, cache: PevensieCache) -> None:
        cache.set("user", "1", "a user")
        cache.set("team", "1", "a team")
        assert cache.get("user", "1") == "a user"
        assert cache.get("team", "1") == "a team"

    def test_keys_may_contain_colons(self, cache: PevensieCache, stored_keys: StoredKeys) -> None:
        cache.set("user", "a:b:c", "colons")
        assert cache.get("user", "a:b:c") == "colons"
        assert "user:a:b:c" in stored_keys()

    def test_keys_are_stored_as_resource_type_colon_key(
        self, cache: PevensieCache, stored_keys: StoredKeys
    ) -> None:
        cache.set("user", "42", "Ada")
        assert stored_keys() == {"user:42"}

    def test_empty_value_round_trips(self, cache: PevensieCache) -> None:
        cache.set("blob", "empty", "")
        assert cache.get("blob", "empty") == ""

    def test_unicode_round_trips(self, cache: PevensieCache) -> None:
        value = "Zażółć gęślą jaźń, 日本語, emoji 🐍🎉, combining é, RTL שלום"
        cache.set("ünïcode", "ключ🔑", value)
        assert cache.get("ünïcode", "ключ🔑") == value

    def test_awkward_text_round_trips(self, cache: PevensieCache) -> None:
        for i, value in enumerate(
            ["nul\x00inside", "cr\r\nlf", "*3\r\n$3\r\nSET\r\n", "-ERR fake\r\n", " padded ", "\t"]
        ):
            cache.set("awkward", f"k{i}\x00\r\n", value)
            assert cache.get("awkward", f"k{i}\x00\r\n") == value

    def test_large_value_round_trips(self, cache: PevensieCache) -> None:
        value = "x" * (4 * 1024 * 1024) + "end"
        cache.set("blob", "large", value)
        assert cache.get("blob", "large") == value

    def test_long_key_round_trips(self, cache: PevensieCache) -> None:
        key = "k" * 10_000
        cache.set("blob", key, "long key")
        assert cache.get("blob", key) == "long key"

    def test_64_mib_value_round_trips(self, cache: PevensieCache) -> None:
        value = "0123456789abcdef" * (4 * 1024 * 1024) + "✓"
        cache.set("blob", "huge", value)
        assert cache.get("blob", "huge") == value
        cache.delete("blob", "huge")

    @_PROPERTY_SETTINGS
    @given(key=_text, value=st.text(max_size=2000))
    def test_any_text_round_trips(self, cache: PevensieCache, key: str, value: str) -> None:
        cache.set("prop", key, value)
        assert cache.get("prop", key) == value
        cache.delete("prop", key)
        assert cache.get("prop", key, default=None) is None

    @_PROPERTY_SETTINGS
    @given(resource_type=_any_resource_type, key=_any_key, value=_any_value)
    def test_awkward_text_round_trips_through_every_operation(
        self,
        cache: PevensieCache,
        stored_keys: StoredKeys,
        resource_type: str,
        key: str,
        value: str,
    ) -> None:
        before = stored_keys()
        cache.set(resource_type, key, value, ttl_seconds=600)
        assert cache.get(resource_type, key) == value
        assert f"{resource_type}:{key}" in stored_keys()
        cache.set_many(resource_type, {key: value + "!", key + "2": value})
        assert cache.get_many(resource_type, [key, key + "2", key + "3"]) == {
            key: value + "!",
            key + "2": value,
        }
        cache.delete(resource_type, key)
        cache.delete_many(resource_type, [key + "2"])
        assert cache.get_many(resource_type, [key, key + "2"]) == {}
        assert stored_keys() == before

    @_PROPERTY_SETTINGS
    @given(where=st.sampled_from(["resource_type", "key", "value"]), bad=_with_lone_surrogate)
    def test_a_lone_surrogate_anywhere_is_rejected_and_writes_nothing(
        self, cache: PevensieCache, stored_keys: StoredKeys, where: str, bad: str
    ) -> None:
        parts = {"resource_type": "rt", "key": "k", "value": "v"}
        parts[where] = bad
        resource_type, key, value = parts["resource_type"], parts["key"], parts["value"]
        before = stored_keys()
        with pytest.raises(ArgumentValueError):
            cache.set(resource_type, key, value)
        with pytest.raises(ArgumentValueError):
            cache.set_many(resource_type, {"fine": "ok", key: value}, ttl_seconds=60)
        if where != "value":
            with pytest.raises(ArgumentValueError):
                cache.get(resource_type, key)
            with pytest.raises(ArgumentValueError):
                cache.delete(resource_type, key)
            with pytest.raises(ArgumentValueError):
                cache.get_many(resource_type, ["fine", key])
            with pytest.raises(ArgumentValueError):
                cache.delete_many(resource_type, ["fine", key])
        assert stored_keys() == before

    # -- bad input changes nothing ----------------------------------------------------

    @pytest.mark.parametrize(("resource_type", "key", "error"), BAD_ADDRESSES)
    def test_bad_address_is_rejected_and_writes_nothing(
        self,
        cache: PevensieCache,
        stored_keys: StoredKeys,
        resource_type: Any,
        key: Any,
        error: type[ArgumentError],
    ) -> None:
        cache.set("guard", "g", "kept")
        before = stored_keys()
        with pytest.raises(error):
            cache.set(resource_type, key, "value")
        with pytest.raises(error):
            cache.get(resource_type, key)
        with pytest.raises(error):
            cache.delete(resource_type, key)
        assert stored_keys() == before
        assert cache.get("guard", "g") == "kept"

    @pytest.mark.parametrize(("value", "error"), BAD_VALUES)
    def test_bad_value_is_rejected_and_writes_nothing(
        self,
        cache: PevensieCache,
        stored_keys: StoredKeys,
        value: Any,
        error: type[ArgumentError],
    ) -> None:
        cache.set("user", "1", "kept")
        before = stored_keys()
        with pytest.raises(error):
            cache.set("user", "1", value)
        with pytest.raises(error):
            cache.set("user", "2", value)
        assert stored_keys() == before
        assert cache.get("user", "1") == "kept"

    @pytest.mark.parametrize(("ttl", "error"), BAD_TTLS)
    def test_bad_ttl_is_rejected_and_changes_nothing(
        self,
        cache: PevensieCache,
        stored_keys: StoredKeys,
        ttl: Any,
        error: type[ArgumentError],
    ) -> None:
        cache.set("user", "1", "kept")
        before = stored_keys()
        with pytest.raises(error):
            cache.set("user", "1", "changed", ttl_seconds=ttl)
        with pytest.raises(error):
            cache.set_many("user", {"2": "new"}, ttl_seconds=ttl)
        assert stored_keys() == before
        assert cache.get("user", "1") == "kept"

    @pytest.mark.parametrize(("resource_type", "key", "error"), BAD_ADDRESSES)
    def test_bad_address_is_rejected_by_batch_operations_and_writes_nothing(
        self,
        cache: PevensieCache,
        stored_keys: StoredKeys,
        resource_type: Any,
        key: Any,
        error: type[ArgumentError],
    ) -> None:
        cache.set("guard", "g", "kept")
        before = stored_keys()
        with pytest.raises(error):
            cache.set_many(resource_type, {"fine": "value", key: "value"})
        with pytest.raises(error):
            cache.get_many(resource_type, ["fine", key])
        with pytest.raises(error):
            cache.delete_many(resource_type, ["guard", key])
        assert stored_keys() == before
        assert cache.get("guard", "g") == "kept"

    # -- batch operations -------------------------------------------------------------

    def test_get_many_returns_hits_only(self, cache: PevensieCache) -> None:
        cache.set("user", "1", "one")
        cache.set("user", "3", "three")
        assert cache.get_many("user", ["1", "2", "3"]) == {"1": "one", "3": "three"}
        assert cache.get_many("user", []) == {}
        assert cache.get_many("team", ["1"]) == {}

    def test_set_many_then_get_many_round_trips(
        self, cache: PevensieCache, stored_keys: StoredKeys
    ) -> None:
        items = {f"k{i}": f"value {i} ✓" for i in range(250)}
        cache.set_many("bulk", items)
        assert cache.get_many("bulk", list(items)) == items
        assert cache.get("bulk", "k7") == "value 7 ✓"
        assert stored_keys() == {f"bulk:{key}" for key in items}

    def test_set_many_with_ttl_expires_every_key(self, cache: PevensieCache) -> None:
        cache.set_many("bulk", {"a": "1", "b": "2"}, ttl_seconds=1)
        cache.set_many("bulk", {"c": "3"}, ttl_seconds=100)
        cache.set("bulk", "d", "4", ttl_seconds=1)
        cache.set_many("bulk", {"d": "4 again"})
        time.sleep(_TTL_WAIT)
        assert cache.get_many("bulk", ["a", "b", "c", "d"]) == {"c": "3", "d": "4 again"}

    def test_delete_many_removes_every_key(self, cache: PevensieCache) -> None:
        cache.set_many("bulk", {"a": "1", "b": "2", "c": "3"})
        cache.delete_many("bulk", ["a", "c", "absent"])
        assert cache.get_many("bulk", ["a", "b", "c"]) == {"b": "2"}
        cache.delete_many("bulk", [])

    def test_one_bad_item_rejects_the_whole_batch(
        self, cache: PevensieCache, stored_keys: StoredKeys
    ) -> None:
        before = stored_keys()
        with pytest.raises(ArgumentTypeError):
            cache.set_many("bulk", {"a": "1", "b": b"2", "c": "3"})  # type: ignore[dict-item]
        with pytest.raises(ArgumentValueError):
            cache.set_many("bulk", {"a": "1", "": "2"})
        with pytest.raises(ArgumentValueError):
            cache.set_many("bad:type", {"a": "1"})
        with pytest.raises(ArgumentTypeError):
            cache.get_many("bulk", "abc")
        with pytest.raises(ArgumentTypeError):
            cache.delete_many("bulk", ["a", 1])  # type: ignore[list-item]
        assert stored_keys() == before

    # -- connection state -------------------------------------------------------------

    def test_connect_twice_is_already_connected(self, cache: PevensieCache) -> None:
        with pytest.raises(AlreadyConnected):
            cache.connect()
        cache.set("user", "1", "still works")
        assert cache.get("user", "1") == "still works"

    def test_operations_after_disconnect_are_not_connected(self, cache: PevensieCache) -> None:
        cache.disconnect()
        try:
            for call in (
                lambda: cache.set("user", "1", "x"),
                lambda: cache.get("user", "1"),
                lambda: cache.delete("user", "1"),
                lambda: cache.get_many("user", ["1"]),
                lambda: cache.set_many("user", {"1": "x"}),
                lambda: cache.delete_many("user", ["1"]),
                cache.disconnect,
            ):
                with pytest.raises(NotConnected):
                    call()
        finally:
            cache.connect()
        cache.set("user", "1", "back")
        assert cache.get("user", "1") == "back"

    # -- concurrency ------------------------------------------------------------------

    def test_many_threads_each_read_their_own_writes(self, cache: PevensieCache) -> None:
        threads, rounds = 8, 150
        errors: list[str] = []

        def work(worker: int) -> None:
            for i in range(rounds):
                key, value = f"w{worker}-{i % 10}", f"{worker}:{i}"
                cache.set("threads", key, value, ttl_seconds=60 if i % 2 else None)
                got = cache.get("threads", key)
                if got != value:
                    errors.append(f"worker {worker} wrote {value!r} but read {got!r}")
                if i % 7 == 0:
                    cache.delete("threads", key)

        pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in pool)
        assert errors == []
