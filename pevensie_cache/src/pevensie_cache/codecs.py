"""Codecs: how a resource turns its values into the cache's strings and back.

A codec is any object with ``encode(obj) -> str`` and ``decode(text) -> obj``.
Two are built in, named ``"str"`` (values must already be ``str``; nothing is
converted) and ``"json"`` (any JSON value: ``dict``, ``list``, ``str``, ``int``,
``float``, ``bool``, ``None``; tuples come back as lists). No pickle codec is
built in and nothing here ever unpickles: reading the cache cannot run code.

>>> JSON.decode(JSON.encode({"name": "Ada", "langs": ["en", "fr"]}))
{'name': 'Ada', 'langs': ['en', 'fr']}
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from pevensie_cache.errors import ArgumentTypeError, ArgumentValueError, ConfigError

__all__ = ["JSON", "STR", "Codec", "JsonCodec", "StrCodec", "resolve_codec"]


_V = TypeVar("_V")


@runtime_checkable
class Codec(Protocol[_V]):
    """Turns values into strings for the cache, and strings read back into values.

    ``Codec[User]`` encodes and decodes ``User`` objects: a resource with it
    is a ``Resource[User]``, whose ``get`` a type checker reads as ``User``.
    """

    def encode(self, value: _V) -> str:
        """Return the string to store for ``value`` (``TypeError``/``ValueError`` if it can't)."""

    def decode(self, text: str) -> _V:
        """Return the value a stored string stands for; raise ``ValueError`` if it can't."""


class StrCodec:
    """The ``"str"`` codec: values are ``str`` and are stored as they are."""

    name = "str"

    def __repr__(self) -> str:
        return "StrCodec()"

    def encode(self, value: Any) -> str:
        """Return ``value`` itself; anything but ``str`` is an argument error."""
        if type(value) is not str:
            raise ArgumentTypeError(
                f"the str codec stores str values, not {type(value).__name__}: "
                "use codec='json' for JSON values, or encode it yourself"
            )
        return value

    def decode(self, text: str) -> str:
        """Return ``text`` itself."""
        return text


class JsonCodec:
    """The ``"json"`` codec: any JSON value, stored as compact JSON text (UTF-8, NaN refused)."""

    name = "json"

    def __repr__(self) -> str:
        return "JsonCodec()"

    def encode(self, value: Any) -> str:
        """Return ``value`` as JSON text; a value JSON cannot hold is an argument error."""
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except TypeError as exc:
            raise ArgumentTypeError(
                f"the json codec cannot encode a value of type {type(value).__name__}: {exc}"
            ) from None
        except ValueError as exc:
            raise ArgumentValueError(f"the json codec cannot encode this value: {exc}") from None

    def decode(self, text: str) -> Any:
        """Return the value of JSON ``text``."""
        # The common case, text this codec wrote (no surrounding whitespace): json's own
        # scanner, without json.loads's layers. Anything else, errors included, is
        # json.loads's to answer.
        if type(text) is str:
            try:
                value, end = _scan(text, 0)
            except Exception:  # noqa: S110 - json.loads below raises the error to show
                pass
            else:
                if end == len(text):
                    return value
        return json.loads(text)


# What json.loads calls, configured alike (JSONDecoder sets it in __init__; typeshed omits it).
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

STR = StrCodec()
"""The ``"str"`` codec."""

JSON = JsonCodec()
"""The ``"json"`` codec."""

_NAMED: dict[str, Codec[Any]] = {"str": STR, "json": JSON}


def resolve_codec(codec: str | Codec[Any]) -> Codec[Any]:
    """Return the codec ``codec`` names (``"str"``, ``"json"``), or ``codec`` if it is one."""
    if isinstance(codec, str):
        found = _NAMED.get(codec)
        if found is None:
            raise ConfigError(
                f"unknown codec {codec!r}: use 'str', 'json', or an object with encode and decode"
            )
        return found
    if not (callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None))):
        raise ConfigError(
            f"a codec needs encode(value) -> str and decode(text) methods; "
            f"{type(codec).__name__} lacks them"
        )
    return codec
