"""What may sit between the async facade and its driver: a namespace, and fail-open.

This module is the source of the sync face's too: ``layers.py`` is generated
from it by ``.ci/unasync.py``. Edit this file, then run ``nox -s generate``.

A cache built with ``namespace="app1"`` hands its driver the resource type
``app1:<resource_type>``, so every driver stores ``app1:<resource_type>:<key>``
with nothing new to implement, ``clear`` stays inside the namespace, and on a
Redis Cluster with ``cluster_hash_tag`` a resource type's keys still share one
slot (``{app1:user}:42``). A cache built with ``fail_open=True`` turns the
driver's :class:`~pevensie_cache.DriverUnavailable` failures (and Python's
``ConnectionError`` and ``TimeoutError`` from a third-party driver) into misses
and no-ops, reported to a callback.

A cache without either option calls its driver directly: these layers cost
nothing unless asked for. A layer keeps the optional operations of the driver
under it, and lacks (holds ``None`` for) those the driver lacks, so the facade
falls back or raises ``UnsupportedOperation`` exactly as for the bare driver.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar, Token
from typing import Any

from pevensie_cache import forks
from pevensie_cache.driver import ABSENT, AsyncCacheDriver, Progress
from pevensie_cache.errors import DriverUnavailable
from pevensie_cache.primitives_async import Lock

__all__ = [
    "OPTIONAL_OPERATIONS",
    "RECONNECT_EVERY",
    "UNAVAILABLE",
    "FailOpen",
    "Namespaced",
    "end_call",
    "in_a_call",
    "outside_any_call",
    "start_call",
    "step_in",
    "step_out",
]

OPTIONAL_OPERATIONS = (
    "get_many",
    "set_many",
    "delete_many",
    "add",
    "incr",
    "touch",
    "clear",
    "exists",
    "ttl_ms",
    "acquire_lock",
    "release_lock",
    "extend_lock",
    "get_across",
    "watch_lock",
)
"""The driver methods the facade looks for; a layer lacks those its driver lacks."""

UNAVAILABLE: tuple[type[Exception], ...] = (DriverUnavailable, ConnectionError, TimeoutError)
"""The failures ``fail_open`` serves as misses and no-ops."""

Report = Callable[[str, str, BaseException], None]
"""Told ``(operation, resource_type, exception)`` of each failure served open."""

_CALL: ContextVar[list[BaseException] | None] = ContextVar("pevensie_fail_open_call", default=None)
"""The failures served open so far in the current call of several round trips, if one runs."""


def start_call() -> None:
    """Start a call of several round trips (``get_or_set``...), outside any (:func:`in_a_call`).

    Once one of its round trips is served open, a ``fail_open`` cache serves the
    rest open at once: a stalled server costs the call one timeout, not one per
    round trip. The caller decides to start one before it does, and ends it
    (:func:`end_call`) in a ``finally``: an exception from outside landing in
    between cannot leave its thread inside a call for good.
    """
    _CALL.set([])


def in_a_call() -> bool:
    """Whether a call of several round trips (:func:`start_call`) is under way here."""
    return _CALL.get() is not None


def end_call() -> None:
    """End the call :func:`start_call` started."""
    _CALL.set(None)


def step_out() -> Token[list[BaseException] | None] | None:
    """Leave the current call for the caller's own code (a loader), whose calls are its own.

    ``None`` outside any call; give the token to :func:`step_in` to step back in.
    """
    if _CALL.get() is None:
        return None
    return _CALL.set(None)


def step_in(token: Token[list[BaseException] | None] | None) -> None:
    """Step back into the call :func:`step_out` left (nothing for its ``None``)."""
    if token is not None:
        _CALL.reset(token)


def outside_any_call() -> None:
    """Leave the caller's call, in a copy of its context (a background refresh's)."""
    _CALL.set(None)


UNHELD_TOKENS = 1024
"""Tokens of leases served open that a ``fail_open`` layer remembers, at most."""

RECONNECT_EVERY = 1.0
"""Seconds between two tries to connect a ``fail_open`` cache whose store was down at
``connect()``, at least; meanwhile every operation is served open at once."""


def _lack_what_the_driver_lacks(layer: Any, driver: object) -> None:
    for name in OPTIONAL_OPERATIONS:
        if getattr(driver, name, None) is None:
            setattr(layer, name, None)
    # Envelopes pass through a layer untouched: it stores them if its driver does.
    layer.stores_envelopes = bool(getattr(driver, "stores_envelopes", False))


class Namespaced:
    """The driver under a namespace: each resource type goes down as ``<namespace>:<type>``."""

    def __init__(self, driver: AsyncCacheDriver, namespace: str) -> None:
        """Prefix every resource type handed to ``driver`` with ``namespace`` and ``:``."""
        self.driver: Any = driver
        self.prefix = namespace + ":"
        _lack_what_the_driver_lacks(self, driver)

    def __repr__(self) -> str:
        return f"<Namespaced {self.prefix[:-1]!r} {self.driver!r}>"

    async def get(self, resource_type: str, key: str) -> str | None:
        """``get`` in the namespace."""
        value: str | None = await self.driver.get(self.prefix + resource_type, key)
        return value

    async def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """``set`` in the namespace."""
        await self.driver.set(self.prefix + resource_type, key, value, ttl_seconds)

    async def delete(self, resource_type: str, key: str) -> bool:
        """``delete`` in the namespace."""
        existed: bool = await self.driver.delete(self.prefix + resource_type, key)
        return existed

    async def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """``get_many`` in the namespace."""
        found: dict[str, str] = await self.driver.get_many(self.prefix + resource_type, keys)
        return found

    async def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        """``set_many`` in the namespace."""
        await self.driver.set_many(self.prefix + resource_type, items, ttl_seconds)

    async def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """``delete_many`` in the namespace."""
        await self.driver.delete_many(self.prefix + resource_type, keys)

    async def add(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> bool:
        """``add`` in the namespace."""
        added: bool = await self.driver.add(self.prefix + resource_type, key, value, ttl_seconds)
        return added

    async def incr(self, resource_type: str, key: str, delta: int, ttl_seconds: int | None) -> int:
        """``incr`` in the namespace."""
        result: int = await self.driver.incr(self.prefix + resource_type, key, delta, ttl_seconds)
        return result

    async def touch(self, resource_type: str, key: str, ttl_seconds: int | None) -> bool:
        """``touch`` in the namespace."""
        touched: bool = await self.driver.touch(self.prefix + resource_type, key, ttl_seconds)
        return touched

    async def clear(self, resource_type: str, on_progress: Progress | None) -> int:
        """``clear`` of the resource type in the namespace, and nothing outside it."""
        cleared: int = await self.driver.clear(self.prefix + resource_type, on_progress)
        return cleared

    async def exists(self, resource_type: str, key: str) -> bool:
        """``exists`` in the namespace."""
        found: bool = await self.driver.exists(self.prefix + resource_type, key)
        return found

    async def ttl_ms(self, resource_type: str, key: str) -> int:
        """``ttl_ms`` in the namespace."""
        left: int = await self.driver.ttl_ms(self.prefix + resource_type, key)
        return left

    async def acquire_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """``acquire_lock`` in the namespace."""
        taken: bool = await self.driver.acquire_lock(
            self.prefix + resource_type, key, token, lease_ms
        )
        return taken

    async def release_lock(self, resource_type: str, key: str, token: str) -> None:
        """``release_lock`` in the namespace."""
        await self.driver.release_lock(self.prefix + resource_type, key, token)

    async def extend_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """``extend_lock`` in the namespace."""
        extended: bool = await self.driver.extend_lock(
            self.prefix + resource_type, key, token, lease_ms
        )
        return extended

    async def get_across(self, addresses: Sequence[tuple[str, str]]) -> list[str | None]:
        """``get_across`` in the namespace."""
        prefix = self.prefix
        found: list[str | None] = await self.driver.get_across(
            [(prefix + resource_type, key) for resource_type, key in addresses]
        )
        return found

    async def watch_lock(self, resource_type: str, key: str) -> Any:
        """``watch_lock`` in the namespace."""
        return await self.driver.watch_lock(self.prefix + resource_type, key)


class FailOpen:
    """The driver with its unavailability served open: reads miss, writes do nothing.

    What each operation returns when the store cannot be reached: ``get`` a
    miss, ``get_many`` no hits, ``exists`` ``False``, ``ttl_ms`` absent (so
    ``ttl()`` raises ``CacheMiss``); ``set``, ``set_many`` and ``delete_many``
    nothing, ``delete``, ``add`` and ``touch`` ``False``, ``clear`` 0,
    ``incr`` the delta (as for a counter this call created; nothing is
    stored, so a rate limiter lets the call through). Taking a
    ``get_or_set(..., lock=True)`` lease succeeds, so the caller loads its
    value rather than waiting. Each failure is told to ``report``.

    A store that was down when the cache connected leaves the layer
    :meth:`offline`: operations are served open at once, and one of them
    tries ``connect`` again every :data:`RECONNECT_EVERY` seconds.
    """

    def __init__(self, driver: Any, report: Report, connect: Callable[[], Awaitable[None]]) -> None:
        """Serve ``driver``'s unavailability open, telling ``report`` of each failure.

        ``connect`` connects the store under the driver (for a store that was
        down at ``connect()``).
        """
        self.driver: Any = driver
        self._report = report
        self._connect = connect
        self.is_offline = False
        """Whether the store is not connected yet (it was down at ``connect()``)."""
        self._retry_at = 0.0
        self._down: BaseException | None = None
        self._connecting = Lock()
        self._unheld: set[str] = set()
        """Tokens of leases served open without asking the store: none to release."""
        _lack_what_the_driver_lacks(self, driver)
        forks.renew_after_fork(self)

    def _forked(self) -> None:
        """In a forked child: a new reconnect lock.

        Held by a thread reconnecting at the fork, it would keep the child from ever
        reconnecting: every operation served open for good.
        """
        self._connecting = Lock()

    def offline(self, exc: BaseException) -> None:
        """Note that the store could not be connected (``exc``); try again later, on use."""
        self.is_offline = True
        self._down = exc
        self._retry_at = time.monotonic() + RECONNECT_EVERY

    def online(self) -> None:
        """Note that ``connect()`` reached the store: operations use it, none connects it again."""
        self.is_offline = False
        self._down = None

    def _fail(self, operation: str, resource_type: str, exc: BaseException) -> None:
        """Report ``exc``, served open, and note it in the current call (:func:`start_call`)."""
        self._report(operation, resource_type, exc)
        failed = _CALL.get()
        if failed is not None:
            failed.append(exc)

    async def _online(self, operation: str, resource_type: str) -> bool:
        """Connect the store if due; return whether it is connected (else report, serve open).

        ``False`` at once when a round trip of the current call was served
        open already (:func:`start_call`): its failure was reported then.
        """
        if _CALL.get():
            return False
        return await self._online_at_all(operation, resource_type)

    async def _online_at_all(self, operation: str, resource_type: str) -> bool:
        """:meth:`_online`, whatever the current call met before."""
        if time.monotonic() >= self._retry_at and not self._connecting.locked():
            async with self._connecting:
                if not self.is_offline:
                    return True
                try:
                    await self._connect()
                except UNAVAILABLE as exc:
                    self.offline(exc)
                else:
                    self.is_offline = False
                    return True
        if self._down is not None:
            self._report(operation, resource_type, self._down)
        return False

    def __repr__(self) -> str:
        return f"<FailOpen {self.driver!r}>"

    async def get(self, resource_type: str, key: str) -> str | None:
        """``get``, a miss when the store is unavailable."""
        if (self.is_offline or _CALL.get()) and not await self._online("get", resource_type):
            return None
        try:
            value: str | None = await self.driver.get(resource_type, key)
        except UNAVAILABLE as exc:
            self._fail("get", resource_type, exc)
            return None
        return value

    async def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """``set``, nothing when the store is unavailable."""
        if (self.is_offline or _CALL.get()) and not await self._online("set", resource_type):
            return
        try:
            await self.driver.set(resource_type, key, value, ttl_seconds)
        except UNAVAILABLE as exc:
            self._fail("set", resource_type, exc)

    async def delete(self, resource_type: str, key: str) -> bool:
        """``delete``, ``False`` when the store is unavailable."""
        if (self.is_offline or _CALL.get()) and not await self._online("delete", resource_type):
            return False
        try:
            existed: bool = await self.driver.delete(resource_type, key)
        except UNAVAILABLE as exc:
            self._fail("delete", resource_type, exc)
            return False
        return existed

    async def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """``get_many``, no hits when the store is unavailable."""
        if (self.is_offline or _CALL.get()) and not await self._online("get_many", resource_type):
            return {}
        try:
            found: dict[str, str] = await self.driver.get_many(resource_type, keys)
        except UNAVAILABLE as exc:
            self._fail("get_many", resource_type, exc)
            return {}
        return found

    async def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        """``set_many``, nothing when the store is unavailable."""
        if (self.is_offline or _CALL.get()) and not await self._online("set_many", resource_type):
            return
        try:
            await self.driver.set_many(resource_type, items, ttl_seconds)
        except UNAVAILABLE as exc:
            self._fail("set_many", resource_type, exc)

    async def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """``delete_many``, nothing when the store is unavailable."""
        if (self.is_offline or _CALL.get()) and not await self._online(
            "delete_many", resource_type
        ):
            return
        try:
            await self.driver.delete_many(resource_type, keys)
        except UNAVAILABLE as exc:
            self._fail("delete_many", resource_type, exc)

    async def add(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> bool:
        """``add``, ``False`` (nothing stored) when the store is unavailable."""
        if (self.is_offline or _CALL.get()) and not await self._online("add", resource_type):
            return False
        try:
            added: bool = await self.driver.add(resource_type, key, value, ttl_seconds)
        except UNAVAILABLE as exc:
            self._fail("add", resource_type, exc)
            return False
        return added

    async def incr(self, resource_type: str, key: str, delta: int, ttl_seconds: int | None) -> int:
        """``incr``, ``delta`` (as for a new counter, nothing stored) when unavailable."""
        if (self.is_offline or _CALL.get()) and not await self._online("incr", resource_type):
            return delta
        try:
            result: int = await self.driver.incr(resource_type, key, delta, ttl_seconds)
        except UNAVAILABLE as exc:
            self._fail("incr", resource_type, exc)
            return delta
        return result

    async def touch(self, resource_type: str, key: str, ttl_seconds: int | None) -> bool:
        """``touch``, ``False`` when the store is unavailable."""
        if (self.is_offline or _CALL.get()) and not await self._online("touch", resource_type):
            return False
        try:
            touched: bool = await self.driver.touch(resource_type, key, ttl_seconds)
        except UNAVAILABLE as exc:
            self._fail("touch", resource_type, exc)
            return False
        return touched

    async def clear(self, resource_type: str, on_progress: Progress | None) -> int:
        """``clear``, 0 when the store is unavailable."""
        if (self.is_offline or _CALL.get()) and not await self._online("clear", resource_type):
            return 0
        try:
            cleared: int = await self.driver.clear(resource_type, on_progress)
        except UNAVAILABLE as exc:
            self._fail("clear", resource_type, exc)
            return 0
        return cleared

    async def exists(self, resource_type: str, key: str) -> bool:
        """``exists``, ``False`` when the store is unavailable."""
        if (self.is_offline or _CALL.get()) and not await self._online("exists", resource_type):
            return False
        try:
            found: bool = await self.driver.exists(resource_type, key)
        except UNAVAILABLE as exc:
            self._fail("exists", resource_type, exc)
            return False
        return found

    async def ttl_ms(self, resource_type: str, key: str) -> int:
        """``ttl_ms``, absent when the store is unavailable."""
        if (self.is_offline or _CALL.get()) and not await self._online("ttl", resource_type):
            return ABSENT
        try:
            left: int = await self.driver.ttl_ms(resource_type, key)
        except UNAVAILABLE as exc:
            self._fail("ttl", resource_type, exc)
            return ABSENT
        return left

    async def acquire_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """``acquire_lock``, taken (nothing held) when the store is unavailable."""
        if (self.is_offline or _CALL.get()) and not await self._online(
            "acquire_lock", resource_type
        ):
            # Never sent: nothing to release (see release_lock). Bounded: a holder that
            # never releases is forgotten with the others past the bound.
            unheld = self._unheld
            if len(unheld) >= UNHELD_TOKENS:
                unheld.clear()
            unheld.add(token)
            return True
        try:
            taken: bool = await self.driver.acquire_lock(resource_type, key, token, lease_ms)
        except UNAVAILABLE as exc:
            self._fail("acquire_lock", resource_type, exc)
            return True
        return taken

    async def release_lock(self, resource_type: str, key: str, token: str) -> None:
        """``release_lock``, nothing when the store is unavailable (the lease expires).

        Tried even once a round trip of the current call was served open (a
        lease left taken would make every other caller wait it out), unless
        its ``acquire_lock`` was served open without being sent.
        """
        if token in self._unheld:
            self._unheld.discard(token)
            return
        if self.is_offline and not await self._online_at_all("release_lock", resource_type):
            return
        try:
            await self.driver.release_lock(resource_type, key, token)
        except UNAVAILABLE as exc:
            self._fail("release_lock", resource_type, exc)

    async def get_across(self, addresses: Sequence[tuple[str, str]]) -> list[str | None]:
        """``get_across``, all misses when the store is unavailable."""
        if (self.is_offline or _CALL.get()) and not await self._online("get", addresses[0][0]):
            return [None] * len(addresses)
        try:
            found: list[str | None] = await self.driver.get_across(addresses)
        except UNAVAILABLE as exc:
            self._fail("get", addresses[0][0], exc)
            return [None] * len(addresses)
        return found

    async def watch_lock(self, resource_type: str, key: str) -> Any:
        """``watch_lock``, nothing to watch (the waiter polls) when the store is unavailable.

        Nothing either once a round trip of the current call was served open:
        the store was just found unavailable, and a subscription would wait
        out a timeout of its own.
        """
        if self.is_offline or _CALL.get():
            return None
        try:
            return await self.driver.watch_lock(resource_type, key)
        except UNAVAILABLE:
            return None
