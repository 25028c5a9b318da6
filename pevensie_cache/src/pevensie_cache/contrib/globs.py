"""Redis glob patterns, matched in the process: ``SCAN MATCH``'s rules, for keys already read.

The Django backend's ``keys``, ``iter_keys`` and ``delete_pattern`` (django-redis's
extras) read a resource type's keys page by page and keep those a glob selects;
they must select exactly what the server's own matching would.
"""

from __future__ import annotations

from typing import cast

__all__ = ["glob_matches"]


def glob_matches(pattern: str, text: str) -> bool:
    r"""Return whether ``text`` matches the glob ``pattern`` as Redis matches one (``SCAN MATCH``).

    ``*`` any run of characters, ``?`` any one, ``[abc]``, ``[a-z]`` (bounds
    in either order) and ``[^a]`` one of a set or not, ``\`` makes the next
    character literal, inside a set too. ``fnmatch`` differs: it negates
    with ``[!a]`` and has no escape, so ``u[^a]`` and ``u\*`` chose other keys.
    As on the server, the match is over the UTF-8 bytes (``?`` is one byte of
    ``é``, not the letter), an empty key matches only an empty pattern, and a
    set's range compares bytes as C's signed ``char``. The pattern is read once
    into steps, then matched in one pass per step: no pattern takes time
    exponential in its stars, nor any recursion (the server gives up past 1,000
    nested stars, as no match; this one still answers).
    """
    if not text:
        return not pattern  # the server's loop never starts on an empty key
    steps = _steps(pattern.encode("utf-8", "surrogatepass"))
    data = text.encode("utf-8", "surrogatepass")
    size = len(data)
    reach = [False] * (size + 1)  # reach[j]: the steps so far consume exactly data[:j]
    reach[0] = True
    for step in steps:
        if step is _STAR:
            seen = False
            for at in range(size + 1):
                seen = seen or reach[at]
                reach[at] = seen
            continue
        after = [False] * (size + 1)
        for at in range(size):
            if reach[at] and _one(step, data[at]):
                after[at + 1] = True
        reach = after
        if not any(reach):
            return False
    return reach[size]


_STAR = object()
_ANY = object()
_Set = tuple[bool, frozenset[int], tuple[tuple[int, int], ...]]
"""A ``[...]``: whether it is negated, its single bytes, its ranges (signed bytes)."""


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def _one(step: object, byte: int) -> bool:
    if step is _ANY:
        return True
    if isinstance(step, int):
        return step == byte
    negate, singles, ranges = cast(_Set, step)
    signed = _signed(byte)
    found = byte in singles or any(low <= signed <= high for low, high in ranges)
    return bool(found != negate)


def _steps(pattern: bytes) -> list[object]:
    """Read ``pattern`` as the server does: stars, ``?``, sets and literal bytes, in order."""
    steps: list[object] = []
    end = len(pattern)
    p = 0
    while p < end:
        byte = pattern[p]
        if byte == _STAR_BYTE:
            if not steps or steps[-1] is not _STAR:
                steps.append(_STAR)
        elif byte == _ANY_BYTE:
            steps.append(_ANY)
        elif byte == _OPEN:
            p, read = _read_set(pattern, p + 1)
            steps.append(read)
        else:
            if byte == _ESCAPE and p + 1 < end:
                p += 1
            steps.append(pattern[p])
        p += 1
    return steps


def _read_set(pattern: bytes, p: int) -> tuple[int, _Set]:
    """Read the set opening at ``p``; return where it ends (its ``]``, or the last byte)."""
    end = len(pattern)
    negate = p < end and pattern[p] == _CARET
    if negate:
        p += 1
    singles: set[int] = set()
    ranges: list[tuple[int, int]] = []
    while True:
        if p < end - 1 and pattern[p] == _ESCAPE:
            p += 1
            singles.add(pattern[p])
        elif p < end and pattern[p] == _CLOSE:
            break
        elif p >= end:
            p -= 1  # an unclosed set ends with the pattern
            break
        elif p + 2 < end and pattern[p + 1] == _DASH:
            low, high = sorted((_signed(pattern[p]), _signed(pattern[p + 2])))
            ranges.append((low, high))
            p += 2
        else:
            singles.add(pattern[p])
        p += 1
    return p, (negate, frozenset(singles), tuple(ranges))


_STAR_BYTE, _ANY_BYTE, _OPEN, _CLOSE, _ESCAPE, _CARET, _DASH = b"*?[]\\^-"
