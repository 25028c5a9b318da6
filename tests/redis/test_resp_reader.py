"""The pure-Python reply reader (used without hiredis): right replies, flat memory.

Replies arrive in pieces: most ``gets()`` calls on a busy async connection
find the buffer ending inside a reply. Issue 19: each such call raised one
module-level exception instance, whose traceback grew by the raising frames
every time and kept them (and every received buffer) alive: an async service
without hiredis grew by about 10 MiB a second.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator

import pytest

from pevensie_redis.protocol.resp import Resp2Reader, make_reader

REPLIES = [
    (b"+OK\r\n", b"OK"),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$-1\r\n", None),
    (b":42\r\n", 42),
    (b"*3\r\n$1\r\na\r\n$-1\r\n:7\r\n", [b"a", None, 7]),
    (b"*2\r\n*1\r\n+x\r\n$0\r\n\r\n", [[b"x"], b""]),
    (b"$300\r\n" + b"v" * 300 + b"\r\n", b"v" * 300),
]


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def read_all(reader: object, stream: bytes, size: int) -> list[object]:
    """Feed ``stream`` in pieces of ``size`` bytes, taking every reply as soon as it is whole."""
    got: list[object] = []
    for piece in pieces(stream, size):
        reader.feed(piece)  # type: ignore[attr-defined]
        reply = reader.gets()  # type: ignore[attr-defined]
        while reply is not False:
            got.append(reply)
            reply = reader.gets()  # type: ignore[attr-defined]
    return got


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 16])
def test_replies_read_the_same_whatever_the_pieces(size: int) -> None:
    stream = b"".join(wire for wire, _ in REPLIES)
    assert read_all(Resp2Reader(), stream, size) == [reply for _, reply in REPLIES]


def test_the_pure_python_reader_agrees_with_the_reader_in_use() -> None:
    stream = b"".join(wire for wire, _ in REPLIES) * 3
    assert read_all(Resp2Reader(), stream, 5) == read_all(make_reader(), stream, 5)


def test_an_error_reply_is_a_value_not_raised() -> None:
    reader = Resp2Reader()
    reader.feed(b"-ERR wrong number of arguments\r\n+OK\r\n")
    error = reader.gets()
    assert isinstance(error, Exception)
    assert "wrong number of arguments" in str(error)
    assert reader.gets() == b"OK"


def test_sustained_incomplete_reads_keep_the_heap_flat() -> None:
    """90,000 reads that find half a reply, after a warm-up: the heap stays where it was.

    Before the fix, every one of them kept its frames alive (about 60 MiB here).
    """
    reply = b"$300\r\n" + b"v" * 300 + b"\r\n"
    reader = Resp2Reader()

    def run(replies: int) -> int:
        incomplete = 0
        for _ in range(replies):
            for piece in pieces(reply, 7):
                reader.feed(piece)
                got = reader.gets()
                if got is False:
                    incomplete += 1
                else:
                    assert got == b"v" * 300
        return incomplete

    run(200)  # warm-up: the buffer reaches its compaction size
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        incomplete = run(2000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert incomplete > 80_000
    assert grown < 256 * 1024, f"the heap grew by {grown / 2**20:.1f} MiB"
