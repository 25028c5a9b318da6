# Generated from facade_async.py by .ci/unasync.py: edit that file, then run `nox -s generate`.
"""The cache object of the async face: :class:`PevensieCache`.

This module is the source of the sync face too: ``facade.py`` (``PevensieCache``)
is generated from it by ``.ci/unasync.py``, which drops ``await``/``async``
and swaps the names of the async primitives for the sync ones. Edit this file,
then run ``nox -s generate``.

Values are strings addressed by ``(resource_type, key)``. Every argument is
checked here, once, before any driver is called, so a rejected call changes
nothing whatever the driver.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, overload

from pevensie_cache.building import check_driver_object
from pevensie_cache.driver import BatchCacheDriver, CacheDriver
from pevensie_cache.errors import (
    AlreadyConnected,
    CacheMiss,
    NotConnected,
    PevensieCacheError,
    driver_failure,
)
from pevensie_cache.primitives import FACE, Lock
from pevensie_cache.validation import (
    check_address_once,
    check_items,
    check_keys,
    check_resource_type,
    check_ttl,
    check_value,
    plain_address,
    plain_write,
)

__all__ = ["PevensieCache"]

_T = TypeVar("_T")
_Self = TypeVar("_Self", bound="PevensieCache")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


class PevensieCache:
    """A cache over one driver. Build it with ``cache.new`` (``cache.new_async``) or friends.

    A new cache is not connected: call :meth:`connect` (or use it as a context
    manager) before any operation. It is safe to share between threads (tasks
    of one event loop, for the async face) when its driver is; every built-in
    driver is.
    """

    __slots__ = ("_batch", "_driver", "_entered", "_live", "_lock")

    def __init__(self, driver: CacheDriver) -> None:
        """Wrap ``driver``; most code calls ``cache.new`` (``cache.new_async``) instead."""
        check_driver_object(driver, {}, FACE)
        self._driver = driver
        # The same object, typed for its batch operations when it has them.
        self._batch = driver if isinstance(driver, BatchCacheDriver) else None
        self._live: CacheDriver | None = None
        self._lock = Lock()
        self._entered: list[bool] = []  # per `with`: whether it connected the cache

    @property
    def driver(self) -> CacheDriver:
        """The driver this cache delegates to."""
        return self._driver

    @property
    def connected(self) -> bool:
        """Whether :meth:`connect` succeeded and :meth:`disconnect` has not been called since."""
        return self._live is not None

    def __repr__(self) -> str:
        state = "connected" if self._live is not None else "disconnected"
        return f"<{type(self).__name__} {self._driver!r} {state}>"

    # -- lifecycle -------------------------------------------------------------------

    def connect(self: _Self) -> _Self:
        """Connect the driver and return this cache, so ``cache.new(...).connect()`` reads well.

        Raises :class:`~pevensie_cache.AlreadyConnected` when already connected,
        and a :class:`~pevensie_cache.DriverError` when the driver cannot connect.
        """
        with self._lock:
            if self._live is not None:
                raise AlreadyConnected("the cache is already connected")
            try:
                self._driver.connect()
            except PevensieCacheError:
                raise
            except Exception as exc:
                raise driver_failure(exc) from exc
            self._live = self._driver
        return self

    def disconnect(self) -> None:
        """Disconnect the driver; :class:`~pevensie_cache.NotConnected` when it is not connected."""
        with self._lock:
            if self._live is None:
                raise NotConnected("the cache is not connected")
            self._live = None
            try:
                self._driver.disconnect()
            except PevensieCacheError:
                raise
            except Exception as exc:
                raise driver_failure(exc) from exc

    def __enter__(self: _Self) -> _Self:
        """Connect unless already connected; the matching exit undoes only what this did."""
        if self._live is None:
            self.connect()
            self._entered.append(True)
        else:
            self._entered.append(False)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Disconnect if the matching enter connected, and the cache is still connected."""
        connected_here = self._entered.pop() if self._entered else False
        if connected_here and self._live is not None:
            self.disconnect()

    # -- single operations (the hot path: one check, one driver call) ----------------

    def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None = None) -> None:
        """Store ``value`` under ``(resource_type, key)``.

        ``ttl_seconds=None`` stores it without expiry and clears any earlier TTL;
        an ``int`` >= 1 makes it expire after that many seconds.
        """
        driver = self._live
        if driver is None:
            raise NotConnected("set() on a cache that is not connected")
        # The common case in one expression; anything unusual takes the full checks,
        # which raise the precise error (or accept, e.g. non-ASCII text).
        if not plain_write(resource_type, key, value, ttl_seconds):
            check_address_once(resource_type, key)
            check_value(value)
            check_ttl(ttl_seconds)
        try:
            driver.set(resource_type, key, value, ttl_seconds)
        except PevensieCacheError:
            raise
        except Exception as exc:
            raise driver_failure(exc) from exc

    @overload
    def get(self, resource_type: str, key: str) -> str: ...

    @overload
    def get(self, resource_type: str, key: str, default: _T) -> str | _T: ...

    def get(self, resource_type: str, key: str, default: Any = _MISSING) -> Any:
        """Return the value under ``(resource_type, key)``.

        A miss (absent or expired) raises :class:`~pevensie_cache.CacheMiss`, or
        returns ``default`` when one is given.
        """
        driver = self._live
        if driver is None:
            raise NotConnected("get() on a cache that is not connected")
        if not plain_address(resource_type, key):
            check_address_once(resource_type, key)
        try:
            value = driver.get(resource_type, key)
        except PevensieCacheError:
            raise
        except Exception as exc:
            raise driver_failure(exc) from exc
        if value is None:
            if default is _MISSING:
                raise CacheMiss(resource_type, key)
            return default
        return value

    def delete(self, resource_type: str, key: str) -> None:
        """Remove the value under ``(resource_type, key)``; an absent key is fine."""
        driver = self._live
        if driver is None:
            raise NotConnected("delete() on a cache that is not connected")
        if not plain_address(resource_type, key):
            check_address_once(resource_type, key)
        try:
            driver.delete(resource_type, key)
        except PevensieCacheError:
            raise
        except Exception as exc:
            raise driver_failure(exc) from exc

    # -- batch operations --------------------------------------------------------------

    def get_many(self, resource_type: str, keys: Iterable[str]) -> dict[str, str]:
        """Return the values found for ``keys``; misses are absent from the result."""
        driver = self._connected("get_many")
        check_resource_type(resource_type)
        checked = check_keys(keys)
        if not checked:
            return {}
        try:
            if self._batch is not None:
                return self._batch.get_many(resource_type, checked)
            return _get_each(driver, resource_type, checked)
        except PevensieCacheError:
            raise
        except Exception as exc:
            raise driver_failure(exc) from exc

    def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None = None
    ) -> None:
        """Store every ``key -> value`` of ``items``, each as :meth:`set` would.

        One invalid key or value rejects the whole batch and nothing is written.
        """
        driver = self._connected("set_many")
        check_resource_type(resource_type)
        checked = check_items(items)
        check_ttl(ttl_seconds)
        if not checked:
            return
        try:
            if self._batch is not None:
                self._batch.set_many(resource_type, checked, ttl_seconds)
            else:
                for key, value in checked.items():
                    driver.set(resource_type, key, value, ttl_seconds)
        except PevensieCacheError:
            raise
        except Exception as exc:
            raise driver_failure(exc) from exc

    def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """Remove every key of ``keys``; absent keys are fine."""
        driver = self._connected("delete_many")
        check_resource_type(resource_type)
        checked = check_keys(keys)
        if not checked:
            return
        try:
            if self._batch is not None:
                self._batch.delete_many(resource_type, checked)
            else:
                for key in checked:
                    driver.delete(resource_type, key)
        except PevensieCacheError:
            raise
        except Exception as exc:
            raise driver_failure(exc) from exc

    def _connected(self, operation: str) -> CacheDriver:
        driver = self._live
        if driver is None:
            raise NotConnected(f"{operation}() on a cache that is not connected")
        return driver


def _get_each(driver: CacheDriver, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
    """``get_many`` for a driver without it: one ``get`` per key."""
    found: dict[str, str] = {}
    for key in keys:
        value = driver.get(resource_type, key)
        if value is not None:
            found[key] = value
    return found
