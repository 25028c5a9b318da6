"""The instrumented async cache: every operation timed and counted, then the cache's own code.

This module is the source of the sync face too: ``instrumented.py``
(``InstrumentedPevensieCache``) is generated from it by ``.ci/unasync.py``.
Edit this file, then run ``nox -s generate``.

:func:`pevensie_cache.instrument` does not wrap a cache in another object: it
gives the cache a class of its own, made for it, that derives from this one
and holds its :class:`~pevensie_cache.telemetry.Recorder` as a class attribute
(the facade keeps its state in ``__slots__``, so a subclass that adds no slot
has the same layout and the object's class can be swapped in place). Each
method records around a call of the facade's own method (``super()``), so the
facade's checks and behaviour are exactly those of an uninstrumented cache, and
an uninstrumented cache runs the facade's code untouched: no flag and no hook
(``get_or_set`` has one class test, so that an instrumented cache's lookup is
recorded as its ``get``).

Operations and their outcomes: ``get`` hit or miss; ``get_or_set`` hit (the
value was there) or miss (it was loaded, here or by a concurrent caller);
``touch`` hit (the key existed) or miss; ``add`` ok (stored) or hit (the key
was there, nothing stored); every other operation ok; any exception error
(except the ``CacheMiss`` of a ``get``, a miss). A ``get_or_set`` also records
the ``get`` and ``set`` it makes, as they are real calls; one with freshness
options or tags reads and writes through the driver itself, and records its
lookup (``hit``, ``miss``; a stale value served is a ``hit`` and a stale read),
and its background refreshes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any, ClassVar

from pevensie_cache.errors import CacheMiss
from pevensie_cache.facade_async import AsyncPevensieCache
from pevensie_cache.freshness_async import STALE
from pevensie_cache.telemetry import FIRST_LOOKUP, HIT, MISS, OK, SERVED_OPEN, Recorder

__all__ = ["InstrumentedAsyncPevensieCache"]


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


class InstrumentedAsyncPevensieCache(AsyncPevensieCache):
    """An :class:`~pevensie_cache.AsyncPevensieCache` whose operations are recorded.

    Never built directly: :func:`pevensie_cache.instrument` makes a subclass
    of it per cache (carrying that cache's recorder) and swaps it in.
    """

    __slots__ = ()

    _recorder: ClassVar[Recorder]

    async def set(self, resource_type: Any, *args: Any, **kwargs: Any) -> None:
        """Store a value (see :meth:`AsyncPevensieCache.set`); recorded as ``ok``."""
        op = self._recorder.start("set", resource_type)
        try:
            await super().set(resource_type, *args, **kwargs)
        except BaseException as exc:
            op.fail(exc)
            raise
        op.finish(OK)

    async def get(self, resource_type: Any, key: Any, default: Any = _ABSENT) -> Any:
        """Return a value (see :meth:`AsyncPevensieCache.get`); recorded as ``hit`` or ``miss``."""
        recorder = self._recorder
        op = recorder.start("get", resource_type)
        try:
            value = await super().get(resource_type, key, _ABSENT)
        except BaseException as exc:
            op.fail(exc)
            raise
        hit = value is not _ABSENT
        op.finish(HIT if hit else MISS)
        recorder.looked_up("get", op.label, 1 if hit else 0, 0 if hit else 1)
        first = FIRST_LOOKUP.get()
        if first is not None and not first:
            first.append(hit)
        if hit:
            return value
        if default is _ABSENT:
            raise CacheMiss(resource_type, key)
        return default

    async def delete(self, resource_type: Any, *args: Any, **kwargs: Any) -> bool:
        """Remove a value (see :meth:`AsyncPevensieCache.delete`); recorded as ``ok``."""
        op = self._recorder.start("delete", resource_type)
        try:
            existed = await super().delete(resource_type, *args, **kwargs)
        except BaseException as exc:
            op.fail(exc)
            raise
        op.finish(OK)
        return existed

    async def exists(self, resource_type: Any, *args: Any, **kwargs: Any) -> bool:
        """Say whether a key exists (see :meth:`AsyncPevensieCache.exists`); ``hit`` or ``miss``."""
        op = self._recorder.start("exists", resource_type)
        try:
            found = await super().exists(resource_type, *args, **kwargs)
        except BaseException as exc:
            op.fail(exc)
            raise
        op.finish(HIT if found else MISS)
        return found

    async def ttl(self, resource_type: Any, key: Any) -> int | None:
        """Seconds left (see :meth:`AsyncPevensieCache.ttl`); ``hit``, or ``miss`` when absent."""
        op = self._recorder.start("ttl", resource_type)
        try:
            left = await super().ttl(resource_type, key)
        except CacheMiss:
            op.finish(MISS)
            raise
        except BaseException as exc:
            op.fail(exc)
            raise
        op.finish(HIT)
        return left

    async def get_many(self, resource_type: Any, keys: Any) -> dict[str, str]:
        """Read many keys (see :meth:`AsyncPevensieCache.get_many`); ``ok``, each key a lookup."""
        recorder = self._recorder
        if isinstance(keys, Iterable) and not isinstance(keys, Collection):
            keys = list(keys)  # a one-shot iterable: count it, then hand the facade the list
        op = recorder.start("get_many", resource_type)
        try:
            found = await super().get_many(resource_type, keys)
        except BaseException as exc:
            op.fail(exc)
            raise
        op.finish(OK)
        asked = len(set(keys))
        recorder.looked_up("get_many", op.label, len(found), asked - len(found))
        return found

    async def set_many(self, resource_type: Any, *args: Any, **kwargs: Any) -> None:
        """Store every item (see :meth:`AsyncPevensieCache.set_many`); recorded as ``ok``."""
        op = self._recorder.start("set_many", resource_type)
        try:
            await super().set_many(resource_type, *args, **kwargs)
        except BaseException as exc:
            op.fail(exc)
            raise
        op.finish(OK)

    async def delete_many(self, resource_type: Any, *args: Any, **kwargs: Any) -> None:
        """Remove every key (see :meth:`AsyncPevensieCache.delete_many`); recorded as ``ok``."""
        op = self._recorder.start("delete_many", resource_type)
        try:
            await super().delete_many(resource_type, *args, **kwargs)
        except BaseException as exc:
            op.fail(exc)
            raise
        op.finish(OK)

    async def add(self, resource_type: Any, *args: Any, **kwargs: Any) -> bool:
        """Store if absent (see :meth:`AsyncPevensieCache.add`).

        ``ok`` if stored, ``hit`` if the key was there, ``miss`` if a
        ``fail_open`` store was unreachable (nothing stored, nothing found).
        """
        op = self._recorder.start("add", resource_type)
        token = SERVED_OPEN.set(False)  # this call's own: set by a failure served open in it
        try:
            added = await super().add(resource_type, *args, **kwargs)
            served = SERVED_OPEN.get()
        except BaseException as exc:
            op.fail(exc)
            raise
        finally:
            SERVED_OPEN.reset(token)
        op.finish(OK if added else (MISS if served else HIT))
        return added

    async def incr(self, resource_type: Any, *args: Any, **kwargs: Any) -> int:
        """Add to a counter (see :meth:`AsyncPevensieCache.incr`); recorded as ``ok``."""
        op = self._recorder.start("incr", resource_type)
        try:
            result = await super().incr(resource_type, *args, **kwargs)
        except BaseException as exc:
            op.fail(exc)
            raise
        op.finish(OK)
        return result

    async def decr(self, resource_type: Any, *args: Any, **kwargs: Any) -> int:
        """Subtract from a counter (see :meth:`AsyncPevensieCache.decr`); recorded as ``ok``."""
        op = self._recorder.start("decr", resource_type)
        try:
            result = await super().decr(resource_type, *args, **kwargs)
        except BaseException as exc:
            op.fail(exc)
            raise
        op.finish(OK)
        return result

    async def touch(self, resource_type: Any, *args: Any, **kwargs: Any) -> bool:
        """Touch (see :meth:`AsyncPevensieCache.touch`); ``hit`` if the key exists, or ``miss``."""
        op = self._recorder.start("touch", resource_type)
        try:
            touched = await super().touch(resource_type, *args, **kwargs)
        except BaseException as exc:
            op.fail(exc)
            raise
        op.finish(HIT if touched else MISS)
        return touched

    async def clear(self, resource_type: Any, *args: Any, **kwargs: Any) -> int:
        """Delete a resource type (see :meth:`AsyncPevensieCache.clear`); recorded as ``ok``."""
        op = self._recorder.start("clear", resource_type)
        try:
            cleared = await super().clear(resource_type, *args, **kwargs)
        except BaseException as exc:
            op.fail(exc)
            raise
        op.finish(OK)
        return cleared

    async def get_or_set(
        self, resource_type: Any, key: Any, loader: Any, *args: Any, **kwargs: Any
    ) -> str:
        """Read or load (see :meth:`AsyncPevensieCache.get_or_set`); ``hit``, or ``miss``."""
        op = self._recorder.start("get_or_set", resource_type)
        first: list[bool] = []
        token = FIRST_LOOKUP.set(first)
        try:
            value = await super().get_or_set(resource_type, key, loader, *args, **kwargs)
        except BaseException as exc:
            op.fail(exc)
            raise
        finally:
            FIRST_LOOKUP.reset(token)
        op.finish(HIT if first and first[0] else MISS)
        return value

    def _failed_open(self, operation: str, resource_type: str, exc: BaseException) -> None:
        """Log the failure served open (see the cache), and count it."""
        super()._failed_open(operation, resource_type, exc)
        self._recorder.failed_open(operation, resource_type, exc)

    async def invalidate_tags(self, *tags: Any) -> None:
        """Invalidate tags (see :meth:`AsyncPevensieCache.invalidate_tags`); recorded as ``ok``."""
        op = self._recorder.start("invalidate_tags", None)
        try:
            await super().invalidate_tags(*tags)
        except BaseException as exc:
            op.fail(exc)
            raise
        op.finish(OK)

    def _fresh_lookup(self, resource_type: str, outcome: str) -> None:
        recorder = self._recorder
        label = recorder.resource_types.label(resource_type)
        hit = outcome != MISS
        recorder.looked_up("get_or_set", label, 1 if hit else 0, 0 if hit else 1)
        if outcome == STALE:
            recorder.stale_reads.add(1, recorder.attributes("get_or_set", label, HIT))
        first = FIRST_LOOKUP.get()
        if first is not None and not first:
            first.append(hit)

    def _refreshed(self, resource_type: str, trigger: str, error: BaseException | None) -> None:
        recorder = self._recorder
        recorder.refreshed(recorder.resource_types.label(resource_type), trigger, error)
