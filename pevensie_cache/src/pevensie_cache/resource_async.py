"""Resources and memoised functions of the async face: values of any type through a codec.

``cache.resource("user", codec="json")`` binds one resource type and a codec
(:class:`AsyncResource`); ``@cache.cached("report")`` memoises a function
(:class:`AsyncCachedFunction`). Both sit on a cache's string operations.

This module is the source of the sync face's too: ``resource.py``
(:class:`~pevensie_cache.Resource`, ``CachedFunction``) is generated from it by
``.ci/unasync.py``. Edit this file, then run ``nox -s generate``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
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
from pevensie_cache.freshness_async import check_freshness
from pevensie_cache.keys import KeyMaker, function_name
from pevensie_cache.primitives_async import FACE, call
from pevensie_cache.validation import LOCK_LEASE, Ttl, check_flag, check_ttl, not_callable

__all__ = ["AsyncCachedFunction", "AsyncResource", "AsyncStringCache"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")
_V = TypeVar("_V")
_D = TypeVar("_D")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


class AsyncStringCache(Protocol):
    """The string operations a resource needs: those of ``AsyncPevensieCache``."""

    @overload
    async def get(self, resource_type: str, key: str) -> str: ...

    @overload
    async def get(self, resource_type: str, key: str, default: _T) -> str | _T: ...

    async def get(self, resource_type: str, key: str, default: Any = ...) -> Any:
        """Return the stored string, or ``default`` (``CacheMiss`` without one)."""

    async def set(
        self,
        resource_type: str,
        key: str,
        value: str,
        ttl_seconds: Ttl = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Store a string."""

    async def delete(self, resource_type: str, key: str) -> bool:
        """Remove a key; say whether it was there."""

    async def exists(self, resource_type: str, key: str) -> bool:
        """Say whether a key holds a value."""

    async def ttl(self, resource_type: str, key: str) -> int | None:
        """Return the seconds a key has left."""

    async def get_many(self, resource_type: str, keys: Iterable[str]) -> dict[str, str]:
        """Return the strings found."""

    async def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: Ttl = None
    ) -> None:
        """Store strings."""

    async def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """Remove keys."""

    async def add(self, resource_type: str, key: str, value: str, ttl_seconds: Ttl = None) -> bool:
        """Store a string only if the key is absent."""

    async def incr(
        self, resource_type: str, key: str, delta: int = 1, ttl_seconds: Ttl = None
    ) -> int:
        """Add to a counter."""

    async def decr(
        self, resource_type: str, key: str, delta: int = 1, ttl_seconds: Ttl = None
    ) -> int:
        """Subtract from a counter."""

    async def touch(self, resource_type: str, key: str, ttl_seconds: Ttl = None) -> bool:
        """Set or clear a TTL."""

    async def clear(self, resource_type: str, *, on_progress: Progress | None = None) -> int:
        """Delete every key of a resource type."""

    async def get_or_set(
        self,
        resource_type: str,
        key: str,
        loader: Callable[[], Any],
        ttl_seconds: Ttl = None,
        *,
        lock: bool = False,
        lock_lease: float = ...,
        lock_wait: float | None = None,
        stale_seconds: int | None = None,
        early_recompute: bool | float = False,
        stale_on_error: bool = False,
        tags: Iterable[str] | None = None,
    ) -> str:
        """Return the stored string, or load, store and return it once."""


class AsyncResource(Generic[_V]):
    """One resource type of a cache, with a codec: values of type ``_V`` through the codec.

    With the default ``"str"`` codec a resource is exactly the cache's own
    string contract, bound to one resource type (an ``AsyncResource[str]``);
    with ``"json"`` it holds JSON values (``AsyncResource[Any]``); with a
    ``Codec[User]`` it holds ``User`` objects, and a type checker knows that
    ``get`` returns one.
    """

    __slots__ = ("_cache", "_codec", "_plain", "resource_type")

    def __init__(self, cache: AsyncStringCache, resource_type: str, codec: str | Codec[_V]) -> None:
        """Bind ``resource_type`` of ``cache`` with ``codec`` (``"str"``, ``"json"`` or a codec)."""
        self._cache = cache
        self.resource_type = resource_type
        self._codec: Codec[Any] = resolve_codec(codec)
        self._plain = self._codec is STR

    @property
    def codec(self) -> Codec[_V]:
        """The codec values go through."""
        return self._codec

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.resource_type!r} codec={self._codec!r}>"

    @overload
    async def get(self, key: str) -> _V: ...

    @overload
    async def get(self, key: str, default: _D) -> _V | _D: ...

    async def get(self, key: str, default: Any = _MISSING) -> Any:
        """Return the decoded value of ``key``; ``CacheMiss``, or ``default``, on a miss."""
        if self._plain:
            if default is _MISSING:
                return await self._cache.get(self.resource_type, key)
            return await self._cache.get(self.resource_type, key, default)
        text = await self._cache.get(self.resource_type, key, _MISSING)
        if text is _MISSING:
            if default is _MISSING:
                return await self._cache.get(self.resource_type, key)  # raises CacheMiss
            return default
        return self._decode(key, text)

    async def set(
        self,
        key: str,
        value: _V,
        ttl_seconds: Ttl = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Store ``value`` (encoded) under ``key``; a value the codec refuses writes nothing.

        With ``tags``, the cache's ``invalidate_tags`` of any of them makes it a miss.
        """
        encoded = self._encode(key, value)
        if tags is None:
            await self._cache.set(self.resource_type, key, encoded, ttl_seconds)
        else:
            await self._cache.set(self.resource_type, key, encoded, ttl_seconds, tags=tags)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it held a value (an absent key is fine)."""
        return await self._cache.delete(self.resource_type, key)

    async def exists(self, key: str) -> bool:
        """Return whether ``key`` holds a value."""
        return await self._cache.exists(self.resource_type, key)

    async def ttl(self, key: str) -> int | None:
        """Return the whole seconds ``key`` has left (``None``: no expiry; absent: CacheMiss)."""
        return await self._cache.ttl(self.resource_type, key)

    async def get_many(self, keys: Iterable[str]) -> dict[str, _V]:
        """Return the decoded values found for ``keys``; misses are absent."""
        found = await self._cache.get_many(self.resource_type, keys)
        if self._plain:
            return found  # type: ignore[return-value]  # the str codec: _V is str
        return {key: self._decode(key, text) for key, text in found.items()}

    async def set_many(self, items: Mapping[str, _V], ttl_seconds: Ttl = None) -> None:
        """Store every item (encoded); one value the codec refuses writes nothing."""
        encode = self._encode
        encoded: Mapping[str, Any] = (
            items if self._plain else {key: encode(key, value) for key, value in items.items()}
        )
        await self._cache.set_many(self.resource_type, encoded, ttl_seconds)

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Remove every key of ``keys``."""
        await self._cache.delete_many(self.resource_type, keys)

    async def add(self, key: str, value: _V, ttl_seconds: Ttl = None) -> bool:
        """Store ``value`` only if ``key`` is absent; return whether it stored."""
        return await self._cache.add(self.resource_type, key, self._encode(key, value), ttl_seconds)

    async def incr(self, key: str, delta: int = 1, ttl_seconds: Ttl = None) -> int:
        """Add ``delta`` to the counter ``key`` (stored as decimal text, whatever the codec)."""
        return await self._cache.incr(self.resource_type, key, delta, ttl_seconds)

    async def decr(self, key: str, delta: int = 1, ttl_seconds: Ttl = None) -> int:
        """Subtract ``delta`` from the counter ``key`` (stored as decimal text)."""
        return await self._cache.decr(self.resource_type, key, delta, ttl_seconds)

    async def touch(self, key: str, ttl_seconds: Ttl = None) -> bool:
        """Set (or clear) the TTL of ``key``; ``False`` when it is absent."""
        return await self._cache.touch(self.resource_type, key, ttl_seconds)

    async def clear(self, *, on_progress: Progress | None = None) -> int:
        """Delete every key of this resource type; return how many."""
        return await self._cache.clear(self.resource_type, on_progress=on_progress)

    async def get_or_set(
        self,
        key: str,
        loader: Callable[[], _V | Awaitable[_V]],
        ttl_seconds: Ttl = None,
        *,
        lock: bool = False,
        lock_lease: float = LOCK_LEASE,
        lock_wait: float | None = None,
        stale_seconds: int | None = None,
        early_recompute: bool | float = False,
        stale_on_error: bool = False,
        tags: Iterable[str] | None = None,
    ) -> _V:
        """Return the value of ``key``, or call ``loader()`` once, store its result and return it.

        See the cache's ``get_or_set`` (its lock, freshness and tag options
        too); the loaded value goes through the codec both ways, so a loaded
        value and a cached one have the same type.
        """
        fresh = (
            stale_seconds is not None
            or early_recompute is not False
            or stale_on_error is not False
            or tags is not None
        )
        if self._plain and not fresh:
            found: Any = await self._cache.get_or_set(
                self.resource_type,
                key,
                loader,
                ttl_seconds,
                lock=lock,
                lock_lease=lock_lease,
                lock_wait=lock_wait,
            )
            return found  # type: ignore[no-any-return]
        if self._plain:
            load: Callable[[], Any] = loader
        else:
            if not callable(loader):  # wrapped below, where the cache could no longer tell
                raise not_callable("loader", loader)
            encode = self._encode

            async def load() -> str:
                return encode(key, await call(loader))

        if fresh:
            text = await self._cache.get_or_set(
                self.resource_type,
                key,
                load,
                ttl_seconds,
                lock=lock,
                lock_lease=lock_lease,
                lock_wait=lock_wait,
                stale_seconds=stale_seconds,
                early_recompute=early_recompute,
                stale_on_error=stale_on_error,
                tags=tags,
            )
        elif lock is not False:  # the cache checks it is True
            text = await self._cache.get_or_set(
                self.resource_type,
                key,
                load,
                ttl_seconds,
                lock=lock,
                lock_lease=lock_lease,
                lock_wait=lock_wait,
            )
        else:  # the lock times are not used (nor checked) without the lock
            text = await self._cache.get_or_set(self.resource_type, key, load, ttl_seconds)
        return text if self._plain else self._decode(key, text)  # type: ignore[return-value]

    def cached(
        self,
        ttl_seconds: Ttl = None,
        *,
        key: Callable[..., str] | None = None,
        lock: bool = False,
        stale_seconds: int | None = None,
        early_recompute: bool | float = False,
        stale_on_error: bool = False,
        tags: Callable[..., Iterable[str]] | None = None,
    ) -> Callable[[Callable[_P, Awaitable[_R]]], AsyncCachedFunction[_P, _R]]:
        """Memoise a function in this resource type (see :class:`AsyncCachedFunction`)."""
        if tags is not None and not callable(tags):
            raise ArgumentTypeError(
                "tags of a cached function must be a callable taking its arguments and "
                f"returning the call's tags, not {type(tags).__name__}"
            )

        def decorate(function: Callable[_P, Awaitable[_R]]) -> AsyncCachedFunction[_P, _R]:
            return AsyncCachedFunction(
                function,
                self,
                ttl_seconds,
                key=key,
                lock=lock,
                stale_seconds=stale_seconds,
                early_recompute=early_recompute,
                stale_on_error=stale_on_error,
                tags=tags,
            )

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

    def _decode(self, key: str, text: str) -> _V:
        try:
            value: _V = self._codec.decode(text)
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
        return value


class AsyncCachedFunction(Generic[_P, _R]):
    """A memoised function: a call returns the cached result for its arguments, or runs it once.

    The key of a call is derived from the function's module and qualified name
    and its arguments (see :mod:`pevensie_cache.keys`), or given by ``key=``.
    Concurrent calls with the same arguments run the function once
    (``lock=True``: once across processes too). ``invalidate(*args,
    **kwargs)`` forgets one call's result. ``stale_seconds``,
    ``early_recompute``, ``stale_on_error`` are those of ``get_or_set``;
    ``tags(*args, **kwargs)`` returns a call's tags.
    """

    __name__: str
    __qualname__: str
    __wrapped__: Callable[_P, Awaitable[_R]]

    def __init__(
        self,
        function: Callable[_P, Awaitable[_R]],
        resource: AsyncResource[Any],
        ttl_seconds: Ttl,
        *,
        key: Callable[..., str] | None = None,
        lock: bool = False,
        stale_seconds: int | None = None,
        early_recompute: bool | float = False,
        stale_on_error: bool = False,
        tags: Callable[..., Iterable[str]] | None = None,
    ) -> None:
        """Wrap ``function``, storing results in ``resource`` (see ``cache.cached``)."""
        face: str = FACE
        if not callable(function):
            raise ArgumentTypeError(f"cached() decorates a function, not {type(function).__name__}")
        if inspect.iscoroutinefunction(function) != (face == "async"):
            want = "an async def function" if face == "async" else "a plain def function"
            other = "cache.new()" if face == "async" else "cache.new_async()"
            raise ArgumentTypeError(
                f"{function_name(function)}: this cache memoises {want}; "
                f"use a cache from {other} for the other kind"
            )
        check_freshness(
            check_ttl(ttl_seconds), stale_seconds, early_recompute, stale_on_error, None
        )
        check_flag("lock", lock)
        functools.update_wrapper(self, function)
        self._function = function
        self._resource = resource
        self._ttl = ttl_seconds
        self._lock = lock
        self._key = KeyMaker(function, key)
        self._fresh = (
            stale_seconds is not None
            or early_recompute is not False
            or stale_on_error is not False
            or tags is not None
        )
        self._stale_seconds = stale_seconds
        self._early_recompute = early_recompute
        self._stale_on_error = stale_on_error
        self._tags = tags

    def __repr__(self) -> str:
        # The function and the resource type only: never the cache, whose driver holds the URL.
        return (
            f"<{type(self).__name__} {function_name(self._function)} "
            f"resource_type={self._resource.resource_type!r}>"
        )

    async def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        """Return the cached result for these arguments, or run the function once and store it."""
        if self._fresh:
            tags = self._tags
            fresh: _R = await self._resource.get_or_set(
                self._key(*args, **kwargs),
                lambda: self._function(*args, **kwargs),
                self._ttl,
                lock=self._lock,
                stale_seconds=self._stale_seconds,
                early_recompute=self._early_recompute,
                stale_on_error=self._stale_on_error,
                tags=None if tags is None else tags(*args, **kwargs),
            )
            return fresh
        result: _R = await self._resource.get_or_set(
            self._key(*args, **kwargs),
            lambda: self._function(*args, **kwargs),
            self._ttl,
            lock=self._lock,
        )
        return result

    async def invalidate(self, *args: _P.args, **kwargs: _P.kwargs) -> None:
        """Forget the cached result of the call with these arguments."""
        await self._resource.delete(self._key(*args, **kwargs))

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

    def __init__(self, cached: AsyncCachedFunction[Any, Any], instance: object) -> None:
        self._cached = cached
        self._instance = instance

    def __repr__(self) -> str:
        # As the function's own: its name and resource type. The instance by its type and
        # address only: its own repr may hold anything (a client, credentials).
        cached = self._cached
        return (
            f"<bound {type(cached).__name__} {function_name(cached._function)} "
            f"of {object.__repr__(self._instance)} "
            f"resource_type={cached._resource.resource_type!r}>"
        )

    # What a bound method answers (functools.wraps, inspect, logging, frameworks' routers).
    @property
    def __name__(self) -> str:
        return self._cached.__name__

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self._cached.__doc__

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return self._cached.__wrapped__

    @property
    def __func__(self) -> AsyncCachedFunction[Any, Any]:
        return self._cached

    @property
    def __self__(self) -> object:
        return self._instance

    def __getattr__(self, name: str) -> Any:
        # __qualname__ cannot be a property: the class statement itself sets it.
        if name == "__qualname__":
            return self._cached.__qualname__
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._cached(self._instance, *args, **kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        """Forget the cached result of the call with these arguments."""
        return self._cached.invalidate(self._instance, *args, **kwargs)

    def key_for(self, *args: Any, **kwargs: Any) -> str:
        """Return the cache key of the call with these arguments."""
        return self._cached.key_for(self._instance, *args, **kwargs)
