r"""Envelopes: how an entry written with freshness options or tags records them, next to its value.

``get_or_set(..., stale_seconds=..., early_recompute=..., tags=...)`` and
``resource.set(..., tags=...)`` store, under the entry's own key, an
*envelope*: the value with a small header. Everything else stores the value
alone, exactly as before.

The header says when the entry goes stale (its logical expiry, Unix time in
milliseconds; the server keeps it ``stale_seconds`` longer), how long its
loader took (milliseconds, for early recomputation), and the version of each
of its tags when it was written (see :mod:`pevensie_cache.tags`)::

    \udcff 1 <expiry> , <compute> , <length of tags> : <tags> <value>

(without the spaces). ``<expiry>`` is empty for an entry without one;
``<tags>`` is ``<length of tag>:<tag><version>;`` per tag. Integers, not
decimals, and found by three searches: a read costs little more than the
copy of its value.

**Telling an envelope from a value.** An envelope starts with
:data:`ENVELOPE_MARK`, U+DCFF, a lone surrogate. No value written through the
API can hold one (every value must be encodable as UTF-8, and a lone
surrogate is not), so a stored text that starts with it is an envelope and
nothing else ever is: a user's value is never misread, whatever it holds. The
test is cheap: an ASCII text (the usual value) is ruled out by ``isascii()``,
which CPython answers without reading the text. A driver stores the mark only
if it says it can (``stores_envelopes = True``); the memory driver keeps the
text as it is, and the Redis driver writes the mark as the byte ``0xFF``,
which never occurs in UTF-8.

This module holds the format only (no I/O), for both faces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from pevensie_cache.errors import DriverError

__all__ = [
    "ENVELOPE_MARK",
    "OPENED_MAX",
    "OPENED_TEXT_MAX",
    "Envelope",
    "Opened",
    "Pairs",
    "is_envelope",
    "open_envelope",
    "pack",
    "pack_tags",
    "unpack",
    "unpack_tags",
]

ENVELOPE_MARK = "\udcff"
"""The first character of every envelope: a lone surrogate, which no stored value can hold."""

_HEAD = ENVELOPE_MARK + "1"


class Envelope(NamedTuple):
    """An unpacked envelope."""

    value: str
    """The stored value, as the application wrote it."""
    expiry: float | None
    """When the entry goes stale: Unix time in seconds, or ``None`` (only the server TTL)."""
    compute: float
    """How long the loader took, in seconds (0 when it was not loaded)."""
    tags: str
    """The tags and their versions as written (:func:`pack_tags`); ``""`` without tags."""


_new = tuple.__new__  # builds an Envelope from its parts without the NamedTuple's Python call

Pairs = tuple[tuple[str, str], ...]
"""An entry's tags with their versions, in the order written."""

Opened = tuple[str, float | None, str, Pairs]
"""What :func:`open_envelope` returns: value, expiry (Unix time in seconds, or ``None``),
compute (ms, as text: parsed only when needed), tags with their versions."""

OPENED_MAX = 1024
"""Envelopes a memo of :func:`open_envelope` keeps opened, at most (emptied when full)."""
OPENED_TEXT_MAX = 512
"""Longer envelopes are not kept: a memo holds at most OPENED_MAX times this."""


def is_envelope(text: str) -> bool:
    """Return whether ``text``, as a driver returned it, is an envelope rather than a value."""
    return not text.isascii() and text[:1] == ENVELOPE_MARK


def pack(value: str, expiry: float | None, compute: float, tags: str = "") -> str:
    """Return the envelope of ``value``: ``expiry`` and ``compute`` in seconds, ``tags`` packed."""
    stamp = "" if expiry is None else str(round(expiry * 1000))
    return f"{_HEAD}{stamp},{round(compute * 1000)},{len(tags)}:{tags}{value}"


def open_envelope(
    text: str, resource_type: str, key: str, memo: dict[str, Opened] | None = None
) -> Opened:
    """Return the parts of the envelope ``text`` as stored; a malformed one is a DriverError.

    Pure; with ``memo`` (a cache's own dict), short envelopes are remembered
    there (:data:`OPENED_MAX` of them), so a hot entry read again costs a
    dictionary lookup, not a parse.
    """
    if memo is not None:
        opened = memo.get(text)
        if opened is not None:
            return opened
    try:
        if text[1] != "1":
            raise ValueError
        body = text[2:]  # ASCII up to the value, usually: the searches below are cheap
        first = body.index(",")
        second = body.index(",", first + 1)
        colon = body.index(":", second + 1)
        end = colon + 1 + int(body[second + 1 : colon])
        if end > len(body):
            raise ValueError
        expiry = int(body[:first]) / 1000 if first else None
        tags = body[colon + 1 : end]
        opened = (body[end:], expiry, body[first + 1 : second], _pairs(tags) if tags else ())
    except (ValueError, IndexError):
        raise DriverError(
            f"the entry under resource type {resource_type!r}, key {key!r} starts like an "
            "envelope but is not one: it was not written by pevensie-cache"
        ) from None
    if memo is not None and len(text) <= OPENED_TEXT_MAX:
        if len(memo) >= OPENED_MAX:
            memo.clear()
        memo[text] = opened
    return opened


def unpack(text: str, resource_type: str, key: str) -> Envelope:
    """Return the parts of the envelope ``text``, in seconds; a malformed one is a DriverError."""
    value, expiry, compute, pairs = open_envelope(text, resource_type, key)
    tags = pack_tags([tag for tag, _ in pairs], [version for _, version in pairs])
    try:
        seconds = int(compute) / 1000
    except ValueError:
        raise DriverError(
            f"the entry under resource type {resource_type!r}, key {key!r} starts like an "
            "envelope but is not one: it was not written by pevensie-cache"
        ) from None
    return _new(Envelope, (value, expiry, seconds, tags))


def pack_tags(tags: Sequence[str], versions: Sequence[str]) -> str:
    """Return the tags part of an envelope: each tag with its version, in order."""
    if len(tags) == 1:
        tag = tags[0]
        return f"{len(tag)}:{tag}{versions[0]};"
    pairs = zip(tags, versions, strict=True)
    return "".join([f"{len(tag)}:{tag}{version};" for tag, version in pairs])


def unpack_tags(text: str) -> dict[str, str]:
    """Return ``{tag: version}`` from the tags part of an envelope (``ValueError`` if malformed)."""
    return dict(_pairs(text))


def _pairs(text: str) -> Pairs:
    found: list[tuple[str, str]] = []
    at = 0
    end = len(text)
    while at < end:
        colon = text.index(":", at)
        tag_end = colon + 1 + int(text[at:colon])
        semicolon = text.index(";", tag_end)
        found.append((text[colon + 1 : tag_end], text[tag_end:semicolon]))
        at = semicolon + 1
    return tuple(found)
