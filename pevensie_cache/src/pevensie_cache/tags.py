"""Tags: invalidate every entry about one thing at once, whatever its key and resource type.

An entry written with ``tags=[...]`` records, in its envelope (see
:mod:`pevensie_cache.envelope`), the version of each of its tags at the time
it was written. A tag's version is a counter stored under a key of its own;
``invalidate_tags`` increments it, and a read compares the versions an entry
recorded with the current ones (read together with the entry, in the same
batch): one that differs makes the entry a miss. So invalidating a tag costs
one counter increment, however many entries carry it, and every key involved
is an ordinary key of its own (no multi-key command spans two of them, so a
Redis Cluster never answers ``CROSSSLOT``; a near cache drops a counter when
it changes, like any key).

The counters live under the resource type ``""`` (:data:`COUNTERS`), which no
call of the API can name, with the key ``tag:<tag>``: stored as ``:tag:<tag>``
by the built-in drivers, beside the lease locks (``:lock:...``) and apart from
every key the API writes (those start with their resource type, never with
``:``). ``clear`` never touches them.

A counter is created on first use with a random value, not 0 or 1: if one
ever disappears (an eviction under memory pressure, a flush), the entries that
recorded its old value stay misses, since a counter that is absent or created
again never matches them.

This module holds the rules (no I/O), for both faces.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from pevensie_cache.errors import ArgumentTypeError, ArgumentValueError

__all__ = ["COUNTERS", "check_tags", "counter_key", "first_version"]

COUNTERS = ""
"""The resource type the tag counters are stored under, which no API call can use."""

_PREFIX = "tag:"


def counter_key(tag: str) -> str:
    """Return the key (under :data:`COUNTERS`) of the counter holding ``tag``'s version."""
    return _PREFIX + tag


def first_version() -> str:
    """Return the value a new counter starts at: random, so it never repeats an older one."""
    return str(secrets.randbits(53) + 2)


def check_tags(tags: object) -> tuple[str, ...]:
    """Check ``tags`` (an iterable of non-empty ``str``); return them without repeats, in order.

    A lone ``str`` is refused (it would be read as its characters). A tag of a
    ``str`` subclass (a ``(str, Enum)`` member) is returned as its plain text.
    """
    if type(tags) is list or type(tags) is tuple:
        if len(tags) == 1:  # the usual call: one tag
            tag = tags[0]
            if type(tag) is str and tag and tag.isascii():
                return (tag,)
        # A few ASCII tags, no repeats: checked at C speed.
        try:
            joined = "".join(tags)
        except TypeError:
            pass  # not all str: the checks below say which
        else:
            if (
                joined.isascii()
                and all(tags)
                and len(set(tags)) == len(tags)
                and all(type(tag) is str for tag in tags)
            ):
                return tuple(tags)
    if isinstance(tags, (str, bytes, bytearray)) or not isinstance(tags, Iterable):
        raise ArgumentTypeError(
            f"tags must be an iterable of str (a list or tuple), not {type(tags).__name__}"
        )
    items = list(tags)
    for index, tag in enumerate(items):
        if type(tag) is not str:
            if not isinstance(tag, str):
                raise ArgumentTypeError(f"a tag must be a str, not {type(tag).__name__}")
            # A str subclass (a (str, Enum) member...) is its text, whatever it formats as.
            items[index] = tag = str.__str__(tag)
        if not tag:
            raise ArgumentValueError("a tag must not be empty")
        if not tag.isascii():
            try:
                tag.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ArgumentValueError(
                    f"a tag cannot be encoded as UTF-8 (position {exc.start}: lone surrogate?)"
                ) from None
    return tuple(dict.fromkeys(items))
