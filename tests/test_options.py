"""Driver options declared once (pevensie_cache.options), and the memory driver's option."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from pevensie_cache import ConfigError, cache
from pevensie_cache.memory import MemoryDriver
from pevensie_cache.options import Alias, Option, OptionSet

TIMEOUT = Option(
    name="timeout", kind="duration", unit="ms", low=1, floor=100, query=True, doc="A timeout."
)
PORT = Option(name="port", kind="int", low=1, high=65535, query=False, doc="A port.")
FLAG = Option(name="flag", kind="bool", query=True, doc="A flag.")
LABEL = Option(name="label", kind="str", optional=True, query=True, doc="A label.")
TOKEN = Option(name="token", kind="str", optional=True, secret=True, query=False, doc="A token.")
LIMIT = Option(name="limit", kind="int", low=1, secret=True, query=False, doc="A secret number.")
BOUND = Option(name="bound", kind="size", low=1024, query=True, doc="Bytes kept at most.")


@pytest.mark.parametrize(
    ("given", "milliseconds"),
    [
        ("500ms", 500),
        ("2s", 2000),
        ("1.5s", 1500),
        ("250 ms", 250),
        ("2S", 2000),
        (" 750 ", 750),
        ("1m", 60_000),
        ("5ms", 5),  # an explicit unit may go below the floor of bare numbers
        (750, 750),
        (timedelta(seconds=1.5), 1500),
        (timedelta(milliseconds=20), 20),
    ],
)
def test_a_duration_keeps_its_unit_when_bare_and_converts_an_explicit_one(
    given: object, milliseconds: int
) -> None:
    assert TIMEOUT.convert(given) == milliseconds


@pytest.mark.parametrize("given", ["5", 5, "99"])
def test_a_bare_duration_below_the_floor_is_an_error_naming_the_unit(given: object) -> None:
    with pytest.raises(ConfigError) as caught:
        TIMEOUT.convert(given)
    message = str(caught.value)
    assert message.startswith("timeout is in milliseconds:")
    assert "below the 100 ms minimum" in message
    assert f"write {given}s for {given} seconds, or {given}ms" in message


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ("soon", "timeout must be a whole number of milliseconds or a duration"),
        ("1.5", "timeout must be a whole number of milliseconds or a duration"),
        ("1.5ms", "timeout must be a whole number of milliseconds, got '1.5ms'"),
        (timedelta(microseconds=1500), "whole number of milliseconds"),
        ("2 fortnights", "unknown unit 'fortnights'"),
        ("0", "timeout must be at least 1 (milliseconds), got 0"),
        ("-2s", "timeout must be at least 1 (milliseconds), got -2000"),
        (1.5, "timeout must be an int (milliseconds), not float"),
        (True, "timeout must be an int (milliseconds), not bool"),
        (None, "timeout must be an int (milliseconds), not NoneType"),
    ],
)
def test_bad_durations(given: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        TIMEOUT.convert(given)


@pytest.mark.parametrize(
    ("given", "size"),
    [
        ("64MiB", 64 << 20),
        ("64mib", 64 << 20),
        ("512kB", 512_000),
        ("512 KiB", 512 << 10),
        ("8MB", 8_000_000),
        ("1.5GiB", 3 << 29),
        ("1GB", 10**9),
        ("2048", 2048),
        ("4096B", 4096),
        ("1.0001KiB", 1024),  # a fraction of a byte is dropped
        (4096, 4096),
    ],
)
def test_a_size_is_bytes_when_bare_and_converts_a_unit(given: object, size: int) -> None:
    assert BOUND.convert(given) == size


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ("lots", "bound must be a whole number of bytes or a size with a unit such as 512kB"),
        ("1.5", "bound must be a whole number of bytes or a size"),
        ("64 MiBs", "unknown unit 'MiBs' (did you mean 'MiB'?) in '64 MiBs'"),
        ("8 mega", "unknown unit 'mega'"),
        ("100", "bound must be at least 1024 (bytes), got 100"),
        ("-1MiB", "bound must be at least 1024 (bytes), got -1048576"),
        (1.5, "bound must be an int (bytes), not float"),
    ],
)
def test_bad_sizes(given: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        BOUND.convert(given)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("size", "text"), [(8 << 20, "8MiB"), (1536, "1536"), (3 << 30, "3GiB"), (5000, "5000")]
)
def test_a_size_is_written_in_the_largest_exact_binary_unit_and_read_back(
    size: int, text: str
) -> None:
    assert BOUND.format(size) == text
    assert BOUND.convert(BOUND.format(size)) == size
    assert BOUND.summary().startswith("size in bytes")


def test_check_is_strict_and_convert_is_forgiving() -> None:
    with pytest.raises(ConfigError, match="port must be an int, not str"):
        PORT.check("6379")
    assert PORT.convert("6379") == PORT.convert(" 6379 ") == PORT.convert(6379) == 6379
    with pytest.raises(ConfigError, match="port must be between 1 and 65535, got 70000"):
        PORT.convert("70000")
    for text in ("6e3", "0x10", "1_000", "\u0663", ""):  # \u0663: an Arabic-Indic digit
        with pytest.raises(ConfigError, match="port must be a whole number"):
            PORT.convert(text)
    with pytest.raises(ConfigError, match="port must be an int, not bool"):
        PORT.convert(True)


@pytest.mark.parametrize(
    ("text", "value"),
    [(word, True) for word in ("true", "True", "YES", "on", "1")]
    + [(word, False) for word in ("false", "no", "Off", "0")],
)
def test_bool_words(text: str, value: bool) -> None:
    assert FLAG.convert(text) is value


def test_bad_bools() -> None:
    with pytest.raises(ConfigError, match=r"flag must be true or false \(or yes/no"):
        FLAG.convert("maybe")
    with pytest.raises(ConfigError, match="flag must be a bool, not int"):
        FLAG.convert(1)


def test_an_empty_string_is_none_for_an_optional_option() -> None:
    assert LABEL.convert("") is None
    assert LABEL.convert(None) is None
    assert LABEL.convert("web") == "web"
    with pytest.raises(ConfigError, match="label must not be empty"):
        LABEL.check("")


def test_secret_values_never_appear_in_errors() -> None:
    calls: list[Callable[[], object]] = [
        lambda: TOKEN.convert("hunter2\x00"),
        lambda: LIMIT.convert("hunter2"),
        lambda: LIMIT.convert(-12345),
    ]
    for call in calls:
        with pytest.raises(ConfigError) as caught:
            call()
        assert "hunter2" not in str(caught.value)
        assert "12345" not in str(caught.value)
    assert TOKEN.format("hunter2") == "***"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"kind": "int", "doc": "x", "query": True}, "needs low"),
        ({"kind": "duration", "low": 1, "doc": "x", "query": True}, "needs unit"),
        ({"kind": "float", "doc": "x", "query": True}, "kind must be one of"),
        ({"kind": "str", "doc": " ", "query": True}, "doc must say"),
        ({"kind": "custom", "doc": "x", "query": True}, "needs parse"),
        ({"kind": "bool", "low": 0, "doc": "x", "query": True}, "only int, duration and size"),
        ({"kind": "size", "doc": "x", "query": True}, "needs low"),
        ({"kind": "size", "low": 1, "unit": "kB", "doc": "x", "query": True}, "takes no unit"),
        ({"kind": "int", "low": 0, "floor": 5, "doc": "x", "query": True}, "only duration"),
    ],
)
def test_an_incomplete_declaration_is_refused(spec: dict[str, Any], problem: str) -> None:
    with pytest.raises(TypeError, match=problem):
        Option(name="x", **spec)


def test_a_dataclass_field_without_a_declaration_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Settings:
        port: int = PORT.field(6379)
        forgotten: int = 3

    with pytest.raises(TypeError, match=r"Settings\.forgotten has no option declaration"):
        OptionSet.from_dataclass(Settings, owner="test")


def test_an_option_set_refuses_a_name_declared_twice() -> None:
    clash = Option(name="other", kind="bool", query=True, aliases=("flag",), doc="Clashes.")
    with pytest.raises(TypeError, match="'flag' twice"):
        OptionSet([FLAG, clash], owner="test")


def test_names_aliases_and_did_you_mean() -> None:
    options = OptionSet(
        [
            PORT,
            FLAG,
            Option(
                name="verify",
                kind="bool",
                query=True,
                aliases=(Alias("cert_reqs", lambda v: v == "required"), "check"),
                doc="Verify.",
            ),
        ],
        owner="test",
    )
    assert options.convert({"port": "1", "cert_reqs": "required"}) == {"port": 1, "verify": True}
    assert options.convert({"check": "no"}) == {"verify": False}
    with pytest.raises(ConfigError, match=r"verify is given twice \(as verify and check\)"):
        options.convert({"verify": True, "check": True})
    with pytest.raises(ConfigError) as caught:
        options.convert({"prot": 1, "zzz": 2})
    assert str(caught.value) == (
        "unknown test driver options 'prot' (did you mean 'port'?), 'zzz'; "
        "valid options: port, flag, verify"
    )
    found: dict[str, Any] = {}
    options.convert_query({"flag": "on", "check": "0"}, found, shown="x://")
    assert found == {"flag": True, "verify": False}
    with pytest.raises(ConfigError, match=r"port is not a test URL query option"):
        options.convert_query({"port": "1"}, {}, shown="x://")
    with pytest.raises(ConfigError, match=r"flag is given twice in 'x://'"):
        options.convert_query({"flag": "1"}, {"flag": False}, shown="x://")


# -- the memory driver's option ------------------------------------------------------------


def test_a_misspelt_memory_option_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError) as caught:
        cache.new(driver="memory", max_entry=5)
    message = str(caught.value)
    assert "unknown memory driver option 'max_entry' (did you mean 'max_entries'?)" in message
    assert "new_cache_driver" not in message
    assert "unexpected keyword" not in message


def test_memory_options_from_text_convert_as_in_urls() -> None:
    assert cache.new(driver="memory", max_entries="5").driver.max_entries == 5  # type: ignore[attr-defined]
    built = cache.from_config({"cache.driver": "memory", "cache.max_entries": "4"}, prefix="cache.")
    assert built.driver.max_entries == 4  # type: ignore[attr-defined]
    assert cache.from_url("memory://?max_entries=").driver.max_entries is None  # type: ignore[attr-defined]
    assert cache.from_url("memory://?max_entries=3", max_entries="6").driver.max_entries == 6  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: cache.new(driver="memory", max_entries="lots"), "max_entries must be a whole"),
        (lambda: cache.new(driver="memory", max_entries=0), "max_entries must be at least 1"),
        (lambda: cache.new(driver="memory", max_entries=2.5), "max_entries must be an int or None"),
        (lambda: cache.from_url("memory://?max_entrie=3"), "did you mean 'max_entries'"),
        (lambda: cache.from_url("memory://?max_entries=x"), "max_entries must be a whole"),
        (lambda: MemoryDriver(max_entries="5"), "max_entries must be an int or None, not str"),  # type: ignore[arg-type]
    ],
)
def test_memory_option_errors(build: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()
