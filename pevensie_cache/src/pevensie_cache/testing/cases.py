"""What every conformance case uses: bad inputs, awkward text, and driver limits.

Shared by the sync suite (:class:`~pevensie_cache.testing.CacheConformance`)
and the async one (:class:`~pevensie_cache.testing.AsyncCacheConformance`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from pevensie_cache.errors import ArgumentError, ArgumentTypeError, ArgumentValueError
from pevensie_cache.validation import TTL_MAX

__all__ = [
    "BAD_ADDRESSES",
    "BAD_TTLS",
    "BAD_VALUES",
    "OPTIONAL_OPERATIONS",
    "PROPERTY_SETTINGS",
    "TTL_WAIT",
    "StoredKeys",
    "a_coroutine_function",
    "a_plain_function",
    "any_key",
    "any_resource_type",
    "any_value",
    "fit",
    "text",
    "with_lone_surrogate",
]

StoredKeys = Callable[[], set[str]]
"""Lists every stored key as ``<resource_type>:<key>``."""

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
    (1.5, ArgumentValueError),
    (0.0, ArgumentValueError),
    (float("nan"), ArgumentValueError),
    (timedelta(0), ArgumentValueError),
    (timedelta(seconds=-5), ArgumentValueError),
    ("10", ArgumentTypeError),
    (TTL_MAX + 1, ArgumentValueError),  # beyond what Redis keeps: it would refuse the write
    (float(TTL_MAX * 100), ArgumentValueError),
    (2**64, ArgumentValueError),  # not even a 64-bit integer
]
"""``(ttl_seconds, error)`` pairs every driver must reject (the facade does, for all)."""

OPTIONAL_OPERATIONS = frozenset({"add", "incr", "touch", "clear", "ttl", "lock", "extend"})
"""What a conformance subclass may declare in ``unsupported``: the optional driver
operations (``incr`` covers ``decr``; ``lock`` is ``acquire_lock`` and ``release_lock``;
``extend`` is ``extend_lock``; ``ttl`` is ``ttl_ms``)."""

TTL_WAIT = 1.1
"""Seconds the suite waits after a 1 s TTL (the Gleam suite's wait): expiry must land
within about 100 ms of the TTL."""
text = st.text(min_size=1, max_size=300)  # hypothesis text excludes lone surrogates
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
any_key = _awkward_text | _long_text | text
any_resource_type = _awkward_text.map(lambda text: text.replace(":", ";"))
any_value = st.text(max_size=2000) | _awkward_text | _long_text
_lone_surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
with_lone_surrogate = st.tuples(st.text(max_size=20), _lone_surrogate, st.text(max_size=20)).map(
    "".join
)
PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    # Each driver's subclass runs these tests with its own fixture: by design.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.differing_executors,
        HealthCheck.too_slow,
    ],
)


def fit(value: str, max_bytes: int | None) -> str:
    """Cut ``value`` to at most ``max_bytes`` bytes of UTF-8, at a character boundary."""
    if max_bytes is None or len(value.encode()) <= max_bytes:
        return value
    return value.encode()[:max_bytes].decode("utf-8", "ignore")


def a_plain_function() -> str:
    """Return a constant: a ``def`` function, which only the sync face memoises."""
    return "plain"


async def a_coroutine_function() -> str:
    """Return a constant: an ``async def`` function, which only the async face memoises."""
    return "coroutine"
