"""The input rules, enforced once in the facade so every driver gets them.

- ``resource_type``: a non-empty ``str`` without ``:``, so ``<resource_type>:<key>``
  can never collide;
- ``key``: a non-empty ``str`` (``:`` allowed);
- ``value``: a ``str``;
- ``ttl_seconds``: ``None`` or a whole number of seconds from 1 to :data:`TTL_MAX`: an
  ``int``, a float with no fraction (``60.0``), or a :class:`datetime.timedelta` (a
  fraction of a second rounds up, as Django does); ``bool`` is rejected;
- every string must be encodable as UTF-8 (no lone surrogates).

Each check raises an :class:`~pevensie_cache.ArgumentError` before any driver
is called, so a rejected call changes nothing; :func:`check_ttl` returns the TTL
as the ``int`` (or ``None``) drivers receive.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import timedelta

from pevensie_cache.errors import (
    ArgumentError,
    ArgumentTypeError,
    ArgumentValueError,
    CounterError,
)

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "TTL_MAX",
    "Ttl",
    "check_address",
    "check_address_once",
    "check_counter",
    "check_delta",
    "check_flag",
    "check_items",
    "check_key",
    "check_keys",
    "check_lock_seconds",
    "check_lock_times",
    "check_resource_type",
    "check_ttl",
    "check_value",
    "not_callable",
    "parse_counter",
    "plain_address",
    "plain_write",
    "shown",
    "too_long",
]


def check_resource_type(resource_type: object) -> None:
    """Check a resource type."""
    if type(resource_type) is str and resource_type and ":" not in resource_type:
        if not resource_type.isascii():
            _check_encodable("resource_type", resource_type)
        return
    if not isinstance(resource_type, str):
        raise ArgumentTypeError(f"resource_type must be a str, not {type(resource_type).__name__}")
    if not resource_type:
        raise ArgumentValueError("resource_type must not be empty")
    if ":" in resource_type:
        raise ArgumentValueError(
            f"resource_type must not contain ':' (got {resource_type!r}); "
            "keys are stored as <resource_type>:<key>"
        )
    _check_encodable("resource_type", resource_type)


def check_key(key: object) -> None:
    """Check one key."""
    if type(key) is str and key:
        if not key.isascii():
            _check_encodable("key", key)
        return
    if not isinstance(key, str):
        raise ArgumentTypeError(f"key must be a str, not {type(key).__name__}")
    if not key:
        raise ArgumentValueError("key must not be empty")
    _check_encodable("key", key)


def check_address(resource_type: object, key: object) -> None:
    """Check a ``(resource_type, key)`` pair."""
    check_resource_type(resource_type)
    check_key(key)


def check_value(value: object, resource_type: object = None) -> None:
    """Check one value: any ``str``, the empty string included.

    ``resource_type``, when known, makes the hint for a value of another type
    show the exact call that stores it.
    """
    if type(value) is str:
        if not value.isascii():
            _check_encodable("value", value)
        return
    if not isinstance(value, str):
        raise ArgumentTypeError(
            f"value must be a str, not {type(value).__name__}{_hint(value, resource_type)}"
        )
    _check_encodable("value", value)


def _hint(value: object, resource_type: object) -> str:
    """Say what to do with a value that is not a ``str``."""
    if isinstance(value, (bytes, bytearray)):
        return " (decode bytes first, e.g. value.decode())"
    named = repr(resource_type) if isinstance(resource_type, str) else "resource_type"
    return (
        "; values are strings: store other values through a JSON resource of your "
        f"cache object, c.resource({named}, codec='json').set(key, value) "
        "(with c the cache you called), or encode it first"
    )


TTL_MAX = 10**15
"""The longest TTL, in seconds (about 31 million years): within what every driver
can keep (Redis holds an expiry as 64-bit milliseconds since 1970, and refuses one
beyond it), with room for ``stale_seconds`` on top. ``None`` means no expiry."""

Ttl = int | float | timedelta | None
"""What ``ttl_seconds`` takes: whole seconds (``60``, ``60.0``, a timedelta rounded up) or None."""

_TTL_TYPES = "None, an int, a float without fraction (60.0) or a datetime.timedelta"
"""What a TTL may be, as a type error about one says it."""


def check_ttl(
    ttl_seconds: object, name: str = "ttl_seconds", *, none: str = "no expiry"
) -> int | None:
    """Check a TTL and return it as drivers get it: ``None`` (no expiry) or an ``int`` >= 1.

    Accepted: ``None``, an ``int``, a float without fraction (``60.0``) and a
    :class:`datetime.timedelta`, whose fraction of a second rounds up (as
    Django's timeouts do). A float with a fraction is refused with a message
    saying how to round it: the cache counts whole seconds. ``name`` and
    ``none`` (what ``None`` means) are for messages.
    """
    if ttl_seconds is None:
        return None
    kind = type(ttl_seconds)
    if kind is int:
        seconds: int = ttl_seconds  # type: ignore[assignment]
    elif isinstance(ttl_seconds, timedelta):
        micros = ttl_seconds // timedelta(microseconds=1)
        seconds = -(-micros // 1_000_000)  # a fraction of a second rounds up
    elif isinstance(ttl_seconds, float):
        if not math.isfinite(ttl_seconds):
            raise ArgumentValueError(f"{name} must be a whole number of seconds, got {ttl_seconds}")
        if not ttl_seconds.is_integer():
            up = math.ceil(ttl_seconds)
            raise ArgumentValueError(
                f"{name} is whole seconds, got {ttl_seconds}: round it yourself "
                f"(math.ceil({ttl_seconds}) == {up} keeps it at least that long), "
                "or pass a datetime.timedelta, which rounds up"
            )
        seconds = int(ttl_seconds)
    elif isinstance(ttl_seconds, int) and not isinstance(ttl_seconds, bool):
        seconds = int(ttl_seconds)
    else:
        raise ArgumentTypeError(f"{name} must be {_TTL_TYPES}, not {kind.__name__}")
    if seconds < 1:
        raise ArgumentValueError(f"{name} must be at least 1, got {shown(ttl_seconds)}")
    if seconds > TTL_MAX:
        raise ArgumentValueError(f"{too_long(name, ttl_seconds)}; for {none}, pass None")
    return seconds


def too_long(name: str, seconds: object) -> str:
    """Say that ``seconds`` (a number over :data:`TTL_MAX`) is too long for ``name``."""
    return (
        f"{name} must be at most {TTL_MAX} seconds (about 31 million years), got {shown(seconds)}"
    )


_SHOWN_DIGITS = 30


def shown(value: object) -> str:
    """Return ``repr(value)`` for an error message; for an int of over 30 digits, its sign and size.

    Past 4,300 digits an int has no text at all (``ValueError``: Python's digit
    limit), and long before that its digits say nothing to the reader.
    """
    if isinstance(value, int) and not -(10**_SHOWN_DIGITS) < value < 10**_SHOWN_DIGITS:
        sign = "a negative" if value < 0 else "an"
        return f"{sign} int of more than {_SHOWN_DIGITS} digits"
    return repr(value)


def check_lock_seconds(name: str, value: object, *, zero: bool) -> float:
    """Check a lock's lease or wait: seconds (``int``, ``float``, ``timedelta``) > 0 (or >= 0).

    At most :data:`TTL_MAX`, as a TTL: a lease is a TTL on the store.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        # An int no float holds is out of range either way: clamped, it says so (no OverflowError).
        seconds = (
            float(max(-1, min(value, TTL_MAX + 1))) if isinstance(value, int) else float(value)
        )
    else:
        raise ArgumentTypeError(
            f"{name} must be a number of seconds or a datetime.timedelta, "
            f"not {type(value).__name__}"
        )
    if not (seconds >= 0 if zero else seconds > 0) or not math.isfinite(seconds):
        least = "0 or more" if zero else "more than 0"
        raise ArgumentValueError(f"{name} must be {least} seconds, got {shown(value)}")
    if seconds > TTL_MAX:
        raise ArgumentValueError(too_long(name, value))
    return seconds


LOCK_LEASE = 10.0
"""``get_or_set``'s default ``lock_lease``: this object, so a call that keeps it skips the check."""


def check_lock_times(lease: object, wait: object) -> tuple[float, float]:
    """Check ``get_or_set``'s ``lock_lease`` and ``lock_wait``; return both in seconds.

    ``wait`` ``None``: twice the lease.
    """
    seconds = check_lock_seconds("lock_lease", lease, zero=False)
    if wait is None:
        return seconds, 2 * seconds
    return seconds, check_lock_seconds("lock_wait", wait, zero=False)


def not_callable(name: str, value: object) -> ArgumentTypeError:
    """Return the error for ``value``, given as ``name``, which should be callable."""
    return ArgumentTypeError(f"{name} must be callable, not {type(value).__name__}")


def check_flag(name: str, value: object) -> None:
    """Check a flag: ``True`` or ``False``, not merely truthy (``lock="false"`` would lock)."""
    if value is not True and value is not False:
        raise ArgumentTypeError(f"{name} must be True or False, not {type(value).__name__}")


INT64_MIN = -(2**63)
"""The smallest counter value (Redis counters are signed 64-bit integers)."""
INT64_MAX = 2**63 - 1
"""The largest counter value."""


def check_delta(delta: object) -> None:
    """Check an ``incr`` delta: an ``int`` (not ``bool``) within the 64-bit range."""
    if not isinstance(delta, int) or isinstance(delta, bool):
        raise ArgumentTypeError(f"delta must be an int, not {type(delta).__name__}")
    if not INT64_MIN <= delta <= INT64_MAX:
        raise ArgumentValueError(f"delta must fit in a signed 64-bit integer, got {shown(delta)}")


def check_counter(value: int) -> int:
    """Return a counter's new value, or raise :class:`CounterError` when it overflows 64 bits."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise CounterError("incr would overflow the 64-bit counter; the value is unchanged")
    return value


def parse_counter(text: str) -> int:
    """Return the integer a stored counter holds, or raise :class:`CounterError` (as Redis does)."""
    if text == "0":
        return 0
    digits = text[1:] if text[:1] == "-" else text
    # Redis's own rule: ASCII digits, no sign but "-", no leading zero, no "-0".
    if digits.isascii() and digits.isdigit() and digits[0] != "0":
        return check_counter(int(text))
    raise CounterError("incr met a stored value that is not a 64-bit integer; it is unchanged")


def check_keys(keys: object) -> list[str]:
    """Check a batch of keys and return them as a list (a lone ``str`` is rejected)."""
    if isinstance(keys, (str, bytes, bytearray)) or not isinstance(keys, Iterable):
        raise ArgumentTypeError(f"keys must be an iterable of str, not {type(keys).__name__}")
    checked = list(keys)
    if not _all_plain(checked, allow_empty=False):
        for key in checked:
            check_key(key)
    return checked


def check_items(items: object) -> dict[str, str]:
    """Check a batch of ``key -> value`` items and return them as a dict."""
    if not isinstance(items, Mapping):
        raise ArgumentTypeError(
            f"items must be a mapping of str to str, not {type(items).__name__}"
        )
    checked = dict(items)
    if not (_all_plain(checked, allow_empty=False) and _all_plain(checked.values())):
        for key, value in checked.items():
            check_key(key)
            try:
                check_value(value)
            except ArgumentError as exc:
                # Name the key (never the value): which item of the batch was refused.
                raise type(exc)(f"items[{key!r}]: {exc}") from None
    return checked


def _all_plain(texts: Iterable[object], allow_empty: bool = True) -> bool:
    """Whether every item is a non-empty (unless allowed) ASCII ``str``, checked at C speed.

    ``str.join`` rejects anything that is not a ``str`` and ``isascii`` rules out
    lone surrogates; a ``False`` sends the caller to the per-item checks, which
    raise the precise error or accept the unusual but valid case.
    """
    try:
        joined = "".join(texts)  # type: ignore[arg-type]
    except TypeError:
        return False
    return joined.isascii() and (allow_empty or all(texts))


def _check_encodable(what: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ArgumentValueError(
            f"{what} cannot be encoded as UTF-8 (position {exc.start}: lone surrogate?)"
        ) from None


_KNOWN_RESOURCE_TYPES: set[str] = set()
"""Resource types that passed the full checks; an application uses few, so few are kept."""
_KNOWN_RESOURCE_TYPES_MAX = 1024


def plain_address(resource_type: object, key: object) -> bool:
    """Return whether an address is plainly valid: a known resource type and a non-empty ASCII key.

    The hot path's check; a ``False`` sends the caller to :func:`check_address_once`,
    which raises the precise error or accepts the unusual but valid case.
    """
    return (
        type(resource_type) is str
        and resource_type in _KNOWN_RESOURCE_TYPES
        and type(key) is str
        and key != ""
        and key.isascii()
    )


def plain_write(resource_type: object, key: object, value: object, ttl_seconds: object) -> bool:
    """Return whether a write is plainly valid (see :func:`plain_address`): the common case."""
    return (
        plain_address(resource_type, key)
        and type(value) is str
        and value.isascii()
        and (ttl_seconds is None or (type(ttl_seconds) is int and 0 < ttl_seconds <= TTL_MAX))
    )


def check_address_once(resource_type: object, key: object) -> None:
    """Run the full address checks, and remember a resource type that passes as known."""
    check_address(resource_type, key)
    if type(resource_type) is str and len(_KNOWN_RESOURCE_TYPES) < _KNOWN_RESOURCE_TYPES_MAX:
        _KNOWN_RESOURCE_TYPES.add(resource_type)
