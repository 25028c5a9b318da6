"""Reading RESP2 replies from bytes as they arrive: hiredis when installed, else pure Python.

:func:`make_reader` returns an object with ``feed(data)`` and ``gets()`` (the
next complete reply, or ``False`` while it is still incomplete), as
``hiredis.Reader`` has. Error replies come back as values, instances of the
redis-py exception class their code names (``NOSCRIPT`` is ``NoScriptError``,
and so on), never raised: the caller routes each reply to whoever waits for it.
Bulk strings are ``bytes``, integers ``int``, nil ``None``, arrays ``list``;
status replies (``+OK``) are ``bytes`` too.

No I/O happens here (the async driver's :mod:`~pevensie_redis.pipe` moves the bytes).
"""

from __future__ import annotations

from typing import Any, Protocol

from redis.exceptions import InvalidResponse

from pevensie_redis import compat

__all__ = ["Reader", "Resp2Reader", "make_reader"]


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

    def gets(self) -> Any:
        """Return the next complete reply, or ``False`` when none is complete yet."""
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
        buffer = self._buffer
        eol = buffer.find(b"\r\n", position)
        if eol < 0:
            raise _Incomplete
        kind = buffer[position]
        after = eol + 2
        if kind == 36:  # $ bulk string
            length = int(buffer[position + 1 : eol])
            if length < 0:
                return None, after
            end = after + length
            if len(buffer) < end + 2:
                raise _Incomplete
            return bytes(buffer[after:end]), end + 2
        if kind == 42:  # * array
            count = int(buffer[position + 1 : eol])
            if count < 0:
                return None, after
            items = []
            for _ in range(count):
                item, after = self._parse(after)
                items.append(item)
            return items, after
        if kind == 58:  # : integer
            return int(buffer[position + 1 : eol]), after
        if kind == 43:  # + status
            return bytes(buffer[position + 1 : eol]), after
        if kind == 45:  # - error
            return compat.parse_error(buffer[position + 1 : eol].decode("utf-8", "replace")), after
        raise InvalidResponse(f"Protocol Error: {bytes(buffer[position : position + 1])!r}")


def make_reader() -> Reader:
    """Return a reply reader: hiredis's C reader when installed, else :class:`Resp2Reader`."""
    try:
        import hiredis
    except ImportError:
        return Resp2Reader()
    reader: Reader = hiredis.Reader(protocolError=InvalidResponse, replyError=compat.parse_error)
    return reader
