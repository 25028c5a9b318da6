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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from pevensie_cache.contrib.shared import SharedCache, shared_cache
from pevensie_cache.contrib.values import dumps, loads
from pevensie_cache.errors import ConfigError
from pevensie_cache.validation import check_resource_type

__all__ = ["PevensieCache"]

DEFAULT_RESOURCE_TYPE = "django"
"""The resource type of a backend whose ``OPTIONS`` name none."""

_CULLING = ("MAX_ENTRIES", "CULL_FREQUENCY")
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
        self._shared: SharedCache = shared_cache(server, options, what="LOCATION")

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
        c = self._shared.sync()
        # Two calls: the driver's delete does not say whether the key existed.
        if c.get(self.resource_type, key, None) is None:
            return False
        c.delete(self.resource_type, key)
        return True

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
        return self._shared.sync().get(self.resource_type, key, None) is not None

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
        if await c.get(self.resource_type, key, None) is None:
            return False
        await c.delete(self.resource_type, key)
        return True

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
        return await c.get(self.resource_type, key, None) is not None

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
