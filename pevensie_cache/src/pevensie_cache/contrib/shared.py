"""The caches the framework backends share: one per URL and driver options in a process.

Django builds a backend object per thread (and per alias), Flask-Caching one
per app, dogpile.cache one per region. Backends configured with the same URL
and driver options share one :class:`SharedCache`, so a process holds one
connection pool per configuration (for ``memory://``, one store), connected on
first use, never at import or configuration time.

The async face (Django's ``aget``, ``aset``, ...) gets one connected
:class:`~pevensie_cache.AsyncPevensieCache` per event loop, because async
connections belong to the loop that opened them; a driver with a native async
face is used natively, never through a worker thread. An in-process store
(:class:`~pevensie_cache.driver.AsyncViewDriver`, the memory driver) gives its
async face over the very store the sync face uses, so both faces see one cache.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

from pevensie_cache import cache, forks
from pevensie_cache.driver import AsyncViewDriver
from pevensie_cache.errors import ConfigError
from pevensie_cache.facade import PevensieCache
from pevensie_cache.facade_async import AsyncPevensieCache
from pevensie_cache.urls import mask_url

__all__ = ["SharedCache", "aclose_all", "close_all", "shared_cache"]


class SharedCache:
    """One configuration's cache, connected on first use: the sync face and one async per loop."""

    def __init__(self, url: str, options: Mapping[str, Any]) -> None:
        """Build (without connecting) the cache of ``url`` with the driver ``options``.

        A bad URL or option raises :class:`~pevensie_cache.ConfigError` here,
        when the framework builds its backend, rather than on first use.
        """
        self._url = url
        self._options = dict(options)
        self._cache = cache.from_url(url, **self._options)
        self._ready: PevensieCache | None = None
        self._lock = threading.Lock()
        self._async: dict[asyncio.AbstractEventLoop, AsyncPevensieCache] = {}
        self._async_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        forks.renew_after_fork(self)

    def _forked(self) -> None:
        """In a forked child: a new lock (another thread may have held it, connecting).

        A connection another thread had under way did not finish here: the
        child's first use connects (the driver's own connections are the child's).
        """
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SharedCache {mask_url(self._url)!r}>"

    def sync(self) -> PevensieCache:
        """Return the connected sync cache, connecting it on the first call."""
        ready = self._ready
        if ready is not None:
            return ready
        with self._lock:
            if self._ready is None:
                if not self._cache.connected:
                    self._cache.connect()
                self._ready = self._cache
            return self._ready

    async def async_cache(self) -> AsyncPevensieCache:
        """Return the async cache connected on the running event loop, connecting it first."""
        loop = asyncio.get_running_loop()
        ready = self._async.get(loop)
        if ready is not None:
            return ready
        return await self._connect_async(loop)

    async def _connect_async(self, loop: asyncio.AbstractEventLoop) -> AsyncPevensieCache:
        with self._lock:
            lock = self._async_locks.setdefault(loop, asyncio.Lock())
        async with lock:
            ready = self._async.get(loop)
            if ready is None:
                ready = self._new_async()
                await ready.connect()
                with self._lock:
                    # Connections of loops closed since are unusable: forget them.
                    for old in [old for old in self._async if old.is_closed()]:
                        del self._async[old]
                        self._async_locks.pop(old, None)
                    self._async[loop] = ready
            return ready

    def _new_async(self) -> AsyncPevensieCache:
        driver = self._cache.driver
        if isinstance(driver, AsyncViewDriver):
            self.sync()  # the store is the sync driver's: live before the view is used
            return AsyncPevensieCache(driver.async_view())
        return cache.from_url_async(self._url, **self._options)

    def close(self) -> None:
        """Disconnect the sync cache and forget the async ones; the next use connects again.

        An async cache is disconnected by :meth:`aclose` on its own loop; one
        forgotten here closes its connections when it is garbage-collected.
        """
        with self._lock:
            ready, self._ready = self._ready, None
            self._async.clear()
            self._async_locks.clear()
        if ready is not None and ready.connected:
            ready.disconnect()

    async def aclose(self) -> None:
        """Disconnect the async cache of the running event loop, if it has one."""
        loop = asyncio.get_running_loop()
        with self._lock:
            ready = self._async.pop(loop, None)
            self._async_locks.pop(loop, None)
        if ready is not None and ready.connected:
            await ready.disconnect()


_SHARED: dict[tuple[str, str], SharedCache] = {}
_SHARED_LOCK = threading.Lock()


def shared_cache(url: object, options: Mapping[str, Any], *, what: str) -> SharedCache:
    """Return the process's :class:`SharedCache` for ``url`` and the driver ``options``.

    ``what`` names the setting in errors (``"LOCATION"``, ``"CACHE_PEVENSIE_URL"``, ...).
    """
    if not isinstance(url, str) or not url:
        shown = type(url).__name__ if not isinstance(url, str) else "an empty string"
        raise ConfigError(
            f"{what} must be a Pevensie cache URL (redis://..., memory://), not {shown}"
        )
    # The options' repr tells equal configurations apart; it is a key, never shown.
    key = (url, repr(sorted(options.items())))
    with _SHARED_LOCK:
        found = _SHARED.get(key)
        if found is None:
            found = _SHARED[key] = SharedCache(url, options)
        return found


def close_all() -> None:
    """Disconnect every shared cache of this process (tests, worker shutdown).

    The backends stay usable: their next call connects again.
    """
    with _SHARED_LOCK:
        shared = list(_SHARED.values())
    for one in shared:
        one.close()


async def aclose_all() -> None:
    """Disconnect the running event loop's async cache of every shared cache."""
    with _SHARED_LOCK:
        shared = list(_SHARED.values())
    for one in shared:
        await one.aclose()
