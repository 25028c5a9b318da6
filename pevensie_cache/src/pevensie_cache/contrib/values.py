"""How the framework backends keep Python values and bytes in Pevensie's text values.

A Pevensie value is text. The frameworks cache arbitrary objects (Django,
Flask-Caching) or bytes (dogpile.cache), so their backends store:

- an ``int`` that fits in 64 bits as its decimal text, so ``incr`` stays one
  atomic server-side operation (as Django's and cachelib's Redis backends do);
- any other object pickled (the framework's own convention, with the highest
  protocol), the pickle bytes written as base64 text;
- bytes (dogpile.cache's serialized values) as base64 text.

Reading a pickled value runs ``pickle.loads``: whoever can write to the cache
server can run code in the processes that read it. That is equally true of the
frameworks' built-in Redis backends; keep the server private.
"""

from __future__ import annotations

import binascii
import pickle
from typing import Any

from pevensie_cache.validation import INT64_MAX, INT64_MIN

__all__ = ["PICKLE_PROTOCOL", "bytes_to_text", "dumps", "loads", "text_to_bytes"]

PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL
"""The pickle protocol of stored objects (the frameworks' default)."""

_b2a = binascii.b2a_base64
_a2b = binascii.a2b_base64
_INT_START = frozenset("-0123456789")


def dumps(value: object) -> str:
    """Return the stored text of ``value``: decimal for a 64-bit ``int``, else base64 pickle.

    A value that cannot be pickled raises the ``pickle.PickleError`` (or the
    ``TypeError``) of :func:`pickle.dumps`, before anything is written.
    """
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:  # not bool: type(), not isinstance
        return str(value)
    return _b2a(pickle.dumps(value, PICKLE_PROTOCOL), newline=False).decode("ascii")


def loads(text: str) -> Any:
    """Return the value :func:`dumps` stored as ``text``.

    Decimal text is an ``int`` (a pickle in base64 never starts with a digit
    or ``-``: pickles of protocol 2 and later start with the byte 0x80, "g").
    """
    if text[:1] in _INT_START:
        return int(text)
    return pickle.loads(_a2b(text))  # noqa: S301 - the frameworks' own convention (see module)


def bytes_to_text(data: bytes) -> str:
    """Return ``data`` as base64 text."""
    return _b2a(data, newline=False).decode("ascii")


def text_to_bytes(text: str) -> bytes:
    """Return the bytes :func:`bytes_to_text` wrote as ``text``."""
    return _a2b(text)
