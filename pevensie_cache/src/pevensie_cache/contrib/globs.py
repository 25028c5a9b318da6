"""Redis glob patterns, matched in the process: ``SCAN MATCH``'s rules, for keys already read.

The Django backend's ``keys``, ``iter_keys`` and ``delete_pattern`` (django-redis's
extras) read a resource type's keys page by page and keep those a glob selects;
they must select exactly what the server's own matching would.
"""

from __future__ import annotations

__all__ = ["glob_matches"]


def glob_matches(pattern: str, text: str) -> bool:
    r"""Return whether ``text`` matches the glob ``pattern`` as Redis matches one (``SCAN MATCH``).

    ``*`` any run of characters, ``?`` any one, ``[abc]``, ``[a-z]`` (bounds
    in either order) and ``[^a]`` one of a set or not, ``\`` makes the next
    character literal, inside a set too. ``fnmatch`` differs: it negates
    with ``[!a]`` and has no escape, so ``u[^a]`` and ``u\*`` chose other keys.
    """
    return _glob(pattern, 0, text, 0)


def _glob(pattern: str, p: int, text: str, t: int) -> bool:
    # A port of the server's stringmatchlen: the same rules, unclosed sets included.
    end = len(pattern)
    while p < end:
        ch = pattern[p]
        if ch == "*":
            while p + 1 < end and pattern[p + 1] == "*":
                p += 1
            if p + 1 == end:
                return True
            return any(_glob(pattern, p + 1, text, at) for at in range(t, len(text) + 1))
        if t == len(text):
            return False
        if ch == "?":
            pass
        elif ch == "[":
            p, matched = _glob_set(pattern, p + 1, text[t])
            if not matched:
                return False
        else:
            if ch == "\\" and p + 1 < end:
                p += 1
            if pattern[p] != text[t]:
                return False
        p += 1
        t += 1
    return t == len(text)


def _glob_set(pattern: str, p: int, ch: str) -> tuple[int, bool]:
    """Match ``ch`` against the set opening at ``p``; return where it ends (its ``]``)."""
    end = len(pattern)
    negate = p < end and pattern[p] == "^"
    if negate:
        p += 1
    matched = False
    while True:
        if p < end - 1 and pattern[p] == "\\":
            p += 1
            matched = matched or pattern[p] == ch
        elif p < end and pattern[p] == "]":
            break
        elif p >= end:
            p -= 1  # an unclosed set ends with the pattern
            break
        elif p + 2 < end and pattern[p + 1] == "-":
            low, high = sorted((pattern[p], pattern[p + 2]))
            matched = matched or low <= ch <= high
            p += 2
        else:
            matched = matched or pattern[p] == ch
        p += 1
    return p, matched != negate
