"""Both RESP2 readers, fuzzed: every input gives the right value, "incomplete", or a typed error.

The pure-Python reader and hiredis's (when installed) read the same bytes to
the same values; neither ever raises anything but redis-py's
``InvalidResponse`` (the driver closes the connection on it), and neither
hangs or recurses on deep nesting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.exceptions import AskError, InvalidResponse, MovedError, NoScriptError, ResponseError

from pevensie_redis.protocol.error_codes import error_reply
from pevensie_redis.protocol.resp import MAX_DEPTH, Reader, Resp2Reader, make_reader

HAVE_HIREDIS = not isinstance(make_reader(), Resp2Reader)
"""Whether hiredis is installed (and importable): then :func:`make_reader` returns its reader."""


def _hiredis() -> Reader:
    return make_reader()


READERS: dict[str, Callable[[], Reader]] = {"python": Resp2Reader}
if HAVE_HIREDIS:
    READERS["hiredis"] = _hiredis

reader_kinds = pytest.mark.parametrize("make", list(READERS.values()), ids=list(READERS))

# -- a model of replies, with how each is written and what a reader gives back ------------

_line = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)
_error_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=40
)
_leaf = st.one_of(
    st.tuples(st.just("bulk"), st.binary(max_size=300)),
    st.tuples(st.just("status"), _line),
    st.tuples(st.just("int"), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just("nil"), st.none()),
    st.tuples(st.just("nil array"), st.none()),
    st.tuples(st.just("error"), _error_text),
    st.tuples(
        st.just("error"),
        st.sampled_from(["MOVED 3999 127.0.0.1:6381", "ASK 12 [::1]:7000", "NOSCRIPT no"]),
    ),
)
replies = st.recursive(
    _leaf, lambda items: st.tuples(st.just("array"), st.lists(items, max_size=6)), max_leaves=40
)


def encode(reply: tuple[str, Any]) -> bytes:
    kind, value = reply
    if kind == "bulk":
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if kind == "status":
        return b"+%b\r\n" % value
    if kind == "int":
        return b":%d\r\n" % value
    if kind == "nil":
        return b"$-1\r\n"
    if kind == "nil array":
        return b"*-1\r\n"
    if kind == "error":
        return b"-%b\r\n" % value.encode()
    return b"*%d\r\n" % len(value) + b"".join(encode(item) for item in value)


def expected(reply: tuple[str, Any]) -> Any:
    kind, value = reply
    if kind in ("nil", "nil array"):
        return None
    if kind == "error":
        return error_reply(value)
    if kind == "array":
        return [expected(item) for item in value]
    return value


def comparable(value: Any) -> Any:
    """Error replies compare by class and message; everything else as it is."""
    if isinstance(value, Exception):
        return (type(value), str(value))
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value


def read_all(reader: Reader) -> list[Any]:
    found = []
    reply = reader.gets()
    while reply is not False:
        found.append(reply)
        reply = reader.gets()
    return found


# -- valid input ------------------------------------------------------------------------


@reader_kinds
@settings(max_examples=150, deadline=None)
@given(batch=st.lists(replies, min_size=1, max_size=5), cuts=st.lists(st.integers(0, 10_000)))
def test_valid_replies_read_back_as_sent_however_the_bytes_arrive(
    make: Callable[[], Reader], batch: list[tuple[str, Any]], cuts: list[int]
) -> None:
    data = b"".join(encode(reply) for reply in batch)
    reader = make()
    found: list[Any] = []
    start = 0
    for cut in [*sorted({cut % (len(data) + 1) for cut in cuts}), len(data)]:
        reader.feed(data[start:cut])
        start = cut
        found += read_all(reader)
    assert comparable(found) == comparable([expected(reply) for reply in batch])


@reader_kinds
@settings(deadline=None)
@given(reply=replies)
def test_a_reply_cut_short_at_any_byte_is_incomplete_until_the_rest_arrives(
    make: Callable[[], Reader], reply: tuple[str, Any]
) -> None:
    data = encode(reply)
    for cut in range(len(data)):
        reader = make()
        reader.feed(data[:cut])
        assert reader.gets() is False
        reader.feed(data[cut:])
        assert comparable(reader.gets()) == comparable(expected(reply))


@pytest.mark.skipif(not HAVE_HIREDIS, reason="hiredis is not installed")
@settings(max_examples=150, deadline=None)
@given(batch=st.lists(replies, min_size=1, max_size=5))
def test_the_python_reader_and_hiredis_read_the_same_values(
    batch: list[tuple[str, Any]],
) -> None:
    data = b"".join(encode(reply) for reply in batch)
    python, c = Resp2Reader(), _hiredis()
    python.feed(data)
    c.feed(data)
    assert comparable(read_all(python)) == comparable(read_all(c))


def test_error_replies_carry_their_class_and_the_text_as_sent() -> None:
    reader = Resp2Reader()
    reader.feed(b"-NOSCRIPT No matching script\r\n-MOVED 3999 10.0.0.2:6381\r\n-ASK 7 h:1\r\n")
    noscript, moved, ask = read_all(reader)
    assert isinstance(noscript, NoScriptError)
    assert str(noscript) == "NOSCRIPT No matching script"
    assert isinstance(moved, MovedError)
    assert (moved.slot_id, moved.host, moved.port) == (3999, "10.0.0.2", 6381)
    assert type(ask) is AskError
    assert (ask.slot_id, ask.host, ask.port) == (7, "h", 1)


def test_a_redirect_that_names_no_node_is_a_plain_error_reply() -> None:
    reader = Resp2Reader()
    reader.feed(b"-MOVED nowhere\r\n")
    reply = reader.gets()
    assert type(reply) is ResponseError
    assert str(reply) == "MOVED nowhere"


# -- invalid input ----------------------------------------------------------------------


def outcome(make: Callable[[], Reader], data: bytes) -> list[Any] | str:
    """Read ``data`` to the end: the values, or ``"invalid"`` at a protocol error.

    Any other exception fails the test that calls it.
    """
    reader = make()
    reader.feed(data)
    try:
        return read_all(reader)
    except InvalidResponse:
        return "invalid"


@reader_kinds
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_give_values_incomplete_or_a_protocol_error(
    make: Callable[[], Reader], data: bytes
) -> None:
    outcome(make, data)


@reader_kinds
@settings(max_examples=200, deadline=None)
@given(
    head=st.sampled_from([b"$", b"*", b":", b"+", b"-"]),
    number=st.one_of(st.integers(), st.text(max_size=25).map(str)),
    tail=st.binary(max_size=30),
)
def test_mangled_lengths_and_integers_give_values_incomplete_or_a_protocol_error(
    make: Callable[[], Reader], head: bytes, number: int | str, tail: bytes
) -> None:
    outcome(make, head + str(number).encode(errors="replace") + b"\r\n" + tail)


@reader_kinds
@pytest.mark.parametrize("kind", [b"$", b"*"])
@pytest.mark.parametrize("length", [-2, -7, -(2**40)])
def test_a_negative_length_other_than_minus_one_is_a_protocol_error(
    make: Callable[[], Reader], kind: bytes, length: int
) -> None:
    assert outcome(make, kind + b"%d\r\n" % length + b"$1\r\nx\r\n") == "invalid"


@reader_kinds
# 60 examples: hiredis allocates an array's list as soon as its length arrives, so each
# example of a huge array costs seconds on a loaded machine (200 took 40-90 s per run).
@settings(max_examples=60, deadline=None)
@given(length=st.integers(min_value=301, max_value=2**80))
def test_an_oversized_length_is_incomplete_or_a_protocol_error(
    make: Callable[[], Reader], length: int
) -> None:
    for kind in (b"$", b"*"):
        assert outcome(make, kind + b"%d\r\n" % length + b"x" * 300) in ([], "invalid")


@reader_kinds
@pytest.mark.parametrize("length", [10**9, 2**32 - 1, 2**32, 2**63 - 1])
def test_an_array_said_to_hold_billions_of_items_is_incomplete_or_a_protocol_error(
    make: Callable[[], Reader], length: int
) -> None:
    # hiredis makes the list as soon as the length arrives: 2**32 - 1 items fail to allocate.
    assert outcome(make, b"*%d\r\n:1\r\n" % length) in ([], "invalid")


@reader_kinds
@pytest.mark.parametrize("depth", [1, 10, MAX_DEPTH - 1, MAX_DEPTH + 1, 50_000])
def test_deep_nesting_is_read_or_refused_without_recursing(
    make: Callable[[], Reader], depth: int
) -> None:
    result = outcome(make, b"*1\r\n" * depth + b":1\r\n")
    if result == "invalid":
        assert depth > 1000
        return
    assert isinstance(result, list)
    [value] = result
    for _ in range(depth):
        assert isinstance(value, list)
        [value] = value
    assert value == 1


def test_the_python_reader_reads_nesting_up_to_its_limit_and_refuses_deeper() -> None:
    assert outcome(Resp2Reader, b"*1\r\n" * MAX_DEPTH + b":1\r\n") != "invalid"
    assert outcome(Resp2Reader, b"*1\r\n" * (MAX_DEPTH + 1) + b":1\r\n") == "invalid"


def test_a_bulk_string_not_ended_by_crlf_is_a_protocol_error() -> None:
    assert outcome(Resp2Reader, b"$3\r\nabcXY:1\r\n") == "invalid"
