"""A Django cache backend over any Pevensie driver (``pip install "pevensie-cache[django]"``).

.. code-block:: python

    CACHES = {
        "default": {
            "BACKEND": "pevensie_cache.contrib.django.PevensieCache",
            "LOCATION": "redis://localhost:6379/0",  # any Pevensie URL
            "OPTIONS": {"resource_type": "django"},  # other keys: driver options
        }
    }

The whole Django cache API works, with ``KEY_PREFIX``, ``VERSION``,
``KEY_FUNCTION`` and ``TIMEOUT`` as Django defines them: ``None`` keeps a
value forever, ``0`` or a negative timeout expires it at once (``set`` deletes
the key), a fractional timeout is rounded up to whole seconds. The async
methods (``aget``, ``aset``, ...) run on the driver's native async face, one
connection pool per event loop, never in a worker thread.

Values are kept the way Django's own Redis backend keeps them: integers as
plain integers (so ``incr`` is one atomic server-side operation), every other
object pickled; the pickle is written as base64 text, Pevensie values being
text (see :mod:`pevensie_cache.contrib.values`, and its warning: reading a
pickle can run code, so keep the cache server private).

What differs from Django's ``RedisCache``: ``clear()`` deletes only this
backend's resource type (never the whole database; caches that share a
resource type clear together); the Redis driver retries and times out as
configured; any Pevensie URL works (Cluster, Sentinel, TLS, Unix sockets,
``memory://``, third-party drivers); ``close()`` keeps the pool open for the
next request, as Django's own does. Culling options (``MAX_ENTRIES``,
``CULL_FREQUENCY``) are rejected: the store bounds its size itself (Redis
``maxmemory``, ``memory://?max_entries=``).

The django-redis extras people call work too: :meth:`PevensieCache.ttl`,
:meth:`~PevensieCache.keys`, :meth:`~PevensieCache.iter_keys`,
:meth:`~PevensieCache.delete_pattern` (glob patterns over this backend's keys,
walked with ``SCAN``, never ``KEYS``) and :meth:`~PevensieCache.lock` (a
server-side lease lock); ``OPTIONS["IGNORE_EXCEPTIONS"] = True`` is the
cache's ``fail_open``: an unreachable server reads as a miss and writes
nothing, logged at WARNING and counted by ``instrument()``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache, default_key_func
from django.utils.module_loading import import_string

from pevensie_cache import cache as _cache
from pevensie_cache.contrib.globs import glob_matches
from pevensie_cache.contrib.shared import SharedCache, shared_cache
from pevensie_cache.contrib.values import dumps, loads
from pevensie_cache.errors import (
    CacheMiss,
    ConfigError,
    DriverUnavailable,
    LockNotHeld,
    LockTimeout,
    NotConnected,
    PevensieCacheError,
)
from pevensie_cache.locks import CacheLock
from pevensie_cache.options import UnknownOptionError
from pevensie_cache.validation import check_resource_type

__all__ = ["DjangoLock", "PevensieCache"]

DEFAULT_RESOURCE_TYPE = "django"
"""The resource type of a backend whose ``OPTIONS`` name none."""

_CULLING = ("MAX_ENTRIES", "CULL_FREQUENCY")
_OWN_OPTIONS = ("resource_type", "IGNORE_EXCEPTIONS")
"""The backend's own OPTIONS; every other key goes to the driver (or the cache)."""
DEFAULT_LOCK_TIMEOUT = 60.0
"""Seconds a lock from :meth:`PevensieCache.lock` is held at most when ``timeout=None``."""
_KEYS_PAGE = 1000
_GLOB_SPECIAL = frozenset("*?[]\\^-")
logger = logging.getLogger("pevensie_cache")
_NOW = 0
"""The TTL of a timeout of 0 or less (see ``get_backend_timeout``): expire at once."""


class PevensieCache(BaseCache):  # type: ignore[misc]  # Django ships no type information
    """A Django cache backend: ``LOCATION`` is a Pevensie URL, ``OPTIONS`` driver options."""

    def __init__(self, server: object, params: Mapping[str, Any]) -> None:
        """Configure the backend (Django calls this); nothing connects until first use."""
        super().__init__(params)
        options = dict(params.get("OPTIONS") or {})
        culling = [name for name in _CULLING if name in options]
        if culling:
            raise ConfigError(
                f"OPTIONS {', '.join(culling)}: Django's culling does not apply to "
                "pevensie_cache.contrib.django.PevensieCache; the store bounds its own size "
                "(Redis: maxmemory and maxmemory-policy; memory://?max_entries=N)"
            )
        self.resource_type: str = options.pop("resource_type", DEFAULT_RESOURCE_TYPE)
        check_resource_type(self.resource_type)
        ignore = options.pop("IGNORE_EXCEPTIONS", None)
        if ignore is not None:
            if not isinstance(ignore, bool):
                raise ConfigError(
                    f"OPTIONS IGNORE_EXCEPTIONS must be True or False, not {type(ignore).__name__}"
                )
            if "fail_open" in options and options["fail_open"] != ignore:
                raise ConfigError("OPTIONS IGNORE_EXCEPTIONS and fail_open disagree: give one")
            options["fail_open"] = ignore  # django-redis's name for the cache's fail_open
        reverse = params.get("REVERSE_KEY_FUNCTION")
        self._reverse_key: Callable[[str], str] = (
            _reverse_default_key
            if reverse is None
            else (import_string(reverse) if isinstance(reverse, str) else reverse)
        )
        try:
            self._shared: SharedCache = shared_cache(server, options, what="LOCATION")
        except UnknownOptionError as exc:
            raise exc.with_options("Django backend", _OWN_OPTIONS) from None

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> int | None:
        """Return the TTL a Django ``timeout`` means: ``None`` (forever), seconds, or 0 (now).

        ``DEFAULT_TIMEOUT`` is the backend's ``TIMEOUT``; a fraction rounds up.
        """
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        seconds: int = math.ceil(timeout)
        return max(_NOW, seconds)

    # -- sync face ---------------------------------------------------------------------

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store ``value`` unless ``key`` holds one; return whether it was stored."""
        key = self.make_and_validate_key(key, version=version)
        text = dumps(value)
        ttl = self.get_backend_timeout(timeout)
        c = self._shared.sync()
        if ttl == _NOW:  # stored and expired at once: "stored" if the key was free
            return c.get(self.resource_type, key, None) is None
        return c.add(self.resource_type, key, text, ttl)

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """Return the value of ``key``, or ``default`` when there is none."""
        key = self.make_and_validate_key(key, version=version)
        text = self._shared.sync().get(self.resource_type, key, None)
        return default if text is None else loads(text)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Store ``value`` under ``key`` for ``timeout`` seconds (``None``: forever)."""
        key = self.make_and_validate_key(key, version=version)
        text = dumps(value)
        ttl = self.get_backend_timeout(timeout)
        c = self._shared.sync()
        if ttl == _NOW:
            c.delete(self.resource_type, key)
        else:
            c.set(self.resource_type, key, text, ttl)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        """Give ``key`` a new timeout; return whether it exists."""
        key = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        if ttl == _NOW:
            return self._delete(key)
        return self._shared.sync().touch(self.resource_type, key, ttl)

    def delete(self, key: Any, version: int | None = None) -> bool:
        """Delete ``key``; return whether it held a value."""
        return self._delete(self.make_and_validate_key(key, version=version))

    def _delete(self, key: str) -> bool:
        return self._shared.sync().delete(self.resource_type, key)

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """Return the values found for ``keys`` in one batch; misses are left out."""
        names = {self.make_and_validate_key(key, version=version): key for key in keys}
        if not names:
            return {}
        found = self._shared.sync().get_many(self.resource_type, names)
        return {names[name]: loads(text) for name, text in found.items()}

    def has_key(self, key: Any, version: int | None = None) -> bool:
        """Return whether ``key`` holds a value."""
        key = self.make_and_validate_key(key, version=version)
        return self._shared.sync().exists(self.resource_type, key)

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Add ``delta`` to the integer under ``key`` atomically; ``ValueError`` if absent."""
        key = self.make_and_validate_key(key, version=version)
        c = self._shared.sync()
        if c.get(self.resource_type, key, None) is None:
            raise ValueError(f"Key {key!r} not found.")
        # Should the key vanish between the two calls, the counter this creates
        # lives one second rather than forever.
        return c.incr(self.resource_type, key, delta, ttl_seconds=1)

    def set_many(
        self,
        data: Mapping[Any, Any],
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[Any]:
        """Store every item of ``data`` in one batch; return the keys that failed (none)."""
        if not data:
            return []
        items = {
            self.make_and_validate_key(key, version=version): dumps(value)
            for key, value in data.items()
        }
        ttl = self.get_backend_timeout(timeout)
        c = self._shared.sync()
        if ttl == _NOW:
            c.delete_many(self.resource_type, items)
        else:
            c.set_many(self.resource_type, items, ttl)
        return []

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Delete every key of ``keys`` in one batch."""
        names = [self.make_and_validate_key(key, version=version) for key in keys]
        if names:
            self._shared.sync().delete_many(self.resource_type, names)

    def clear(self) -> None:
        """Delete every key of this backend's resource type, and nothing else."""
        self._shared.sync().clear(self.resource_type)

    # -- the django-redis extras ---------------------------------------------------------

    def ttl(self, key: Any, version: int | None = None) -> int | None:
        """Return the whole seconds ``key`` has left (django-redis's ``ttl``).

        ``None`` when it never expires, ``0`` when it does not exist.
        """
        key = self.make_and_validate_key(key, version=version)
        try:
            return self._shared.sync().ttl(self.resource_type, key)
        except CacheMiss:
            return 0

    def iter_keys(
        self, search: str, itersize: int | None = None, version: int | None = None
    ) -> Iterator[Any]:
        """Yield the keys (as given to ``set``) matching the glob ``search`` (django-redis's).

        ``*``, ``?`` and ``[...]`` match as in Redis patterns; the walk reads
        ``itersize`` keys per page (``SCAN``, never ``KEYS``), so it never blocks
        the server. A key written while the walk runs may or may not be seen.
        """
        try:
            yield from self._walk(search, version, itersize or _KEYS_PAGE)
        except (DriverUnavailable, NotConnected) as exc:
            if not self._ignored("iter_keys", exc):  # served open, the walk ends there
                raise

    def keys(self, search: str, version: int | None = None) -> list[Any] | None:
        """Return the keys (as given to ``set``) matching the glob ``search`` (django-redis's).

        ``None`` when the store is unreachable and ``IGNORE_EXCEPTIONS`` is on (django-redis's).
        """
        try:
            return list(self._walk(search, version, _KEYS_PAGE))
        except (DriverUnavailable, NotConnected) as exc:
            if not self._ignored("keys", exc):
                raise
            return None

    def _walk(self, search: str, version: int | None, page_size: int) -> Iterator[Any]:
        pattern = self._pattern(search, version)
        reverse = self._reverse_key
        seen: set[str] = set()
        inspector = _cache.inspector(self._shared.sync())
        for page in inspector.keys(self.resource_type, page_size):
            for stored in page:
                if stored not in seen and glob_matches(pattern, stored):
                    seen.add(stored)
                    yield reverse(stored)

    def _ignored(self, operation: str, exc: BaseException) -> bool:
        """Log ``exc`` and return ``True`` if the cache serves failures open, else ``False``.

        ``IGNORE_EXCEPTIONS`` (or ``fail_open``) is read from the built cache: it may
        come from ``OPTIONS`` or the URL, as text (``"false"``) or a bool.
        """
        try:
            serving_open = bool(self._shared.sync().fail_open)
        except PevensieCacheError:
            serving_open = False
        if serving_open:
            logger.warning(
                "%s failed (%s: %s); IGNORE_EXCEPTIONS: served as nothing",
                operation,
                type(exc).__name__,
                exc,
            )
        return serving_open

    def delete_pattern(
        self,
        pattern: str,
        version: int | None = None,
        prefix: str | None = None,
        itersize: int | None = None,
    ) -> int | None:
        """Delete every key matching the glob ``pattern``; return how many (django-redis's).

        ``prefix`` replaces the backend's ``KEY_PREFIX`` for this call. ``None``
        when the store is unreachable and ``IGNORE_EXCEPTIONS`` is on (django-redis's).
        """
        full = self._pattern(pattern, version, prefix)
        c = self._shared.sync()
        found: dict[str, None] = {}  # in order, each once
        deleted = 0
        try:
            inspector = _cache.inspector(c)
            for page in inspector.keys(self.resource_type, itersize or _KEYS_PAGE):
                found.update((stored, None) for stored in page if glob_matches(full, stored))
                if len(found) >= _KEYS_PAGE:
                    c.delete_many(self.resource_type, list(found))
                    deleted += len(found)
                    found.clear()
        except (DriverUnavailable, NotConnected) as exc:
            if not self._ignored("delete_pattern", exc):
                raise
            return None
        if found:
            c.delete_many(self.resource_type, list(found))
        return deleted + len(found)

    def _pattern(self, search: str, version: int | None, prefix: str | None = None) -> str:
        """Return the glob for ``search``, Django's key prefix and version taken literally."""
        prefix = self.key_prefix if prefix is None else prefix
        version = self.version if version is None else version
        if self.key_func is not default_key_func:
            return str(self.key_func(search, prefix, version))
        literal = default_key_func("", prefix, version)
        return "".join(f"\\{ch}" if ch in _GLOB_SPECIAL else ch for ch in literal) + search

    def lock(
        self,
        key: Any,
        version: int | None = None,
        timeout: float | None = None,
        sleep: float = 0.1,
        blocking: bool = True,
        blocking_timeout: float | None = None,
        thread_local: bool = True,
    ) -> DjangoLock:
        """Return the server-side lock ``key`` (django-redis's ``lock``): ``with cache.lock(k):``.

        ``timeout`` is the lease in seconds (``None``: :data:`DEFAULT_LOCK_TIMEOUT`;
        a crashed holder's lock expires after it); ``blocking=False`` tries
        once, ``blocking_timeout`` bounds the wait (``None``: wait as long as
        it takes). ``sleep`` and ``thread_local`` are accepted for
        django-redis's signature: waits poll at 5 ms doubling to 100 ms, and a
        lock object belongs to the holder that took it.
        """
        name = self.make_and_validate_key(key, version=version)
        return DjangoLock(
            self._shared.sync(),
            self.resource_type,
            name,
            DEFAULT_LOCK_TIMEOUT if timeout is None else timeout,
            blocking=blocking,
            blocking_timeout=blocking_timeout,
        )

    # -- async face: the same steps, awaited on the driver's native async face ------

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Async :meth:`add`."""
        key = self.make_and_validate_key(key, version=version)
        text = dumps(value)
        ttl = self.get_backend_timeout(timeout)
        c = await self._shared.async_cache()
        if ttl == _NOW:
            return await c.get(self.resource_type, key, None) is None
        return await c.add(self.resource_type, key, text, ttl)

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        """Async :meth:`get`."""
        key = self.make_and_validate_key(key, version=version)
        c = await self._shared.async_cache()
        text = await c.get(self.resource_type, key, None)
        return default if text is None else loads(text)

    async def aset(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        """Async :meth:`set`."""
        key = self.make_and_validate_key(key, version=version)
        text = dumps(value)
        ttl = self.get_backend_timeout(timeout)
        c = await self._shared.async_cache()
        if ttl == _NOW:
            await c.delete(self.resource_type, key)
        else:
            await c.set(self.resource_type, key, text, ttl)

    async def atouch(
        self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Async :meth:`touch`."""
        key = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        if ttl == _NOW:
            return await self._adelete(key)
        c = await self._shared.async_cache()
        return await c.touch(self.resource_type, key, ttl)

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        """Async :meth:`delete`."""
        return await self._adelete(self.make_and_validate_key(key, version=version))

    async def _adelete(self, key: str) -> bool:
        c = await self._shared.async_cache()
        return await c.delete(self.resource_type, key)

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """Async :meth:`get_many`."""
        names = {self.make_and_validate_key(key, version=version): key for key in keys}
        if not names:
            return {}
        c = await self._shared.async_cache()
        found = await c.get_many(self.resource_type, names)
        return {names[name]: loads(text) for name, text in found.items()}

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        """Async :meth:`has_key`."""
        key = self.make_and_validate_key(key, version=version)
        c = await self._shared.async_cache()
        return await c.exists(self.resource_type, key)

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Async :meth:`incr`."""
        key = self.make_and_validate_key(key, version=version)
        c = await self._shared.async_cache()
        if await c.get(self.resource_type, key, None) is None:
            raise ValueError(f"Key {key!r} not found.")
        return await c.incr(self.resource_type, key, delta, ttl_seconds=1)

    async def aset_many(
        self,
        data: Mapping[Any, Any],
        timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[Any]:
        """Async :meth:`set_many`."""
        if not data:
            return []
        items = {
            self.make_and_validate_key(key, version=version): dumps(value)
            for key, value in data.items()
        }
        ttl = self.get_backend_timeout(timeout)
        c = await self._shared.async_cache()
        if ttl == _NOW:
            await c.delete_many(self.resource_type, items)
        else:
            await c.set_many(self.resource_type, items, ttl)
        return []

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Async :meth:`delete_many`."""
        names = [self.make_and_validate_key(key, version=version) for key in keys]
        if names:
            c = await self._shared.async_cache()
            await c.delete_many(self.resource_type, names)

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        c = await self._shared.async_cache()
        await c.clear(self.resource_type)


def _reverse_default_key(stored: str) -> str:
    """Django's default key function's inverse: ``<prefix>:<version>:<key>`` -> ``<key>``."""
    return stored.split(":", 2)[2] if stored.count(":") >= 2 else stored


class DjangoLock:
    """A lease lock in django-redis's shape: ``acquire()`` returns whether it took the lock.

    Over :class:`~pevensie_cache.CacheLock` (the cache's own lock, released only
    by its holder); ``with`` raises :class:`~pevensie_cache.LockTimeout` when
    the lock stayed taken for the whole wait.
    """

    _FOREVER = float(2**31)  # "wait as long as it takes", as a finite bound

    def __init__(
        self,
        c: Any,
        resource_type: str,
        name: str,
        lease: float,
        *,
        blocking: bool = True,
        blocking_timeout: float | None = None,
    ) -> None:
        """Bind the lock ``name`` of ``resource_type`` in the connected cache ``c``."""
        self._cache = c
        self._resource_type = resource_type
        self._name = name
        self._lease = lease
        self._blocking = blocking
        self._blocking_timeout = blocking_timeout
        self._held: CacheLock | None = None
        self._until = 0.0  # when the lease ends, as far as this holder knows (monotonic)

    def __repr__(self) -> str:
        return f"<DjangoLock {self._name!r} {'held' if self._held else 'not held'}>"

    def acquire(self, blocking: bool | None = None, blocking_timeout: float | None = None) -> bool:
        """Take the lock; return whether it was taken.

        ``False`` after the wait, or at once without ``blocking``.
        """
        blocking = self._blocking if blocking is None else blocking
        bound = self._blocking_timeout if blocking_timeout is None else blocking_timeout
        wait = 0.0 if not blocking else (self._FOREVER if bound is None else bound)
        lock = self._cache.lock(
            self._resource_type, self._name, ttl_seconds=self._lease, wait_seconds=wait
        )
        try:
            lock.acquire()
        except LockTimeout:
            return False
        self._held = lock
        self._until = time.monotonic() + self._lease
        return True

    def release(self) -> None:
        """Release the lock if this object still holds it (compare-and-delete)."""
        held, self._held = self._held, None
        if held is not None:
            held.release()

    def extend(self, additional_time: float, replace_ttl: bool = False) -> bool:
        """Add ``additional_time`` seconds to the lease, as django-redis's (redis-py's) lock does.

        With ``replace_ttl=True`` the lease is ``additional_time`` from now
        instead. A lock lost meanwhile raises :class:`~pevensie_cache.LockNotHeld`.
        """
        if self._held is None:
            raise LockNotHeld(f"extend(): the lock {self._name!r} is not held by this object")
        now = time.monotonic()
        lease = additional_time if replace_ttl else max(0.0, self._until - now) + additional_time
        self._held.extend(lease)
        self._until = now + lease
        return True

    def owned(self) -> bool:
        """Whether this object holds the lock (as far as it knows: a lease may lapse)."""
        return self._held is not None

    def locked(self) -> bool:
        """Whether anyone holds the lock now, this object included while its lease lasts.

        A probe: take it and give it back at once (a lapsed lease is nobody's).
        """
        probe = self._cache.lock(self._resource_type, self._name, wait_seconds=0)
        try:
            probe.acquire()
        except LockTimeout:
            return True
        probe.release()
        return False

    def __enter__(self) -> DjangoLock:
        """Take the lock, waiting as configured; ``LockTimeout`` if it stayed taken."""
        if not self.acquire():
            raise LockTimeout(f"the lock {self._name!r} stayed taken for the whole wait")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release the lock."""
        self.release()
