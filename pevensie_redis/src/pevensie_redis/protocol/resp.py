"""Reading RESP2 replies from bytes as they arrive: hiredis when installed, else pure Python.

:func:`make_reader` returns an object with ``feed(data)`` and ``gets()`` (the
next complete reply, or ``False`` while it is still incomplete), as
``hiredis.Reader`` has. Error replies come back as values, instances of the
redis-py exception class their code names (``NOSCRIPT`` is ``NoScriptError``,
and so on; see :mod:`~pevensie_redis.protocol.error_codes`), never raised: the
caller routes each reply to whoever waits for it. Bulk strings are ``bytes``,
integers ``int``, nil ``None``, arrays ``list``; status replies (``+OK``) are
``bytes`` too.

Bytes that are not RESP2 (an unknown type byte, a length or integer that is
not a decimal number, a negative length other than ``-1``, a bulk string not
followed by CRLF, nesting deeper than :data:`MAX_DEPTH`) raise redis-py's
``InvalidResponse``, and nothing else: the caller closes the connection.

No I/O happens here (the pipes move the bytes).
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

from redis.exceptions import InvalidResponse

from pevensie_redis.protocol.error_codes import error_reply

__all__ = ["MAX_DEPTH", "Reader", "Resp2Reader", "make_reader"]

MAX_DEPTH = 1000
"""Arrays nested deeper than this are refused (no command of the driver gets more than 3)."""

_LONGEST = 19
"""Digits of the longest 64-bit integer; longer numbers are refused, as hiredis does.

Lengths must be shorter (no reply is an exabyte long).
"""


class Reader(Protocol):
    """What reads replies: ``hiredis.Reader`` or :class:`Resp2Reader`."""

    def feed(self, data: bytes) -> None:
        """Add received bytes."""

    def gets(self) -> Any:
        """Return the next complete reply, or ``False`` when none is complete yet."""


class _Incomplete(Exception):
    """The buffer ends inside a reply.

    Raised as a new instance each time, never a module-level one: raising the
    same instance again chains every raise's frames onto its ``__traceback__``,
    which kept each frame's locals (and every received buffer) alive.
    """


_COMPACT_AT = 1 << 16


class Resp2Reader:
    """A pure-Python incremental RESP2 reader (used without hiredis)."""

    __slots__ = ("_buffer", "_position")

    def __init__(self) -> None:
        """Start with nothing buffered."""
        self._buffer = bytearray()
        self._position = 0

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buffer += data

    def has_data(self) -> bool:
        """Whether bytes of a reply not complete yet are held (``False``: at a reply boundary)."""
        return self._position < len(self._buffer)

    def gets(self) -> Any:
        """Return the next complete reply, or ``False`` when none is complete yet.

        Raises ``InvalidResponse`` when the bytes are not RESP2.
        """
        try:
            reply, end = self._parse(self._position)
        except _Incomplete:
            return False
        self._position = end
        if end >= _COMPACT_AT and end * 2 >= len(self._buffer):
            del self._buffer[:end]
            self._position = 0
        return reply

    def _parse(self, position: int) -> tuple[Any, int]:
        """Read one reply at ``position``; return it and where the next one starts.

        A loop, not recursion: ``items`` is the array being filled (``count``
        items long), ``outer`` the arrays it is nested in, so nesting costs
        no Python frames.
        """
        buffer = self._buffer
        outer: list[tuple[list[Any], int]] = []
        items: list[Any] | None = None
        count = 0
        while True:
            eol = buffer.find(b"\r\n", position)
            if eol < 0:
                raise _Incomplete
            kind = buffer[position]
            line = buffer[position + 1 : eol]
            position = eol + 2
            if kind == 36:  # $ bulk string
                if line.isdigit() and len(line) < 19:
                    end = position + int(line)
                    if len(buffer) < end + 2:
                        raise _Incomplete
                    if buffer[end] != 13 or buffer[end + 1] != 10:
                        raise InvalidResponse("Protocol error: a bulk string not ended by CRLF")
                    reply: Any = bytes(buffer[position:end])
                    position = end + 2
                elif line == b"-1":
                    reply = None
                else:
                    raise InvalidResponse(f"Protocol error: bad bulk string length {_show(line)}")
            elif kind == 42:  # * array
                if line.isdigit() and len(line) < 19:
                    length = int(line)
                    if length:
                        if items is not None:
                            if len(outer) >= MAX_DEPTH - 1:
                                raise InvalidResponse(
                                    f"Protocol error: arrays nested deeper than {MAX_DEPTH}"
                                )
                            outer.append((items, count))
                        items, count = [], length
                        continue
                    reply = []
                elif line == b"-1":
                    reply = None
                else:
                    raise InvalidResponse(f"Protocol error: bad array length {_show(line)}")
            elif kind == 58:  # : integer
                reply = _integer(line)
            elif kind == 43:  # + status
                reply = bytes(line)
            elif kind == 45:  # - error
                reply = error_reply(line.decode("utf-8", "replace"))
            else:
                raise InvalidResponse(f"Protocol error: {bytes([kind])!r} is not a reply type")
            while items is not None:  # hand the reply to the array it is an item of
                items.append(reply)
                if len(items) < count:
                    break
                reply = items
                items, count = outer.pop() if outer else (None, 0)
            else:
                return reply, position


def _integer(line: bytearray) -> int:
    digits = line[1:] if line[:1] == b"-" else line
    if digits.isdigit() and len(digits) <= _LONGEST:
        value = int(line)
        if -(1 << 63) <= value < (1 << 63):
            return value
    raise InvalidResponse(f"Protocol error: bad integer {_show(line)}")


def _show(line: bytearray) -> str:
    return repr(bytes(line[:24]))


def make_reader() -> Reader:
    """Return a reply reader: hiredis's C reader when installed, else :class:`Resp2Reader`."""
    try:
        import hiredis
    except ImportError:
        return Resp2Reader()
    reader: Reader = _hiredis_reader(hiredis.Reader)(
        protocolError=InvalidResponse, replyError=error_reply
    )
    return reader


@functools.cache
def _hiredis_reader(base: Any) -> Any:
    """``hiredis.Reader``, whose ``gets()`` raises ``InvalidResponse`` for an absurd array length.

    hiredis makes the list of an array as soon as its length arrives: an
    array said to hold billions of items (not a Redis reply) raises
    ``MemoryError`` there, which is a protocol error like any other.
    """
    gets = base.gets

    class HiredisReader(base):  # type: ignore[misc]
        __slots__ = ()

        def gets(self) -> Any:
            try:
                return gets(self)
            except MemoryError:
                raise InvalidResponse("Protocol error: an array too long to be a reply") from None

    return HiredisReader
