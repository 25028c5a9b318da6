"""Keys for memoised calls: stable across processes and restarts, derived from the arguments.

``@cache.cached`` stores a call's result under ``<module>.<qualname>:<digest>``,
where the digest is the SHA-256 of the call's arguments written as canonical
JSON (sorted keys, after binding them to the function's signature with its
defaults, ``self``/``cls`` left out for methods). Only values with one stable
textual form are accepted: ``str``, ``int``, ``float``, ``bool``, ``None``,
:class:`~datetime.date`, :class:`~datetime.datetime`, :class:`~datetime.time`,
:class:`~uuid.UUID`, :class:`~decimal.Decimal`, :class:`~enum.Enum` members,
:class:`pathlib.PurePath` (and ``Path``), and lists, tuples, frozensets and
dicts with ``str`` keys of them. Anything else (objects whose ``repr`` carries
a memory address, mutable sets, bytes) is a ``TypeError`` unless the decorator
is given ``key=``.

The canonical JSON is what ``json.dumps(..., sort_keys=True,
separators=(",", ":"), ensure_ascii=True)`` writes for the arguments, each
container tagged so lists, tuples and dicts stay apart (``["l", [...]]``,
``["t", [...]]``, ``["d", {...}]``). The other types are tagged pairs of their
exact text: ``["date","2026-12-01"]``, ``["datetime", isoformat()]`` (so the
UTC offset, or its absence, counts), ``["time", isoformat()]``,
``["uuid","..."]`` (``str()``), ``["decimal","1.10"]`` (``str()``: ``1.10``
and ``1.1`` are two keys), ``["enum","<module>.<qualname>","<member name>"]``,
``["path", as_posix()]``, and a frozenset ``["fs",[...]]`` with its items'
texts sorted. It is written here directly, byte for byte the same, and the
binding is worked out once per function: a call that passes each parameter
once, by position or by name, skips ``inspect.Signature.bind``.
"""

from __future__ import annotations

import hashlib
import inspect
import json.encoder
import math
from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

from pevensie_cache.errors import ArgumentTypeError

__all__ = ["KeyMaker", "function_name"]

_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii  # json's own (C) quoting
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_NO_DEFAULT: Any = inspect.Parameter.empty


def function_name(function: Callable[..., Any]) -> str:
    """Return ``<module>.<qualname>`` of ``function``, the fixed part of its cache keys."""
    module = getattr(function, "__module__", None) or "__main__"
    return f"{module}.{getattr(function, '__qualname__', getattr(function, '__name__', '?'))}"


class KeyMaker:
    """Derives the cache key of a call of one function (see the module docs)."""

    def __init__(self, function: Callable[..., Any], custom: Callable[..., str] | None) -> None:
        """Prepare keys for ``function``; ``custom(*args, **kwargs)`` replaces the derivation."""
        self._name = function_name(function)
        if custom is not None and not callable(custom):
            raise ArgumentTypeError(
                f"the key of {self._name} must be a function of its arguments that returns "
                f"a str, or None, not {type(custom).__name__}"
            )
        self._prefix = self._name + ":"
        self._custom = custom
        self._signature = inspect.signature(function)
        parameters = list(self._signature.parameters.values())
        qualname = getattr(function, "__qualname__", "")
        in_class = "." in qualname and not qualname.endswith("<locals>." + function.__name__)
        self._skip_first = bool(parameters) and parameters[0].name in ("self", "cls") and in_class
        # Worked out once: how a call's arguments map to parameters without bind().
        direct = not any(p.kind in _VARIADIC for p in parameters)
        self._names = [p.name for p in parameters]
        self._arity = len(parameters) if direct else -1  # a call passing each one by position
        self._direct = direct
        self._positional = [p.name for p in parameters if p.kind in _POSITIONAL]
        self._by_name = frozenset(p.name for p in parameters if p.kind in _BY_NAME)
        self._defaults = {p.name: p.default for p in parameters if p.default is not _NO_DEFAULT}
        self._first = 1 if self._skip_first else 0
        keyed = self._names[self._first :]
        # The text of the keyed arguments with a slot for each, fields in sorted order:
        # '{"a":{1},"b":{0}}' for (b, a).
        fields = [
            _quote(name).replace("{", "{{").replace("}", "}}") + ":{" + str(keyed.index(name)) + "}"
            for name in sorted(keyed)
        ]
        self._template = "{{" + ",".join(fields) + "}}"

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        """Return the cache key of ``function(*args, **kwargs)``."""
        if self._custom is not None:
            key = self._custom(*args, **kwargs)
            if not isinstance(key, str) or not key:
                raise ArgumentTypeError(
                    f"the key function of {self._name} must return a non-empty str, "
                    f"not {type(key).__name__}"
                )
            return key
        if not kwargs and len(args) == self._arity:  # the common call: no bind() needed
            values: Sequence[Any] | None = args[self._first :]
        else:
            values = self._direct_values(args, kwargs) if self._direct else None
        try:
            if values is None:
                text = self._bound_text(args, kwargs)
            else:
                try:  # arguments of plain types, at C speed
                    texts = [_PLAIN_TEXT[type(value)](value) for value in values]
                except KeyError:
                    texts = [_text(value, self._name) for value in values]
                text = self._template.format(*texts)
        except ValueError as exc:  # an int too long to write
            raise ArgumentTypeError(f"{self._name}: arguments cannot be keyed: {exc}") from None
        return self._prefix + hashlib.sha256(text.encode()).hexdigest()

    def _direct_values(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
        """Return the keyed arguments in parameter order, or ``None`` to let bind() decide.

        Handles a call that passes each parameter at most once, positionally
        within the positional parameters or by a name that may be passed so,
        the rest having defaults; anything else (an error included) is left to
        ``Signature.bind``, which gives the same result or raises the usual error.
        """
        names = self._names
        positional = self._positional
        if len(args) > len(positional):
            return None
        given = dict(zip(positional, args, strict=False))  # fewer args than positionals
        for name, value in kwargs.items():
            if name in given or name not in self._by_name:
                return None
            given[name] = value
        defaults = self._defaults
        values = []
        for name in names:
            if name in given:
                values.append(given[name])
            elif name in defaults:
                values.append(defaults[name])
            else:
                return None  # missing: bind() raises the TypeError
        return values[self._first :]

    def _bound_text(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """Write the canonical text through ``Signature.bind`` (``*args``/``**kwargs``, errors)."""
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        if self._skip_first:
            arguments.pop(self._names[0])
        texts = {name: _text(value, self._name) for name, value in arguments.items()}
        return "{" + ",".join([f"{_quote(name)}:{texts[name]}" for name in sorted(texts)]) + "}"


def _float_text(value: float) -> str:
    """Write a float as json does (``allow_nan=True``)."""
    if math.isfinite(value):
        return float.__repr__(value)
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


_PLAIN_TEXT: dict[type, Callable[[Any], str]] = {
    str: _quote,
    int: int.__repr__,
    float: _float_text,
    bool: {True: "true", False: "false"}.__getitem__,
    type(None): {None: "null"}.__getitem__,
}
"""The text of each plain type, as json writes it (exact types: subclasses are refused)."""


def _text(value: Any, name: str) -> str:
    """Return ``value`` in the canonical JSON form (see the module docs).

    Containers are written as tagged pairs (``["l",[...]]``, ``["t",[...]]``,
    ``["d",{...}]``), so no two different arguments write the same text.
    Arguments are written, and refused, in their order; a dict's keys are all
    checked before its values, and its items are written sorted by key (the
    key itself, not its escaped form, as ``sort_keys`` does).
    """
    write = _PLAIN_TEXT.get(type(value))
    if write is not None:
        return write(value)
    kind = type(value)
    if kind is list or kind is tuple:
        tag = '["l",[' if kind is list else '["t",['
        return tag + ",".join([_text(item, name) for item in value]) + "]]"
    if kind is dict:
        if not all(type(key) is str for key in value):
            raise ArgumentTypeError(f"{name}: dict arguments need str keys to be keyed stably")
        items = {key: _text(item, name) for key, item in value.items()}
        return '["d",{' + ",".join([f"{_quote(key)}:{items[key]}" for key in sorted(items)]) + "}]"
    if kind is frozenset:
        return '["fs",[' + ",".join(sorted([_text(item, name) for item in value])) + "]]"
    tagged = _tagged_text(value)
    if tagged is not None:
        return tagged
    raise ArgumentTypeError(
        f"{name}: an argument of type {kind.__name__} cannot be keyed stably across "
        "processes; pass key=... to the decorator to build the key yourself"
    )


def _tagged_text(value: Any) -> str | None:
    """Write a value of one of the tagged types (see the module docs), or return ``None``."""
    if isinstance(value, Enum):
        kind = type(value)
        where = f"{kind.__module__}.{kind.__qualname__}"
        return f'["enum",{_quote(where)},{_quote(value.name)}]'
    if isinstance(value, datetime):  # before date: a datetime is a date
        return f'["datetime",{_quote(value.isoformat())}]'
    if isinstance(value, date):
        return f'["date",{_quote(value.isoformat())}]'
    if isinstance(value, time):
        return f'["time",{_quote(value.isoformat())}]'
    if isinstance(value, UUID):
        return f'["uuid",{_quote(str(value))}]'
    if isinstance(value, Decimal):
        return f'["decimal",{_quote(str(value))}]'
    if isinstance(value, PurePath):
        return f'["path",{_quote(value.as_posix())}]'
    return None
