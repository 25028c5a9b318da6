"""Helpers of the Cluster and Sentinel tests: both faces of a cache, replication.

:func:`both_faces` connects a sync and an async cache to one URL and hands
them out as :class:`Face` objects whose methods are all awaitable, so one
test body drives both faces on the same topology; :func:`new_face` builds one
face, by name, for tests parametrized over :data:`FACES` (each face on a
topology of its own). :func:`replicated` waits until a primary's replicas hold
every write it took.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from redis.crc import key_slot

from pevensie_cache import cache
from pevensie_redis.testing import RedisServer

FACES = ["sync", "async"]
"""The faces a test parametrized with :func:`new_face` runs on."""


class Face:
    """One face of a connected cache, every method awaitable (the sync face's run directly)."""

    def __init__(self, name: str, opened: Any) -> None:
        self.name = name
        self.cache = opened

    def __getattr__(self, method: str) -> Callable[..., Any]:
        bound = getattr(self.cache, method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = bound(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return call


def new_face(name: str, url: str | None = None, **options: Any) -> Face:
    """Return a cache of face ``name`` (``"sync"`` or ``"async"``), not connected yet.

    Built by ``cache.from_url[_async](url, **options)``, or without a URL by
    ``cache.new[_async](driver="redis", **options)``; ``await face.connect()``
    connects it.
    """
    if name == "sync":
        return Face(
            name, cache.from_url(url, **options) if url else cache.new(driver="redis", **options)
        )
    return Face(
        name,
        cache.from_url_async(url, **options) if url else cache.new_async(driver="redis", **options),
    )


@asynccontextmanager
async def both_faces(url: str) -> AsyncIterator[list[Face]]:
    """Connect a sync and an async cache to ``url``; disconnect both at the end."""
    sync_cache = cache.from_url(url).connect()
    try:
        async_cache = await cache.from_url_async(url).connect()
        try:
            yield [Face("sync", sync_cache), Face("async", async_cache)]
        finally:
            await async_cache.disconnect()
    finally:
        sync_cache.disconnect()


def replicated(primary: RedisServer) -> None:
    """Wait until ``primary``'s replicas hold every write it took so far.

    ``WAIT`` waits for the writes of its own connection: one write of ours
    first, after every other client's in the replication stream.
    """
    # WAIT's own limit (15 s, generous for a loaded CI machine) comes before the socket's.
    with primary.client(socket_timeout=20) as raw:
        raw.set(own_key(raw, primary.port), "barrier")
        assert raw.execute_command("WAIT", 1, 15000) >= 1


def own_key(raw: Any, port: int) -> str:
    """A key ``raw``'s server stores itself (in a cluster, in one of its own slots)."""
    if not int(raw.info("cluster").get("cluster_enabled", 0)):
        return "barrier"
    ranges = [
        (int(start), int(end))
        for start, end, primary, *_ in raw.execute_command("CLUSTER SLOTS")
        if int(primary[1]) == port
    ]
    for number in range(100_000):
        slot = key_slot(f"barrier{number}".encode())
        if any(start <= slot <= end for start, end in ranges):
            return f"barrier{number}"
    raise AssertionError(f"no slot of its own on {port}")
