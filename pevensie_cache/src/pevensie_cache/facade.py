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

import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from pevensie_cache.building import check_driver_object
from pevensie_cache.codecs import Codec
from pevensie_cache.driver import BatchCacheDriver, CacheDriver, Progress
from pevensie_cache.errors import (
    AlreadyConnected,
    ArgumentTypeError,
    ArgumentValueError,
    CacheMiss,
    LockTimeout,
    NotConnected,
    PevensieCacheError,
    UnsupportedOperation,
    driver_failure,
    raised_by_signal_handler,
)
from pevensie_cache.primitives import FACE, Lock, SingleFlight, call, sleep
from pevensie_cache.resource import CachedFunction, Resource
from pevensie_cache.validation import (
    check_address_once,
    check_delta,
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
_P = ParamSpec("_P")
_R = TypeVar("_R")
_Self = TypeVar("_Self", bound="PevensieCache")

logger = logging.getLogger("pevensie_cache")

LOCK_POLL_MAX = 0.1
"""Seconds between two looks at the value while another holder has the lock, at most."""


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

    __slots__ = ("_batch", "_driver", "_entered", "_flights", "_live", "_lock")

    def __init__(self, driver: CacheDriver) -> None:
        """Wrap ``driver``; most code calls ``cache.new`` (``cache.new_async``) instead."""
        check_driver_object(driver, {}, FACE)
        self._driver = driver
        # The same object, typed for its batch operations when it has them.
        self._batch = driver if isinstance(driver, BatchCacheDriver) else None
        self._live: CacheDriver | None = None
        self._lock = Lock()
        self._entered: list[bool] = []  # per `with`: whether it connected the cache
        self._flights = SingleFlight()

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
                if raised_by_signal_handler(exc):
                    raise  # not the driver's: the caller's own, unchanged
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
                if raised_by_signal_handler(exc):
                    raise  # not the driver's: the caller's own, unchanged
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
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
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
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
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
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
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
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
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
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
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
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
            raise driver_failure(exc) from exc

    # -- atomic operations and clear --------------------------------------------------

    def add(self, resource_type: str, key: str, value: str, ttl_seconds: int | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent, atomically; return whether it was stored."""
        driver = self._connected("add")
        if not plain_write(resource_type, key, value, ttl_seconds):
            check_address_once(resource_type, key)
            check_value(value)
            check_ttl(ttl_seconds)
        added: bool = self._optional(driver, "add", resource_type, key, value, ttl_seconds)
        return added

    def incr(
        self, resource_type: str, key: str, delta: int = 1, ttl_seconds: int | None = None
    ) -> int:
        """Add ``delta`` to the counter under ``key`` atomically and return the new value.

        An absent key counts as 0, and the result is stored as decimal text
        (``get`` returns ``"3"``); a negative ``delta`` decrements.
        ``ttl_seconds`` applies only when this call creates the key (a
        fixed-window rate limiter in one call); an existing TTL is kept. A
        stored value that is not a 64-bit integer, or an overflow, raises
        :class:`~pevensie_cache.CounterError` and leaves the value unchanged.
        """
        driver = self._connected("incr")
        if not plain_address(resource_type, key):
            check_address_once(resource_type, key)
        check_delta(delta)
        check_ttl(ttl_seconds)
        result: int = self._optional(driver, "incr", resource_type, key, delta, ttl_seconds)
        return result

    def touch(self, resource_type: str, key: str, ttl_seconds: int | None = None) -> bool:
        """Set the TTL of ``key`` (``None`` clears it, as ``set`` does); ``False`` if absent."""
        driver = self._connected("touch")
        if not plain_address(resource_type, key):
            check_address_once(resource_type, key)
        check_ttl(ttl_seconds)
        touched: bool = self._optional(driver, "touch", resource_type, key, ttl_seconds)
        return touched

    def clear(self, resource_type: str, *, on_progress: Progress | None = None) -> int:
        """Delete every key of ``resource_type`` and nothing else; return how many.

        The Redis driver scans in pages and deletes in batches (it never blocks
        the server; on a Cluster, every primary); ``on_progress(count)`` is
        called with the running count as it goes.
        """
        driver = self._connected("clear")
        check_resource_type(resource_type)
        if on_progress is not None and not callable(on_progress):
            raise ArgumentTypeError("on_progress must be callable (it receives the running count)")
        cleared: int = self._optional(driver, "clear", resource_type, on_progress)
        return cleared

    # -- cache-aside -------------------------------------------------------------------

    def get_or_set(
        self,
        resource_type: str,
        key: str,
        loader: Callable[[], Any],
        ttl_seconds: int | None = None,
        *,
        lock: bool = False,
        lock_lease: float = 10.0,
        lock_wait: float | None = None,
    ) -> str:
        """Return the value under ``key``, or call ``loader()`` once, store and return its result.

        Concurrent callers for the same key in this process (threads, or tasks
        of the async face) share one loader call and its result or exception.
        With ``lock=True`` that holds across processes and hosts too: the
        loading caller holds a lease lock on the server for up to ``lock_lease``
        seconds, and the others wait for its value, at most ``lock_wait``
        seconds (default: twice the lease) before
        :class:`~pevensie_cache.LockTimeout`; a crashed holder's lease expires
        and a waiter takes over. When the loader raises, nothing is stored.
        ``loader`` returns a ``str`` (use a resource for other values); on the
        async face it may be an ``async def``.
        """
        driver = self._live
        if driver is None:
            raise NotConnected("get_or_set() on a cache that is not connected")
        # Checked once here; the lookup below calls the driver itself, as get() does.
        if not plain_address(resource_type, key):
            check_address_once(resource_type, key)
        if ttl_seconds is not None and not (type(ttl_seconds) is int and ttl_seconds > 0):
            check_ttl(ttl_seconds)
        if not callable(loader):
            raise ArgumentTypeError(f"loader must be callable, not {type(loader).__name__}")
        wait = _check_lock_times(lock_lease, lock_wait) if lock else 0.0
        flights = self._flights
        finished = flights.finished
        if type(self) is PevensieCache:
            try:
                found = driver.get(resource_type, key)
            except PevensieCacheError:
                raise
            except Exception as exc:
                if raised_by_signal_handler(exc):
                    raise  # not the driver's: the caller's own, unchanged
                raise driver_failure(exc) from exc
        else:
            # A subclass (the instrumented cache) sees the lookup as its own get().
            found = self.get(resource_type, key, None)
        if found is not None:
            return found

        def load() -> str:
            if lock:
                return self._load_locked(resource_type, key, loader, ttl_seconds, lock_lease, wait)
            # A flight may have stored the value and ended between this caller's miss
            # and its joining: then look again, or the loader runs twice.
            if flights.finished != finished:
                stored = self.get(resource_type, key, None)
                if stored is not None:
                    return stored
            return self._load(resource_type, key, loader, ttl_seconds)

        return self._flights.run((resource_type, key), load)

    def resource(self, resource_type: str, codec: str | Codec = "str") -> Resource:
        """Return the resource ``resource_type`` of this cache, with values through ``codec``.

        ``codec`` is ``"str"`` (values are ``str``, the default), ``"json"`` (any
        JSON value) or any object with ``encode(value) -> str`` and
        ``decode(text)``.
        """
        check_resource_type(resource_type)
        return Resource(self, resource_type, codec)

    def cached(
        self,
        resource_type: str,
        ttl_seconds: int | None = None,
        *,
        key: Callable[..., str] | None = None,
        codec: str | Codec = "json",
        lock: bool = False,
    ) -> Callable[[Callable[_P, _R]], CachedFunction[_P, _R]]:
        """Memoise a function: results stored under ``resource_type`` for ``ttl_seconds``.

        The key of a call is the function's module and qualified name with a
        digest of its arguments (``self``/``cls`` left out for methods), the same
        in every process; arguments without a stable form are a ``TypeError``
        unless ``key=`` (a callable taking the same arguments and returning the
        key) is given. Results go through ``codec`` (JSON by default).
        Concurrent calls with the same arguments run the function once
        (``lock=True``: across processes too). The wrapper has
        ``.invalidate(*args, **kwargs)``.
        """
        check_ttl(ttl_seconds)
        return self.resource(resource_type, codec).cached(ttl_seconds, key=key, lock=lock)

    def _load(
        self, resource_type: str, key: str, loader: Callable[[], Any], ttl_seconds: int | None
    ) -> str:
        value = call(loader)
        if type(value) is not str:
            raise ArgumentTypeError(
                f"get_or_set: the loader returned {type(value).__name__}, not str "
                "(use cache.resource(..., codec='json') to store other values)"
            )
        self.set(resource_type, key, value, ttl_seconds)
        return value

    def _load_locked(
        self,
        resource_type: str,
        key: str,
        loader: Callable[[], Any],
        ttl_seconds: int | None,
        lease: float,
        wait: float,
    ) -> str:
        """Load under the key's lease lock, or return the value another holder stored."""
        driver = self._connected("get_or_set")
        token = secrets.token_hex(16)
        lease_ms = max(1, math.ceil(lease * 1000))
        deadline = time.monotonic() + wait
        pause = 0.005
        while not self._optional(driver, "acquire_lock", resource_type, key, token, lease_ms):
            found = self.get(resource_type, key, None)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise LockTimeout(
                    f"get_or_set waited {wait:g} s for the value of resource type "
                    f"{resource_type!r}, key {key!r}, loaded under another holder's lock"
                )
            sleep(min(pause, left))
            pause = min(pause * 2, LOCK_POLL_MAX)
        try:
            # The previous holder may have stored the value just before releasing.
            found = self.get(resource_type, key, None)
            if found is not None:
                return found
            return self._load(resource_type, key, loader, ttl_seconds)
        finally:
            try:
                self._optional(driver, "release_lock", resource_type, key, token)
            except PevensieCacheError as exc:
                # The lease expires by itself; the caller's outcome matters more.
                logger.warning("get_or_set: releasing the lock failed (%s); it will expire", exc)

    # -- lease locks -------------------------------------------------------------------

    def acquire_lock(self, resource_type: str, key: str, token: str, lease_seconds: float) -> bool:
        """Take the lease lock of ``key`` for ``lease_seconds`` unless a live holder has it.

        The lock is the one ``get_or_set(..., lock=True)`` holds: a server-side
        lease (Redis: ``SET NX PX`` on ``:lock:<resource_type>:<key>``, a key no
        API call can write), so it excludes other processes and hosts too.
        ``token`` names the holder: only :meth:`release_lock` with the same
        token releases it, and a crashed holder's lease simply expires. Returns
        whether this call took the lock; it never waits.
        """
        driver = self._connected("acquire_lock")
        check_address_once(resource_type, key)
        _check_token(token)
        if not isinstance(lease_seconds, (int, float)) or isinstance(lease_seconds, bool):
            raise ArgumentTypeError(
                f"lease_seconds must be a number, not {type(lease_seconds).__name__}"
            )
        if not 0 < lease_seconds < math.inf:
            raise ArgumentValueError(f"lease_seconds must be positive, got {lease_seconds}")
        lease_ms = max(1, math.ceil(lease_seconds * 1000))
        taken: bool = self._optional(driver, "acquire_lock", resource_type, key, token, lease_ms)
        return taken

    def release_lock(self, resource_type: str, key: str, token: str) -> None:
        """Release the lease lock of ``key`` if ``token`` still holds it, never another's."""
        driver = self._connected("release_lock")
        check_address_once(resource_type, key)
        _check_token(token)
        self._optional(driver, "release_lock", resource_type, key, token)

    # -- helpers -----------------------------------------------------------------------

    def _connected(self, operation: str) -> CacheDriver:
        driver = self._live
        if driver is None:
            raise NotConnected(f"{operation}() on a cache that is not connected")
        return driver

    def _optional(self, driver: CacheDriver, operation: str, *args: Any) -> Any:
        """Call an optional operation; one the driver lacks is :class:`UnsupportedOperation`."""
        method = getattr(driver, operation, None)
        if method is None:
            raise UnsupportedOperation(
                f"the {type(driver).__name__} driver does not implement {operation}()"
            )
        try:
            return method(*args)
        except PevensieCacheError:
            raise
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
            raise driver_failure(exc) from exc


def _check_token(token: object) -> None:
    """Check a lock token: a non-empty ``str`` (encodable as UTF-8, as values are)."""
    if not isinstance(token, str):
        raise ArgumentTypeError(f"token must be a str, not {type(token).__name__}")
    check_value(token)
    if not token:
        raise ArgumentValueError("token must not be empty")


def _check_lock_times(lease: object, wait: object) -> float:
    """Check ``lock_lease`` and ``lock_wait``; return the wait (default: twice the lease)."""
    for name, value in (("lock_lease", lease), ("lock_wait", wait)):
        if value is None and name == "lock_wait":
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ArgumentTypeError(
                f"{name} must be a number of seconds, not {type(value).__name__}"
            )
        if not 0 < value < math.inf:
            raise ArgumentValueError(f"{name} must be a positive number of seconds, got {value}")
    return float(wait) if isinstance(wait, (int, float)) else 2 * float(lease)  # type: ignore[arg-type]


def _get_each(driver: CacheDriver, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
    """``get_many`` for a driver without it: one ``get`` per key."""
    found: dict[str, str] = {}
    for key in keys:
        value = driver.get(resource_type, key)
        if value is not None:
            found[key] = value
    return found
