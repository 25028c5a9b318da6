"""Keys for memoised calls: stable across processes and restarts, derived from the arguments.

``@cache.cached`` stores a call's result under ``<module>.<qualname>:<digest>``,
where the digest is the SHA-256 of the call's arguments written as canonical
JSON (sorted keys, after binding them to the function's signature with its
defaults, ``self``/``cls`` left out for methods). Only values with one stable
textual form are accepted: ``str``, ``int``, ``float``, ``bool``, ``None``, and
lists, tuples and dicts with ``str`` keys of them. Anything else (objects
whose ``repr`` carries a memory address, sets with no stable order, bytes) is
a ``TypeError`` unless the decorator is given ``key=``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from typing import Any

from pevensie_cache.errors import ArgumentTypeError

__all__ = ["KeyMaker", "function_name"]


def function_name(function: Callable[..., Any]) -> str:
    """Return ``<module>.<qualname>`` of ``function``, the fixed part of its cache keys."""
    module = getattr(function, "__module__", None) or "__main__"
    return f"{module}.{getattr(function, '__qualname__', getattr(function, '__name__', '?'))}"


class KeyMaker:
    """Derives the cache key of a call of one function (see the module docs)."""

    def __init__(self, function: Callable[..., Any], custom: Callable[..., str] | None) -> None:
        """Prepare keys for ``function``; ``custom(*args, **kwargs)`` replaces the derivation."""
        self._name = function_name(function)
        self._custom = custom
        self._signature = inspect.signature(function)
        parameters = list(self._signature.parameters)
        qualname = getattr(function, "__qualname__", "")
        in_class = "." in qualname and not qualname.endswith("<locals>." + function.__name__)
        self._skip_first = bool(parameters) and parameters[0] in ("self", "cls") and in_class

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
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        if self._skip_first:
            arguments.pop(next(iter(self._signature.parameters)))
        try:
            text = json.dumps(
                {name: _plain(value, self._name) for name, value in arguments.items()},
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=True,
                allow_nan=True,
            )
        except ValueError as exc:  # a cycle
            raise ArgumentTypeError(f"{self._name}: arguments cannot be keyed: {exc}") from None
        digest = hashlib.sha256(text.encode()).hexdigest()
        return f"{self._name}:{digest}"


def _plain(value: Any, name: str) -> Any:
    """Return ``value`` in a JSON form that tells lists, tuples and dicts apart.

    Containers become tagged pairs (``["l", [...]]``, ``["t", [...]]``,
    ``["d", {...}]``), so no two different arguments write the same text.
    """
    kind = type(value)
    if value is None or kind in (str, int, float, bool):
        return value
    if kind is list or kind is tuple:
        return ["l" if kind is list else "t", [_plain(item, name) for item in value]]
    if kind is dict:
        if not all(type(key) is str for key in value):
            raise ArgumentTypeError(f"{name}: dict arguments need str keys to be keyed stably")
        return ["d", {key: _plain(item, name) for key, item in value.items()}]
    raise ArgumentTypeError(
        f"{name}: an argument of type {kind.__name__} cannot be keyed stably across "
        "processes; pass key=... to the decorator to build the key yourself"
    )
