"""A key's hash slot, the slot map read from ``CLUSTER SLOTS``, and what redirects say.

No server: :mod:`pevensie_redis.protocol.slots` does no I/O. The slot function
is checked against the vectors the Redis Cluster specification gives, against
a table-driven CRC16/XMODEM written here, and against redis-py's own
``redis.crc.key_slot`` (here only: the product code uses none of redis-py's
cluster code).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot as redis_py_key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    InvalidResponse,
    MovedError,
    ResponseError,
    TryAgainError,
)

from pevensie_redis.protocol.slots import (
    ASK,
    CLUSTERDOWN,
    MOVED,
    SLOTS,
    TRYAGAIN,
    Redirect,
    SlotMap,
    cluster_error,
    key_slot,
    node_name,
    parse_cluster_slots,
    redirect_of,
)


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


TABLE = _table()


def reference_crc16(data: bytes) -> int:
    """CRC-16/XMODEM with a 256-entry table, as the Redis Cluster specification describes it."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFF00) ^ TABLE[(crc >> 8) ^ byte]
    return crc


def reference_slot(key: bytes) -> int:
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end != -1 and end != start + 1:
            key = key[start + 1 : end]
    return reference_crc16(key) % SLOTS


def test_the_specification_s_vectors() -> None:
    assert reference_crc16(b"123456789") == 0x31C3
    assert key_slot(b"123456789") == 12739
    assert key_slot(b"") == 0
    assert key_slot(b"foo") == 12182
    assert key_slot(b"user:42") == redis_py_key_slot(b"user:42")


@pytest.mark.parametrize(
    ("key", "hashed"),
    [
        (b"{user1000}.following", b"user1000"),
        (b"{user1000}.followers", b"user1000"),
        (b"foo{}{bar}", b"foo{}{bar}"),  # an empty tag: the whole key
        (b"foo{{bar}}zap", b"{bar"),  # from the first { to the first } after it
        (b"foo{bar}{zap}", b"bar"),
        (b"{user}:42", b"user"),
        (b"no tag}{", b"no tag}{"),
        (b"open{only", b"open{only"),
        (b":lock:{user}:42", b"user"),
    ],
)
def test_hash_tags(key: bytes, hashed: bytes) -> None:
    assert key_slot(key) == key_slot(hashed) == reference_crc16(hashed) % SLOTS


@given(st.binary(max_size=64))
def test_the_slot_matches_a_table_driven_crc_and_redis_py(key: bytes) -> None:
    assert key_slot(key) == reference_slot(key) == redis_py_key_slot(key)


@given(st.text(alphabet="{}ab:", max_size=12))
def test_braces_anywhere_match_redis_py(text: str) -> None:
    key = text.encode()
    assert key_slot(key) == redis_py_key_slot(key)
    assert 0 <= key_slot(key) < SLOTS


def node(host: str | bytes | None, port: int, node_id: str = "id") -> list[object]:
    return [host, port, node_id.encode()]


def test_cluster_slots_give_each_slot_its_primary_and_replicas() -> None:
    reply = [
        [0, 5460, node(b"127.0.0.1", 7000), node(b"127.0.0.1", 7003), node(b"127.0.0.1", 7004)],
        [5461, 10922, node(b"127.0.0.1", 7001), node(b"127.0.0.1", 7005)],
        [10923, 16383, node(b"127.0.0.1", 7002)],
    ]
    slots = parse_cluster_slots(reply, "127.0.0.1")
    assert slots.covered() == SLOTS
    assert slots.primary_names() == ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]
    assert slots.primaries[0] == slots.primaries[5460] == "127.0.0.1:7000"
    assert slots.primaries[5461] == "127.0.0.1:7001"
    assert slots.replicas[100] == ("127.0.0.1:7003", "127.0.0.1:7004")
    assert slots.replicas[16383] == ()
    assert slots.address("127.0.0.1:7005") == ("127.0.0.1", 7005)
    assert slots.primaries[10923] == slots.primaries[16383] == "127.0.0.1:7002"
    assert set(slots.node_names()) == {f"127.0.0.1:{port}" for port in range(7000, 7006)}


def test_an_empty_host_is_the_asked_node_and_an_unknown_one_is_left_out() -> None:
    reply = [
        [0, 99, node(b"", 7000), node(b"?", 7003), node(None, 7004), node(b"10.0.0.5", 7005)],
        [100, 199, node(b"?", 7001)],
        [200, 299, node("::1", 7002)],
    ]
    slots = parse_cluster_slots(reply, "192.0.2.1")
    assert slots.primaries[0] == "192.0.2.1:7000"
    assert slots.replicas[0] == ("10.0.0.5:7005",)
    assert slots.primaries[150] is None  # a primary no client can reach
    assert slots.primaries[250] == "[::1]:7002"
    assert slots.address("[::1]:7002") == ("::1", 7002)
    assert slots.primaries[300] is None
    assert slots.covered() == 200


@pytest.mark.parametrize(
    "reply",
    [
        None,
        b"OK",
        [[0, 10]],
        [[0, "10", node(b"h", 1)]],
        [[10, 0, node(b"h", 1)]],
        [[0, SLOTS, node(b"h", 1)]],
        [[0, 10, [b"h"]]],
        [[0, 10, [b"h", b"7000"]]],
        [[0, 10, [7, 7000]]],
    ],
)
def test_a_reply_not_shaped_like_cluster_slots_is_a_protocol_error(reply: object) -> None:
    with pytest.raises(InvalidResponse):
        parse_cluster_slots(reply, "127.0.0.1")


def test_moved_reassigns_one_slot_of_its_map_only() -> None:
    reply = [[0, 16383, node(b"127.0.0.1", 7000), node(b"127.0.0.1", 7001)]]
    before = parse_cluster_slots(reply, "127.0.0.1")
    after = parse_cluster_slots(reply, "127.0.0.1")
    assert after.assign(42, "127.0.0.1", 7002) == "127.0.0.1:7002"
    assert after.primaries[42] == "127.0.0.1:7002"
    assert after.replicas[42] == ()  # unknown until the next refresh
    assert after.replicas[43] == ("127.0.0.1:7001",)
    assert before.primaries[42] == "127.0.0.1:7000"  # another map is not touched
    assert SlotMap.empty().covered() == 0
    assert node_name("::1", 6379) == "[::1]:6379"


@pytest.mark.parametrize(
    ("reply", "kind", "redirect"),
    [
        (MovedError("3999 127.0.0.1:6381"), MOVED, Redirect(False, 3999, "127.0.0.1", 6381)),
        (AskError("3999 127.0.0.1:6381"), ASK, Redirect(True, 3999, "127.0.0.1", 6381)),
        (ResponseError("MOVED 12 10.0.0.1:7000"), MOVED, Redirect(False, 12, "10.0.0.1", 7000)),
        (ResponseError("ASK 12 :7000"), ASK, Redirect(True, 12, "", 7000)),
        (ResponseError("MOVED 12 ::1:7000"), MOVED, Redirect(False, 12, "::1", 7000)),
        (ResponseError("MOVED twelve h:1"), MOVED, None),
        (ResponseError("MOVED 99999 h:1"), MOVED, None),
        (TryAgainError("Multiple keys request during rehashing of slot"), TRYAGAIN, None),
        (ResponseError("TRYAGAIN Multiple keys request"), TRYAGAIN, None),
        (ClusterDownError("The cluster is down"), CLUSTERDOWN, None),
        (ResponseError("CLUSTERDOWN Hash slot not served"), CLUSTERDOWN, None),
        (ResponseError("ERR unknown command"), None, None),
        (ResponseError("MOVEDX 1 h:1"), None, None),
    ],
)
def test_cluster_error_replies_read(
    reply: BaseException, kind: str | None, redirect: Redirect | None
) -> None:
    assert cluster_error(reply) == kind
    assert redirect_of(reply) == redirect
