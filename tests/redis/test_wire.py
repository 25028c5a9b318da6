"""The wire format: each command's hand-packed bytes are exactly what the generic packers make."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pevensie_redis.protocol import commands as wire

keys = st.binary(max_size=300) | st.text(max_size=100).map(str.encode)
values = st.binary(max_size=2000)
ttls = st.integers(min_value=1, max_value=2**40)


Packer = Callable[[Sequence[bytes | str]], bytes]


def packers() -> list[Packer]:
    found: list[Packer] = [wire._pack_in_python]
    with_hiredis = wire._pack_with_hiredis()
    if with_hiredis is not None:
        found.append(with_hiredis)
    return found


@pytest.mark.parametrize("pack", packers(), ids=lambda p: getattr(p, "__qualname__", "pack"))
@given(key=keys, value=values, ttl=ttls)
def test_single_commands_match_the_generic_packer(
    pack: Packer, key: bytes, value: bytes, ttl: int
) -> None:
    assert wire.pack_get(key) == pack(["GET", key])
    assert wire.pack_set(key, value) == pack(["SET", key, value])
    assert wire.pack_set_ex(key, value, ttl) == pack(["SET", key, value, "EX", str(ttl)])
    assert wire.pack_delete(key) == pack(["UNLINK", key])


def test_the_python_and_hiredis_packers_agree() -> None:
    with_hiredis = wire._pack_with_hiredis()
    if with_hiredis is None:
        pytest.skip("hiredis is not installed")
    args = ["MSET", b"user:1", "ünïcode ✓", b"\x00\r\n", b""]
    assert with_hiredis(args) == wire._pack_in_python(args)


def test_the_set_many_script_call_names_keys_then_ttl_then_values() -> None:
    packed = wire.pack_set_many_ex([b"a:1", b"a:2"], [b"x", b"y"], 60)
    assert packed == wire.pack(
        ["EVALSHA", wire.SET_EX_SCRIPT_SHA, "2", b"a:1", b"a:2", "60", b"x", b"y"]
    )


def test_chunks_split_at_the_batch_size_and_keep_order() -> None:
    items = list(range(2 * wire.BATCH_SIZE + 5))
    parts = wire.chunks(items)
    assert [len(part) for part in parts] == [wire.BATCH_SIZE, wire.BATCH_SIZE, 5]
    assert [item for part in parts for item in part] == items
    assert wire.chunks(items[:3]) == [items[:3]]


def test_a_value_that_is_not_utf8_is_not_text() -> None:
    assert wire.decode_text("ünï".encode()) == "ünï"
    with pytest.raises(wire.NotText):
        wire.decode_text(b"\xff\xfe")
