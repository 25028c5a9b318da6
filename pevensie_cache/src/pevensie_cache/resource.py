# Generated from resource_async.py by .ci/unasync.py: edit that file, then run `nox -s generate`.
"""Resources and memoised functions of the async face: values of any type through a codec.

``cache.resource("user", codec="json")`` binds one resource type and a codec
(:class:`Resource`); ``@cache.cached("report")`` memoises a function
(:class:`CachedFunction`). Both sit on a cache's string operations.

This module is the source of the sync face's too: ``resource.py``
(:class:`~pevensie_cache.Resource`, ``CachedFunction``) is generated from it by
``.ci/unasync.py``. Edit this file, then run ``nox -s generate``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

from pevensie_cache.codecs import STR, Codec, resolve_codec
from pevensie_cache.driver import Progress
from pevensie_cache.errors import (
    ArgumentTypeError,
    ArgumentValueError,
    CodecError,
    PevensieCacheError,
    raised_by_signal_handler,
)
from pevensie_cache.keys import KeyMaker, function_name
from pevensie_cache.primitives import FACE, call

__all__ = ["CachedFunction", "Resource", "StringCache"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


class StringCache(Protocol):
    """The string operations a resource needs: those of ``PevensieCache``."""

    @overload
    def get(self, resource_type: str, key: str) -> str: ...

    @overload
    def get(self, resource_type: str, key: str, default: _T) -> str | _T: ...

    def get(self, resource_type: str, key: str, default: Any = ...) -> Any:
        """Return the stored string, or ``default`` (``CacheMiss`` without one)."""

    def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None = None) -> None:
        """Store a string."""

    def delete(self, resource_type: str, key: str) -> None:
        """Remove a key."""

    def get_many(self, resource_type: str, keys: Iterable[str]) -> dict[str, str]:
        """Return the strings found."""

    def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None = None
    ) -> None:
        """Store strings."""

    def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """Remove keys."""

    def add(self, resource_type: str, key: str, value: str, ttl_seconds: int | None = None) -> bool:
        """Store a string only if the key is absent."""

    def incr(
        self, resource_type: str, key: str, delta: int = 1, ttl_seconds: int | None = None
    ) -> int:
        """Add to a counter."""

    def touch(self, resource_type: str, key: str, ttl_seconds: int | None = None) -> bool:
        """Set or clear a TTL."""

    def clear(self, resource_type: str, *, on_progress: Progress | None = None) -> int:
        """Delete every key of a resource type."""

    def get_or_set(
        self,
        resource_type: str,
        key: str,
        loader: Callable[[], Any],
        ttl_seconds: int | None = None,
        *,
        lock: bool = False,
        lock_lease: float = ...,
        lock_wait: float | None = None,
    ) -> str:
        """Return the stored string, or load, store and return it once."""


class Resource:
    """One resource type of a cache, with a codec: values of any type the codec handles.

    With the default ``"str"`` codec a resource is exactly the cache's own
    string contract, bound to one resource type.
    """

    __slots__ = ("_cache", "_codec", "_plain", "resource_type")

    def __init__(self, cache: StringCache, resource_type: str, codec: str | Codec) -> None:
        """Bind ``resource_type`` of ``cache`` with ``codec`` (``"str"``, ``"json"`` or a codec)."""
        self._cache = cache
        self.resource_type = resource_type
        self._codec = resolve_codec(codec)
        self._plain = self._codec is STR

    @property
    def codec(self) -> Codec:
        """The codec values go through."""
        return self._codec

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.resource_type!r} codec={self._codec!r}>"

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """Return the decoded value of ``key``; ``CacheMiss``, or ``default``, on a miss."""
        if self._plain:
            if default is _MISSING:
                return self._cache.get(self.resource_type, key)
            return self._cache.get(self.resource_type, key, default)
        text = self._cache.get(self.resource_type, key, _MISSING)
        if text is _MISSING:
            if default is _MISSING:
                return self._cache.get(self.resource_type, key)  # raises CacheMiss
            return default
        return self._decode(key, text)

    def set(self, key: str, value: Any, ttl_seconds: int | None = None) -> None:
        """Store ``value`` (encoded) under ``key``; a value the codec refuses writes nothing."""
        self._cache.set(self.resource_type, key, self._encode(key, value), ttl_seconds)

    def delete(self, key: str) -> None:
        """Remove ``key``; an absent key is fine."""
        self._cache.delete(self.resource_type, key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return the decoded values found for ``keys``; misses are absent."""
        found = self._cache.get_many(self.resource_type, keys)
        if self._plain:
            return found
        return {key: self._decode(key, text) for key, text in found.items()}

    def set_many(self, items: Mapping[str, Any], ttl_seconds: int | None = None) -> None:
        """Store every item (encoded); one value the codec refuses writes nothing."""
        encode = self._encode
        encoded = (
            items if self._plain else {key: encode(key, value) for key, value in items.items()}
        )
        self._cache.set_many(self.resource_type, encoded, ttl_seconds)

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove every key of ``keys``."""
        self._cache.delete_many(self.resource_type, keys)

    def add(self, key: str, value: Any, ttl_seconds: int | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent; return whether it stored."""
        return self._cache.add(self.resource_type, key, self._encode(key, value), ttl_seconds)

    def incr(self, key: str, delta: int = 1, ttl_seconds: int | None = None) -> int:
        """Add ``delta`` to the counter ``key`` (stored as decimal text, whatever the codec)."""
        return self._cache.incr(self.resource_type, key, delta, ttl_seconds)

    def touch(self, key: str, ttl_seconds: int | None = None) -> bool:
        """Set (or clear) the TTL of ``key``; ``False`` when it is absent."""
        return self._cache.touch(self.resource_type, key, ttl_seconds)

    def clear(self, *, on_progress: Progress | None = None) -> int:
        """Delete every key of this resource type; return how many."""
        return self._cache.clear(self.resource_type, on_progress=on_progress)

    def get_or_set(
        self,
        key: str,
        loader: Callable[[], Any],
        ttl_seconds: int | None = None,
        *,
        lock: bool = False,
        lock_lease: float = 10.0,
        lock_wait: float | None = None,
    ) -> Any:
        """Return the value of ``key``, or call ``loader()`` once, store its result and return it.

        See the cache's ``get_or_set``; the loaded value goes through the codec
        both ways, so a loaded value and a cached one have the same type.
        """
        if self._plain:
            return self._cache.get_or_set(
                self.resource_type,
                key,
                loader,
                ttl_seconds,
                lock=lock,
                lock_lease=lock_lease,
                lock_wait=lock_wait,
            )
        encode = self._encode

        def load() -> str:
            return encode(key, call(loader))

        if lock:
            text = self._cache.get_or_set(
                self.resource_type,
                key,
                load,
                ttl_seconds,
                lock=lock,
                lock_lease=lock_lease,
                lock_wait=lock_wait,
            )
        else:  # the lock times are not used (nor checked) without the lock
            text = self._cache.get_or_set(self.resource_type, key, load, ttl_seconds)
        return self._decode(key, text)

    def cached(
        self,
        ttl_seconds: int | None = None,
        *,
        key: Callable[..., str] | None = None,
        lock: bool = False,
    ) -> Callable[[Callable[_P, _R]], CachedFunction[_P, _R]]:
        """Memoise a function in this resource type (see :class:`CachedFunction`)."""

        def decorate(function: Callable[_P, _R]) -> CachedFunction[_P, _R]:
            return CachedFunction(function, self, ttl_seconds, key=key, lock=lock)

        return decorate

    def _encode(self, key: str, value: Any) -> str:
        """Encode ``value``; a codec's ``TypeError``/``ValueError`` becomes an argument error."""
        try:
            return self._codec.encode(value)
        except PevensieCacheError:
            raise
        except TypeError as exc:
            raise ArgumentTypeError(self._refused(key, exc)) from exc
        except ValueError as exc:
            raise ArgumentValueError(self._refused(key, exc)) from exc

    def _refused(self, key: str, exc: Exception) -> str:
        # The codec's own message may quote the value: only its type is named here.
        return (
            f"the {type(self._codec).__name__} cannot encode the value for resource type "
            f"{self.resource_type!r}, key {key!r} ({type(exc).__name__}); nothing was written"
        )

    def _decode(self, key: str, text: str) -> Any:
        try:
            return self._codec.decode(text)
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the codec's: the caller's own, unchanged
            raise CodecError(
                f"the value stored under resource type {self.resource_type!r}, key {key!r} "
                f"cannot be decoded by the {type(self._codec).__name__} "
                f"({type(exc).__name__}); it was written by another codec or client?",
                self.resource_type,
                key,
            ) from None


class CachedFunction(Generic[_P, _R]):
    """A memoised function: a call returns the cached result for its arguments, or runs it once.

    The key of a call is derived from the function's module and qualified name
    and its arguments (see :mod:`pevensie_cache.keys`), or given by ``key=``.
    Concurrent calls with the same arguments run the function once
    (``lock=True``: once across processes too). ``invalidate(*args,
    **kwargs)`` forgets one call's result.
    """

    __name__: str
    __qualname__: str
    __wrapped__: Callable[_P, _R]

    def __init__(
        self,
        function: Callable[_P, _R],
        resource: Resource,
        ttl_seconds: int | None,
        *,
        key: Callable[..., str] | None = None,
        lock: bool = False,
    ) -> None:
        """Wrap ``function``, storing results in ``resource`` (see ``cache.cached``)."""
        face: str = FACE
        if inspect.iscoroutinefunction(function) != (face == "async"):
            want = "an async def function" if face == "async" else "a plain def function"
            other = "cache.new()" if face == "async" else "cache.new_async()"
            raise ArgumentTypeError(
                f"{function_name(function)}: this cache memoises {want}; "
                f"use a cache from {other} for the other kind"
            )
        functools.update_wrapper(self, function)
        self._function = function
        self._resource = resource
        self._ttl = ttl_seconds
        self._lock = lock
        self._key = KeyMaker(function, key)

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """Return the cached result for these arguments, or run the function once and store it."""
        result: _R = self._resource.get_or_set(
            self._key(*args, **kwargs),
            lambda: self._function(*args, **kwargs),
            self._ttl,
            lock=self._lock,
        )
        return result

    def invalidate(self, *args: _P.args, **kwargs: _P.kwargs) -> None:
        """Forget the cached result of the call with these arguments."""
        self._resource.delete(self._key(*args, **kwargs))

    def key_for(self, *args: _P.args, **kwargs: _P.kwargs) -> str:
        """Return the cache key of the call with these arguments."""
        return self._key(*args, **kwargs)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        """Bind to ``instance`` when used as a method (``self`` is left out of the key)."""
        if instance is None:
            return self
        return _BoundMethod(self, instance)


class _BoundMethod:
    """A memoised method bound to its instance: call it, or ``invalidate`` one call."""

    __slots__ = ("_cached", "_instance")

    def __init__(self, cached: CachedFunction[Any, Any], instance: object) -> None:
        self._cached = cached
        self._instance = instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._cached(self._instance, *args, **kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        """Forget the cached result of the call with these arguments."""
        return self._cached.invalidate(self._instance, *args, **kwargs)

    def key_for(self, *args: Any, **kwargs: Any) -> str:
        """Return the cache key of the call with these arguments."""
        return self._cached.key_for(self._instance, *args, **kwargs)
