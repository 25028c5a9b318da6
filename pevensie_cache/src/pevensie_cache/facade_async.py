"""The cache object of the async face: :class:`AsyncPevensieCache`.

This module is the source of the sync face too: ``facade.py`` (``PevensieCache``)
is generated from it by ``.ci/unasync.py``, which drops ``await``/``async``
and swaps the names of the async primitives for the sync ones. Edit this file,
then run ``nox -s generate``.

Values are strings addressed by ``(resource_type, key)``. Every argument is
checked here, once, before any driver is called, so a rejected call changes
nothing whatever the driver.
"""

from __future__ import annotations

import functools
import logging
import math
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, cast, overload

from pevensie_cache import forks
from pevensie_cache.building import CACHE_OPTIONS, check_driver_object
from pevensie_cache.codecs import Codec
from pevensie_cache.driver import NO_EXPIRY, AsyncBatchCacheDriver, AsyncCacheDriver, Progress
from pevensie_cache.envelope import ENVELOPE_MARK
from pevensie_cache.errors import (
    AlreadyConnected,
    ArgumentTypeError,
    ArgumentValueError,
    CacheMiss,
    NotConnected,
    PevensieCacheError,
    UnsupportedOperation,
    driver_failure,
    raised_by_signal_handler,
)
from pevensie_cache.failures import FailureLog
from pevensie_cache.freshness_async import HIT, AsyncFreshness
from pevensie_cache.layers_async import (
    UNAVAILABLE,
    FailOpen,
    Namespaced,
    end_call,
    in_a_call,
    start_call,
    step_in,
    step_out,
)
from pevensie_cache.lease_async import load_under_lease, watch_lock
from pevensie_cache.locks_async import AsyncCacheLock
from pevensie_cache.primitives_async import (
    CONNECT_HINT,
    FACE,
    FaceGuard,
    Lock,
    SingleFlight,
    call,
    warn_if_in_event_loop,
)
from pevensie_cache.resource_async import AsyncCachedFunction, AsyncResource
from pevensie_cache.validation import (
    INT64_MAX,
    INT64_MIN,
    LOCK_LEASE,
    TTL_MAX,
    Ttl,
    check_address_once,
    check_delta,
    check_flag,
    check_items,
    check_keys,
    check_lock_seconds,
    check_lock_times,
    check_resource_type,
    check_ttl,
    check_value,
    not_callable,
    plain_address,
    plain_write,
    shown,
    too_long,
)

__all__ = ["AsyncPevensieCache"]

_T = TypeVar("_T")
_V = TypeVar("_V")
_P = ParamSpec("_P")
_R = TypeVar("_R")
_Self = TypeVar("_Self", bound="AsyncPevensieCache")

logger = logging.getLogger("pevensie_cache")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()

_F = TypeVar("_F", bound=Callable[..., Any])

_CLEAR_NEEDS_A_RESOURCE_TYPE = (
    "clear() needs the resource type to delete, as in clear('users'): it deletes every key "
    "of that one resource type and nothing else (a resource's own clear() needs none). "
    "There is no clear-everything: the database may be shared with other applications, "
    "other caches and other Pevensie clients (the Gleam driver's keys look the same), and "
    "nothing records which resource types exist; to empty a database this cache alone "
    "uses, flush it on the server (FLUSHDB)"
)
"""The message of :meth:`AsyncPevensieCache.clear` called without a resource type."""


def _needs_a_resource_type(method: _F) -> _F:
    """Turn a ``clear()`` without a resource type into an argument error that says why.

    Python's own ``TypeError`` (a missing argument) does not say that no
    clear-everything is offered, nor what to do instead. The signature mypy
    sees is the method's own, so ``clear()`` stays a type error there.
    """

    @functools.wraps(method)
    async def clear(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not args and "resource_type" not in kwargs:
            raise ArgumentTypeError(_CLEAR_NEEDS_A_RESOURCE_TYPE)
        return await method(self, *args, **kwargs)

    return cast("_F", clear)


class AsyncPevensieCache(FaceGuard):
    """A cache over one driver. Build it with ``cache.new`` (``cache.new_async``) or friends.

    A new cache is not connected: call :meth:`connect` (or use it as a context
    manager) before any operation. It is safe to share between threads (tasks
    of one event loop, for the async face) when its driver is; every built-in
    driver is.

    ``namespace`` puts every key of this cache under ``<namespace>:``: the
    driver stores ``<namespace>:<resource_type>:<key>``, and ``clear`` stays
    inside the namespace (the rules of a resource type apply to it).
    ``fail_open=True`` serves the store's unavailability (connection
    failures, timeouts, a full pool: :class:`~pevensie_cache.DriverUnavailable`)
    as misses and no-ops, logged at WARNING at most every few seconds and
    counted by :func:`~pevensie_cache.instrument`; bad input still raises,
    and so do locks.
    """

    __slots__ = (
        "__weakref__",
        "_batch",
        "_driver",
        "_entered",
        "_failures",
        "_flights",
        "_fresh",
        "_live",
        "_lock",
        "_namespace",
        "_ops",
        "_strict",
    )

    def __init__(
        self,
        driver: AsyncCacheDriver,
        *,
        namespace: str | None = None,
        fail_open: bool = False,
    ) -> None:
        """Wrap ``driver``; most code calls ``cache.new`` (``cache.new_async``) instead."""
        check_driver_object(driver, {}, FACE)
        namespace = CACHE_OPTIONS["namespace"].check(namespace)
        fail_open = CACHE_OPTIONS["fail_open"].check(fail_open)
        self._driver = driver
        self._namespace = namespace
        # What the operations call: the driver itself, or the layers the options ask for.
        strict: Any = driver if namespace is None else Namespaced(driver, namespace)
        self._strict: AsyncCacheDriver = strict  # locks: never served open
        self._failures: FailureLog | None = None
        ops: Any = strict
        if fail_open:
            self._failures = FailureLog()
            ops = FailOpen(strict, _reporter(self), driver.connect)
        self._ops: AsyncCacheDriver = ops
        # The same object, typed for its batch operations when the driver has them.
        self._batch: AsyncBatchCacheDriver | None = (
            ops if isinstance(driver, AsyncBatchCacheDriver) else None
        )
        self._live: AsyncCacheDriver | None = None
        self._lock = Lock()
        self._entered: list[bool] = []  # per `with`: whether it connected the cache
        self._flights = SingleFlight()
        self._fresh = AsyncFreshness(ops)  # freshness options, tags, background refreshes
        forks.renew_after_fork(self)

    def _forked(self) -> None:
        """In a forked child: a new lifecycle lock (another thread may have held it, connecting)."""
        self._lock = Lock()

    @property
    def driver(self) -> AsyncCacheDriver:
        """The driver this cache delegates to."""
        return self._driver

    @property
    def namespace(self) -> str | None:
        """The namespace every key of this cache lives in, or ``None``."""
        return self._namespace

    @property
    def fail_open(self) -> bool:
        """Whether the store's unavailability is served as misses and no-ops."""
        return self._failures is not None

    @property
    def connected(self) -> bool:
        """Whether :meth:`connect` succeeded and :meth:`disconnect` has not been called since."""
        return self._live is not None

    def __repr__(self) -> str:
        state = "connected" if self._live is not None else "disconnected"
        return f"<{type(self).__name__} {self._driver!r} {state}>"

    # -- lifecycle -------------------------------------------------------------------

    async def connect(self: _Self) -> _Self:
        """Connect the driver and return this cache, so ``cache.new(...).connect()`` reads well.

        Raises :class:`~pevensie_cache.AlreadyConnected` when already connected,
        and a :class:`~pevensie_cache.DriverError` when the driver cannot connect.
        """
        warn_if_in_event_loop("connect()", self._driver)
        async with self._lock:
            if self._live is not None:
                raise AlreadyConnected("the cache is already connected")
            try:
                await self._connect_driver()
                self._live = self._ops
            except PevensieCacheError:
                raise  # the driver's failure: it closed what it had opened
            except BaseException:
                # Not the driver's (a signal handler's exception, a cancellation): it may
                # have landed once the driver had connected, which nothing would close.
                await self._close_after_interrupt(self._disconnect_driver)
                raise
        return self

    async def disconnect(self) -> None:
        """Disconnect the driver; :class:`~pevensie_cache.NotConnected` when it is not connected."""
        async with self._lock:
            if self._live is None:
                raise NotConnected(f"the cache is not connected: {CONNECT_HINT}")
            self._live = None
            try:
                await self._fresh.close()  # background refreshes end before the driver closes
            finally:
                # Even when the above was interrupted: the cache says it is disconnected.
                await self._disconnect_driver()

    async def __aenter__(self: _Self) -> _Self:
        """Connect unless already connected; the matching exit undoes only what this did."""
        depth = len(self._entered)
        connects = self._live is None
        try:
            if connects:
                await self.connect()
            self._entered.append(connects)
        except PevensieCacheError:
            raise  # connect failed (or another thread connected first): nothing to undo
        except BaseException:
            # Interrupted: the block will not run, nor its exit, so undo what this did.
            del self._entered[depth:]
            if connects and self._live is not None:
                await self._close_after_interrupt(self.disconnect)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Disconnect if the matching enter connected, and the cache is still connected."""
        connected_here = self._entered.pop() if self._entered else False
        if connected_here and self._live is not None:
            await self.disconnect()

    async def _connect_driver(self) -> None:
        """Connect the driver (with ``fail_open``, an unavailable store leaves it offline)."""
        try:
            await self._driver.connect()
        except UNAVAILABLE as exc:
            ops = self._ops
            if not isinstance(ops, FailOpen):
                if isinstance(exc, PevensieCacheError):
                    raise
                raise driver_failure(exc) from exc
            # fail_open: connected all the same, serving misses until the store answers.
            ops.offline(exc)
            self._failed_open("connect", "", exc)
        except PevensieCacheError:
            raise
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
            raise driver_failure(exc) from exc
        else:
            ops = self._ops
            if isinstance(ops, FailOpen):
                ops.online()  # offline from an earlier connect: the store is reached now

    async def _disconnect_driver(self) -> None:
        """Disconnect the driver, unless ``fail_open`` never reached the store."""
        ops = self._ops
        if isinstance(ops, FailOpen) and ops.is_offline:
            return  # fail_open: the store was never reached, nothing to close
        try:
            await self._driver.disconnect()
        except PevensieCacheError:
            raise
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
            raise driver_failure(exc) from exc

    @staticmethod
    async def _close_after_interrupt(close: Callable[[], Awaitable[None]]) -> None:
        """Run ``close()`` as an interrupt propagates: its own failure must not replace it."""
        try:
            await close()
        except Exception:
            logger.debug("closing after an interrupt failed", exc_info=True)

    # -- single operations (the hot path: one check, one driver call) ----------------

    async def set(
        self,
        resource_type: str,
        key: str,
        value: str,
        ttl_seconds: Ttl = None,
        *,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Store ``value`` under ``(resource_type, key)``.

        ``ttl_seconds=None`` stores it without expiry and clears any earlier TTL;
        a whole number of seconds from 1 to 10**15 (an ``int``, ``60.0``, or a
        :class:`~datetime.timedelta`, rounded up) makes it expire after that long.
        With ``tags`` (non-empty strings, ``"user:42"``), :meth:`invalidate_tags`
        of any of them makes this entry a miss.
        """
        driver = self._live
        if driver is None:
            raise _not_connected("set")
        # The common case in one expression; anything unusual takes the full checks,
        # which raise the precise error (or accept, e.g. non-ASCII text).
        if not plain_write(resource_type, key, value, ttl_seconds):
            check_address_once(resource_type, key)
            check_value(value, resource_type)
            ttl_seconds = check_ttl(ttl_seconds)
        if tags is not None:
            began = self._failures is not None and not in_a_call()
            try:
                if began:
                    start_call()
                await self._fresh.set_tagged(
                    self,
                    driver,
                    resource_type,
                    key,
                    value,
                    ttl_seconds,  # type: ignore[arg-type]
                    tags,
                )
            finally:
                if began:
                    end_call()
            return
        try:
            await driver.set(resource_type, key, value, ttl_seconds)  # type: ignore[arg-type]
        except PevensieCacheError:
            raise
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
            raise driver_failure(exc) from exc

    @overload
    async def get(self, resource_type: str, key: str) -> str: ...

    @overload
    async def get(self, resource_type: str, key: str, default: _T) -> str | _T: ...

    async def get(self, resource_type: str, key: str, default: Any = _MISSING) -> Any:
        """Return the value under ``(resource_type, key)``.

        A miss (absent or expired) raises :class:`~pevensie_cache.CacheMiss`, or
        returns ``default`` when one is given.
        """
        driver = self._live
        if driver is None:
            raise _not_connected("get")
        if not plain_address(resource_type, key):
            check_address_once(resource_type, key)
        try:
            value = await driver.get(resource_type, key)
        except PevensieCacheError:
            raise
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
            raise driver_failure(exc) from exc
        if value is not None and not value.isascii() and value[:1] == ENVELOPE_MARK:
            # An entry written with freshness options or tags: its value, or a miss.
            value = await self._fresh.open(self, driver, resource_type, key, value)
        if value is None:
            if default is _MISSING:
                raise CacheMiss(resource_type, key)
            return default
        return value

    async def delete(self, resource_type: str, key: str) -> bool:
        """Remove the value under ``(resource_type, key)``; return whether there was one."""
        driver = self._live
        if driver is None:
            raise _not_connected("delete")
        if not plain_address(resource_type, key):
            check_address_once(resource_type, key)
        try:
            return bool(await driver.delete(resource_type, key))
        except PevensieCacheError:
            raise
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
            raise driver_failure(exc) from exc

    async def exists(self, resource_type: str, key: str) -> bool:
        """Return whether ``(resource_type, key)`` holds a value (expired values do not)."""
        driver = self._connected("exists")
        if not plain_address(resource_type, key):
            check_address_once(resource_type, key)
        method = getattr(driver, "exists", None)
        try:
            if method is None:  # a driver without it: one read says the same
                return await driver.get(resource_type, key) is not None
            return bool(await method(resource_type, key))
        except PevensieCacheError:
            raise
        except Exception as exc:
            raise driver_failure(exc) from exc

    async def ttl(self, resource_type: str, key: str) -> int | None:
        """Return the whole seconds ``(resource_type, key)`` has left, rounded up.

        ``None`` when the value has no expiry; :class:`~pevensie_cache.CacheMiss`
        when there is no value (absent or expired).
        """
        driver = self._connected("ttl")
        if not plain_address(resource_type, key):
            check_address_once(resource_type, key)
        left: int = await self._optional(driver, "ttl_ms", resource_type, key)
        if left == NO_EXPIRY:
            return None
        if left < 0:
            raise CacheMiss(resource_type, key)
        return -(-left // 1000)

    # -- batch operations --------------------------------------------------------------

    async def get_many(self, resource_type: str, keys: Iterable[str]) -> dict[str, str]:
        """Return the values found for ``keys``; misses are absent from the result."""
        driver = self._connected("get_many")
        check_resource_type(resource_type)
        checked = check_keys(keys)
        if not checked:
            return {}
        try:
            if self._batch is not None:
                found = await self._batch.get_many(resource_type, checked)
            else:
                found = await _get_each(driver, resource_type, checked)
        except PevensieCacheError:
            raise
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
            raise driver_failure(exc) from exc
        if found and not all(map(str.isascii, found.values())):
            # Some may be entries written with freshness options or tags: their values, or misses.
            found = await self._fresh.open_many(self, driver, resource_type, found)
        return found

    async def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: Ttl = None
    ) -> None:
        """Store every ``key -> value`` of ``items``, each as :meth:`set` would.

        One invalid key or value rejects the whole batch and nothing is written.
        """
        driver = self._connected("set_many")
        check_resource_type(resource_type)
        checked = check_items(items)
        ttl_seconds = check_ttl(ttl_seconds)
        if not checked:
            return
        try:
            if self._batch is not None:
                await self._batch.set_many(resource_type, checked, ttl_seconds)
            else:
                for key, value in checked.items():
                    await driver.set(resource_type, key, value, ttl_seconds)
        except PevensieCacheError:
            raise
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
            raise driver_failure(exc) from exc

    async def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """Remove every key of ``keys``; absent keys are fine."""
        driver = self._connected("delete_many")
        check_resource_type(resource_type)
        checked = check_keys(keys)
        if not checked:
            return
        try:
            if self._batch is not None:
                await self._batch.delete_many(resource_type, checked)
            else:
                for key in checked:
                    await driver.delete(resource_type, key)
        except PevensieCacheError:
            raise
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
            raise driver_failure(exc) from exc

    # -- atomic operations and clear --------------------------------------------------

    async def add(self, resource_type: str, key: str, value: str, ttl_seconds: Ttl = None) -> bool:
        """Store ``value`` only if ``key`` is absent, atomically; return whether it was stored."""
        driver = self._connected("add")
        if not plain_write(resource_type, key, value, ttl_seconds):
            check_address_once(resource_type, key)
            check_value(value, resource_type)
            ttl_seconds = check_ttl(ttl_seconds)
        added: bool = await self._optional(driver, "add", resource_type, key, value, ttl_seconds)
        return added

    async def incr(
        self, resource_type: str, key: str, delta: int = 1, ttl_seconds: Ttl = None
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
        ttl_seconds = check_ttl(ttl_seconds)
        result: int = await self._optional(driver, "incr", resource_type, key, delta, ttl_seconds)
        return result

    async def decr(
        self, resource_type: str, key: str, delta: int = 1, ttl_seconds: Ttl = None
    ) -> int:
        """Subtract ``delta`` from the counter under ``key`` atomically; return the new value.

        The mirror of :meth:`incr`: an absent key counts as 0 (``decr`` of an
        absent key gives ``-1``), ``ttl_seconds`` applies only when this call
        creates the key, and a value that is not a 64-bit integer, or an
        overflow, raises :class:`~pevensie_cache.CounterError` and changes nothing.
        """
        driver = self._connected("decr")
        if not plain_address(resource_type, key):
            check_address_once(resource_type, key)
        check_delta(delta)
        if not INT64_MIN <= -delta <= INT64_MAX:
            raise ArgumentValueError(f"decr: delta must be at most {INT64_MAX}, got {shown(delta)}")
        ttl_seconds = check_ttl(ttl_seconds)
        result: int = await self._optional(driver, "incr", resource_type, key, -delta, ttl_seconds)
        return result

    async def touch(self, resource_type: str, key: str, ttl_seconds: Ttl = None) -> bool:
        """Set the TTL of ``key`` (``None`` clears it, as ``set`` does); ``False`` if absent."""
        driver = self._connected("touch")
        if not plain_address(resource_type, key):
            check_address_once(resource_type, key)
        ttl_seconds = check_ttl(ttl_seconds)
        touched: bool = await self._optional(driver, "touch", resource_type, key, ttl_seconds)
        return touched

    @_needs_a_resource_type
    async def clear(self, resource_type: str, *, on_progress: Progress | None = None) -> int:
        """Delete every key of ``resource_type`` and nothing else; return how many.

        The Redis driver scans in pages and deletes in batches (it never blocks
        the server; on a Cluster, every primary); ``on_progress(count)`` is
        called with the running count as it goes.

        ``clear()`` without a resource type is an
        :class:`~pevensie_cache.ArgumentTypeError` (also a ``TypeError``), not
        a clear-everything: the database may be shared with other applications
        and other caches, whose keys (the Gleam driver's, say, written as
        ``<resource_type>:<key>`` too) cannot be told apart from this cache's,
        and nothing records which resource types exist. Clear each resource
        type you use, or flush a database this cache alone uses on the server.
        """
        driver = self._connected("clear")
        check_resource_type(resource_type)
        if on_progress is not None and not callable(on_progress):
            raise ArgumentTypeError("on_progress must be callable (it receives the running count)")
        cleared: int = await self._optional(driver, "clear", resource_type, on_progress)
        return cleared

    # -- cache-aside -------------------------------------------------------------------

    async def get_or_set(
        self,
        resource_type: str,
        key: str,
        loader: Callable[[], Any],
        ttl_seconds: Ttl = None,
        *,
        lock: bool = False,
        lock_lease: float = LOCK_LEASE,
        lock_wait: float | None = None,
        stale_seconds: int | None = None,
        early_recompute: bool | float = False,
        stale_on_error: bool = False,
        tags: Iterable[str] | None = None,
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

        Freshness (see :mod:`pevensie_cache.freshness_async`):
        ``stale_seconds=N`` keeps the value N seconds past ``ttl_seconds``; a
        read then returns it at once and one caller refreshes it in the
        background. ``early_recompute=True`` (or a float beta) refreshes a hit
        in the background before expiry, more likely as expiry nears and the
        slower the loader. ``stale_on_error=True`` keeps serving the stale value
        when that refresh fails (logged, and counted by ``instrument()``).
        ``tags``: :meth:`invalidate_tags` of any of them makes the entry a miss.
        """
        driver = self._live
        if driver is None:
            raise _not_connected("get_or_set")
        # fail_open: once one round trip of this call is served open, so are the rest.
        began = self._failures is not None and not in_a_call()
        try:
            if began:
                start_call()
            # Checked once here; the lookup below calls the driver itself, as get() does.
            if not plain_address(resource_type, key):
                check_address_once(resource_type, key)
            if ttl_seconds is not None and not (
                type(ttl_seconds) is int and 0 < ttl_seconds <= TTL_MAX
            ):
                ttl_seconds = check_ttl(ttl_seconds)
            if not callable(loader):
                raise not_callable("loader", loader)
            if lock is not False:
                check_flag("lock", lock)
                lock_lease, wait = check_lock_times(lock_lease, lock_wait)
            else:
                wait = 0.0
            if (
                stale_seconds is not None
                or early_recompute is not False
                or stale_on_error is not False
                or tags is not None
            ):
                if lock is False and (lock_lease is not LOCK_LEASE or lock_wait is not None):
                    # A background refresh takes the lease: a bad one would fail every refresh.
                    lock_lease, _ = check_lock_times(lock_lease, lock_wait)
                fresh = self._fresh
                if fresh.in_process:
                    # An in-process store: a hit is answered at once, without a call to the store.
                    found = fresh.hit(
                        resource_type,
                        key,
                        ttl_seconds,
                        stale_seconds,
                        early_recompute,
                        stale_on_error,
                        tags,
                    )
                    if found is not None:
                        if type(self) is not AsyncPevensieCache:
                            self._fresh_lookup(resource_type, HIT)
                        return found
                return await fresh.get_or_set(
                    self,
                    driver,
                    resource_type,
                    key,
                    loader,
                    ttl_seconds,
                    stale_seconds,
                    early_recompute,
                    stale_on_error,
                    tags,
                    lock,
                    lock_lease,
                    wait,
                    type(self) is not AsyncPevensieCache,
                )
            flights = self._flights
            finished = flights.finished
            if type(self) is AsyncPevensieCache:
                try:
                    found = await driver.get(resource_type, key)
                except PevensieCacheError:
                    raise
                except Exception as exc:
                    if raised_by_signal_handler(exc):
                        raise  # not the driver's: the caller's own, unchanged
                    raise driver_failure(exc) from exc
                if found is not None and not found.isascii() and found[:1] == ENVELOPE_MARK:
                    found = await self._fresh.open(self, driver, resource_type, key, found)
            else:
                # A subclass (the instrumented cache) sees the lookup as its own get().
                found = await self.get(resource_type, key, None)
            if found is not None:
                return found

            async def load() -> str:
                if lock:
                    return await self._load_locked(
                        resource_type, key, loader, ttl_seconds, lock_lease, wait
                    )
                # A flight may have stored the value and ended between this caller's miss
                # and its joining: then look again, or the loader runs twice.
                if flights.finished != finished:
                    stored = await self.get(resource_type, key, None)
                    if stored is not None:
                        return stored
                return await self._load(resource_type, key, loader, ttl_seconds)

            return await self._flights.run((resource_type, key), load, wait if lock else None)
        finally:
            if began:
                end_call()

    @overload
    def resource(self, resource_type: str, codec: Literal["str"] = "str") -> AsyncResource[str]: ...

    @overload
    def resource(self, resource_type: str, codec: Literal["json"]) -> AsyncResource[Any]: ...

    @overload
    def resource(self, resource_type: str, codec: Codec[_V]) -> AsyncResource[_V]: ...

    def resource(self, resource_type: str, codec: str | Codec[Any] = "str") -> AsyncResource[Any]:
        """Return the resource ``resource_type`` of this cache, with values through ``codec``.

        ``codec`` is ``"str"`` (values are ``str``, the default), ``"json"`` (any
        JSON value) or any object with ``encode(value) -> str`` and
        ``decode(text)``. The resource is typed by its codec: a
        ``Codec[User]`` gives an ``AsyncResource[User]``, whose ``get``
        returns a ``User``.
        """
        check_resource_type(resource_type)
        return AsyncResource(self, resource_type, codec)

    def cached(
        self,
        resource_type: str,
        ttl_seconds: Ttl = None,
        *,
        key: Callable[..., str] | None = None,
        codec: str | Codec[Any] = "json",
        lock: bool = False,
        stale_seconds: int | None = None,
        early_recompute: bool | float = False,
        stale_on_error: bool = False,
        tags: Callable[..., Iterable[str]] | None = None,
    ) -> Callable[[Callable[_P, Awaitable[_R]]], AsyncCachedFunction[_P, _R]]:
        """Memoise a function: results stored under ``resource_type`` for ``ttl_seconds``.

        The key of a call is the function's module and qualified name with a
        digest of its arguments (``self``/``cls`` left out for methods), the same
        in every process; arguments without a stable form are a ``TypeError``
        unless ``key=`` (a callable taking the same arguments and returning the
        key) is given. Results go through ``codec`` (JSON by default).
        Concurrent calls with the same arguments run the function once
        (``lock=True``: across processes too). The wrapper has
        ``.invalidate(*args, **kwargs)``. ``stale_seconds``,
        ``early_recompute`` and ``stale_on_error`` are :meth:`get_or_set`'s;
        ``tags`` is a callable taking the function's arguments and returning
        the call's tags.
        """
        ttl_seconds = check_ttl(ttl_seconds)
        check_resource_type(resource_type)
        resource: AsyncResource[Any] = AsyncResource(self, resource_type, codec)
        return resource.cached(
            ttl_seconds,
            key=key,
            lock=lock,
            stale_seconds=stale_seconds,
            early_recompute=early_recompute,
            stale_on_error=stale_on_error,
            tags=tags,
        )

    async def _load(
        self, resource_type: str, key: str, loader: Callable[[], Any], ttl_seconds: int | None
    ) -> str:
        stepped = step_out()  # the loader's own cache calls are not this call's round trips
        try:
            value = await call(loader)
        finally:
            step_in(stepped)
        if type(value) is not str:
            raise ArgumentTypeError(
                f"get_or_set: the loader returned {type(value).__name__}, not str; to cache "
                f"other values, read through a JSON resource of this cache: "
                f"c.resource({resource_type!r}, codec='json').get_or_set(key, loader)"
            )
        await self.set(resource_type, key, value, ttl_seconds)
        return value

    async def _load_locked(
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

        async def lookup() -> str | None:
            found: str | None = await self.get(resource_type, key, None)
            return found

        async def load() -> str:
            return await self._load(resource_type, key, loader, ttl_seconds)

        return await load_under_lease(self, driver, resource_type, key, lease, wait, lookup, load)

    # -- tags ----------------------------------------------------------------------------

    async def invalidate_tags(self, *tags: str) -> None:
        """Make every entry written with any of ``tags`` a miss, wherever it is stored.

        One counter increment per tag, however many entries carry it (see
        :mod:`pevensie_cache.tags`); the entries themselves stay until they
        expire or are overwritten, and no read serves them.
        """
        driver = self._connected("invalidate_tags")
        began = self._failures is not None and not in_a_call()
        try:
            if began:
                start_call()
            await self._fresh.invalidate_tags(self, driver, tags)
        finally:
            if began:
                end_call()

    # -- what an instrumented cache records (nothing here) ------------------------------------

    def _fresh_lookup(self, resource_type: str, outcome: str) -> None:
        """Note the outcome of a freshness lookup: ``hit``, ``stale`` or ``miss``."""

    def _refreshed(self, resource_type: str, trigger: str, error: BaseException | None) -> None:
        """Note the end of a background refresh (``error``: what its loader raised)."""

    # -- locks -------------------------------------------------------------------------

    def lock(
        self,
        resource_type: str,
        name: str,
        ttl_seconds: float | timedelta = 10.0,
        *,
        wait_seconds: float | timedelta = 10.0,
    ) -> AsyncCacheLock:
        """Return the lock ``name`` of ``resource_type``: ``async with c.lock(...):`` holds it.

        A lease lock on the server (distributed across processes and hosts on
        Redis): entering takes it for ``ttl_seconds``, waiting up to
        ``wait_seconds`` for another holder (``0``: one try), else raises
        :class:`~pevensie_cache.LockTimeout`. Leaving releases it, only if this
        holder still holds it (compare-and-delete: never another's). A holder
        that needs longer calls ``extend(ttl_seconds)``; a crashed holder's
        lease simply expires. It is the lock ``get_or_set(..., lock=True)``
        takes for the key ``name``. Locks are never served open: with
        ``fail_open=True`` an unreachable store still raises.
        """
        check_address_once(resource_type, name)
        lease = check_lock_seconds("ttl_seconds", ttl_seconds, zero=False)
        wait = check_lock_seconds("wait_seconds", wait_seconds, zero=True)
        return AsyncCacheLock(self, resource_type, name, lease, wait)

    async def _lock_call(self, operation: str, resource_type: str, *args: Any) -> Any:
        """Call a lock operation of the driver (never served open), for :class:`AsyncCacheLock`."""
        self._connected(operation)
        return await self._optional(self._strict, operation, resource_type, *args)

    async def _lock_watch(self, resource_type: str, name: str) -> Any:
        """Watch a lock's release where the driver can, for :class:`AsyncCacheLock`."""
        return await watch_lock(self._strict, resource_type, name)

    # -- lease locks -------------------------------------------------------------------

    async def acquire_lock(
        self, resource_type: str, key: str, token: str, lease_seconds: float
    ) -> bool:
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
            raise ArgumentValueError(f"lease_seconds must be positive, got {shown(lease_seconds)}")
        if lease_seconds > TTL_MAX:
            raise ArgumentValueError(too_long("lease_seconds", lease_seconds))
        lease_ms = max(1, math.ceil(lease_seconds * 1000))
        taken: bool = await self._optional(
            driver, "acquire_lock", resource_type, key, token, lease_ms
        )
        return taken

    async def release_lock(self, resource_type: str, key: str, token: str) -> None:
        """Release the lease lock of ``key`` if ``token`` still holds it, never another's."""
        driver = self._connected("release_lock")
        check_address_once(resource_type, key)
        _check_token(token)
        await self._optional(driver, "release_lock", resource_type, key, token)

    # -- helpers -----------------------------------------------------------------------

    def _connected(self, operation: str) -> AsyncCacheDriver:
        driver = self._live
        if driver is None:
            raise _not_connected(operation)
        return driver

    async def _optional(self, driver: AsyncCacheDriver, operation: str, *args: Any) -> Any:
        """Call an optional operation; one the driver lacks is :class:`UnsupportedOperation`."""
        method = getattr(driver, operation, None)
        if method is None:
            raise UnsupportedOperation(
                f"the {type(self._driver).__name__} driver does not implement {operation}()"
            )
        try:
            return await method(*args)
        except PevensieCacheError:
            raise
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the driver's: the caller's own, unchanged
            raise driver_failure(exc) from exc

    def _failed_open(self, operation: str, resource_type: str, exc: BaseException) -> None:
        """Note one failure served open: logged (rate-limited), counted when instrumented."""
        if self._failures is not None:
            self._failures.failed(operation, resource_type, exc)


def _not_connected(operation: str) -> NotConnected:
    return NotConnected(f"{operation}() on a cache that is not connected: {CONNECT_HINT}")


def _reporter(cache: AsyncPevensieCache) -> Callable[[str, str, BaseException], None]:
    """Return the fail-open callback of ``cache``, holding it weakly (no reference cycle)."""
    ref = weakref.ref(cache)

    def report(operation: str, resource_type: str, exc: BaseException) -> None:
        found = ref()
        if found is not None:
            found._failed_open(operation, resource_type, exc)

    return report


def _check_token(token: object) -> None:
    """Check a lock token: a non-empty ``str`` (encodable as UTF-8, as values are)."""
    if not isinstance(token, str):
        raise ArgumentTypeError(f"token must be a str, not {type(token).__name__}")
    check_value(token)
    if not token:
        raise ArgumentValueError("token must not be empty")


async def _get_each(
    driver: AsyncCacheDriver, resource_type: str, keys: Sequence[str]
) -> dict[str, str]:
    """``get_many`` for a driver without it: one ``get`` per key."""
    found: dict[str, str] = {}
    for key in keys:
        value = await driver.get(resource_type, key)
        if value is not None:
            found[key] = value
    return found
