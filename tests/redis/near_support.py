"""Helpers of the near-cache tests: one cache API for both faces, bounded waits, the listener.

A test is written once and runs on both faces: :func:`open_face` returns a
:class:`SyncFace` (the sync cache itself) or an :class:`AsyncFace`, which runs
the async cache on an event loop of its own in a background thread (the
listener task and the pipes live there, as in an application) and turns each
coroutine call into a plain call from the test's thread.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from pevensie_cache import cache
from pevensie_redis.near import NearStats
from pevensie_test_support import loops

FACES = ["sync", "async"]

WAIT = 5.0
"""Seconds a bounded wait for an invalidation (or a reconnection) may take before failing."""

NEAR = "near_cache=true&near_cache_size=1000"


class SyncFace:
    """The sync cache, with :meth:`stats` and :meth:`close`."""

    name = "sync"

    def __init__(self, url: str) -> None:
        self.cache = cache.from_url(url).connect()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cache, name)

    def stats(self) -> NearStats:
        stats = self.cache.driver.near_cache_stats()
        assert stats is not None
        return stats

    def close(self) -> None:
        if self.cache.connected:
            self.cache.disconnect()


class AsyncFace:
    """The async cache on its own event loop thread; every coroutine method is called to the end."""

    name = "async"

    def __init__(self, url: str) -> None:
        self.loop = loops.new_event_loop()  # uvloop in the uvloop pass
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        try:
            self.cache = self.run(cache.from_url_async(url).connect())
        except BaseException:
            self._stop_loop()
            raise

    def run(self, awaitable: Any, timeout: float = 60.0) -> Any:
        """Run ``awaitable`` on the face's loop and return its result (or raise its error)."""

        async def wrapped() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.cache, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        return lambda *args, **kwargs: self.run(attribute(*args, **kwargs))

    def stats(self) -> NearStats:
        stats = self.cache.driver.near_cache_stats()
        assert stats is not None
        return stats

    def close(self) -> None:
        try:
            if self.cache.connected:
                self.run(self.cache.disconnect())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


Face = SyncFace | AsyncFace


def open_face(kind: str, url: str) -> Face:
    """Connect a near cache at ``url`` on the ``kind`` face (``"sync"`` or ``"async"``)."""
    return SyncFace(url) if kind == "sync" else AsyncFace(url)


def near_url(url: str, query: str = NEAR) -> str:
    return f"{url}?{query}"


def wait_until(check: Callable[[], object], what: str, timeout: float = WAIT) -> float:
    """Poll ``check`` until it is true; return the seconds it took; fail after ``timeout``."""
    started = time.monotonic()
    deadline = started + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(0.001)
    return time.monotonic() - started


def wait_for_invalidations(face: Face, before: int, count: int = 1) -> None:
    """Wait until ``count`` more invalidations than ``before`` have arrived."""
    wait_until(
        lambda: face.stats().invalidations >= before + count,
        f"{count} invalidation(s) to arrive (had {before})",
    )


def listener_clients(raw: redis.Redis) -> list[dict[str, Any]]:
    """Return the CLIENT LIST entries of the near caches' listeners (subscribed connections).

    A Sentinel's own subscribed connections (named ``sentinel-...``) are left out.
    """
    return [
        entry
        for entry in raw.client_list()
        if "P" in str(entry.get("flags", "")) and not str(entry.get("name")).startswith("sentinel")
    ]


def settled_hit(face: Face, resource_type: str, key: str) -> str | None:
    """Read ``key`` until a read is a local hit, and return that value.

    The first read after a write may not be kept: the write's invalidation,
    arriving after the read began, spoils it. A hit shows the value is held.
    """
    result: list[str | None] = []

    def hit() -> bool:
        hits = face.stats().hits
        result[:] = [face.get(resource_type, key, None)]
        return face.stats().hits == hits + 1

    wait_until(hit, f"{resource_type}:{key} to be served locally")
    return result[0]


_markers = itertools.count()


def settle(face: Face, raw: redis.Redis) -> None:
    """Wait until every invalidation of a change made before now has arrived.

    The server sends them in order on one connection. A fresh marker key,
    never written, is remembered as a miss; then written: once a read sees the
    write, its invalidation, and every one before it, has arrived.
    """
    marker = f"settle-{os.getpid()}-{next(_markers)}"
    assert settled_hit(face, "near-test", marker) is None
    raw.set(f"near-test:{marker}", "written")
    wait_until(
        lambda: face.get("near-test", marker, None) == "written", "the marker's invalidation"
    )


def hold(face: Face, raw: redis.Redis, resource_type: str, key: str) -> str | None:
    """Make sure ``key`` is held locally, with no invalidation of an earlier write on its way."""
    settle(face, raw)
    return settled_hit(face, resource_type, key)
