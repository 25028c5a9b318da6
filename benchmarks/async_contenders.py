"""The async contenders (issue 10): one class per way of caching from asyncio.

As in :mod:`contenders`, every workload method runs its whole loop, so the
harness times one ``await`` and adds nothing per operation. Every contender
is built and used on the one event loop of the run. The Redis contenders get
10 connections each, the hiredis parser, 5 s timeouts and TCP keepalive,
like our driver's defaults:

- raw ``redis.asyncio``: ``BlockingConnectionPool(max_connections=10)``,
  ``decode_responses=True`` so it returns ``str`` as we do (and, for
  reference only, the same on redis.asyncio's default unbounded
  ``ConnectionPool``);
- pevensie redis: ``cache.from_url_async("redis://...")`` (10 pipes at most);
- aiocache ``RedisCache`` on a ``BlockingConnectionPool`` of 10 with its
  ``StringSerializer`` (the closest to our ``str`` contract, and its cheapest);
  every call is bounded by aiocache's default ``timeout=5``;
- cashews with its redis backend (its default ``BlockingConnectionPool`` of
  10 and its default serializer, which pickles);
- pevensie memory: ``cache.new_async(driver="memory")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio
from contenders import RESOURCE, TTL, VALUE, Unavailable
from redis.asyncio.connection import BlockingConnectionPool, ConnectionPool

from pevensie_cache import AsyncPevensieCache, DriverNotFound, cache

__all__ = [
    "POOL_SIZE",
    "WORKLOADS",
    "AiocacheRedis",
    "AsyncContender",
    "CashewsRedis",
    "OursAsyncMemory",
    "OursAsyncRedis",
    "RawAsyncRedis",
    "RawAsyncRedisUnbounded",
    "describe_pool",
]

POOL_SIZE = 10
TASKS = 64

# (name, unit, label); the method of that name runs the workload ("tasks_get": TASKS
# tasks each running get_hit over their share of the keys).
WORKLOADS: list[tuple[str, str, str]] = [
    ("set", "ops/s", "set with TTL"),
    ("get_hit", "ops/s", "get (hit)"),
    ("delete", "ops/s", "delete"),
    ("tasks_get", "ops/s", f"{TASKS} tasks get"),
]

_CONNECTION: dict[str, Any] = {
    "socket_timeout": 5.0,
    "socket_connect_timeout": 5.0,
    "socket_keepalive": True,
    "health_check_interval": 30,
}
"""Connection settings of every redis.asyncio pool here (our driver's timeout is 5 s too)."""


def _parser() -> type[Any]:
    from redis.asyncio.connection import DefaultParser

    return DefaultParser


def describe_pool() -> str:
    """One line for the report: the redis.asyncio pool every peer gets."""
    options = ", ".join(f"{k}={v}" for k, v in sorted(_CONNECTION.items()))
    return (
        f"redis.asyncio BlockingConnectionPool, parser {_parser().__name__}, "
        f"max_connections {POOL_SIZE}, {options}; ours: at most {POOL_SIZE} pipes, timeout 5 s"
    )


class AsyncContender:
    """Base class: a name, a kind (``redis`` or ``memory``) and the key mapping."""

    name = "?"
    kind = "redis"
    prefix = ""

    def keys(self, names: Sequence[str]) -> list[str]:
        """Turn plain key names into what this contender's users pass."""
        p = self.prefix
        return [p + n for n in names] if p else list(names)

    async def start(self) -> None:
        """Connect, on the running loop (those that connect lazily do nothing)."""

    async def fill(self, keys: Sequence[str]) -> None:
        """Store VALUE under every key (untimed set-up)."""
        for key in keys:
            await self.set([key])

    async def read(self, key: str) -> str | None:
        """Read one key back as ``str`` (correctness check, untimed)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections."""

    async def set(self, keys: Sequence[str]) -> None:
        """Store VALUE with a TTL under every key, one call at a time."""
        raise NotImplementedError

    async def get_hit(self, keys: Sequence[str]) -> None:
        """Read every key, one call at a time."""
        raise NotImplementedError

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete every key, one call at a time."""
        raise NotImplementedError


class RawAsyncRedis(AsyncContender):
    """``redis.asyncio`` used directly: ``get``, ``set(ex=)``, ``delete``."""

    name = "raw redis.asyncio"
    prefix = "raw:"

    def __init__(self, port: int) -> None:
        pool = BlockingConnectionPool(
            host="127.0.0.1",
            port=port,
            max_connections=POOL_SIZE,
            decode_responses=True,
            parser_class=_parser(),
            **_CONNECTION,
        )
        self.client = redis.asyncio.Redis(connection_pool=pool)

    async def read(self, key: str) -> str | None:
        value = await self.client.get(key)
        return None if value is None else str(value)

    async def close(self) -> None:
        await self.client.aclose()
        await self.client.connection_pool.disconnect()

    async def set(self, keys: Sequence[str]) -> None:
        op = self.client.set
        for k in keys:
            await op(k, VALUE, ex=TTL)

    async def get_hit(self, keys: Sequence[str]) -> None:
        op = self.client.get
        for k in keys:
            await op(k)

    async def delete(self, keys: Sequence[str]) -> None:
        op = self.client.delete
        for k in keys:
            await op(k)


class RawAsyncRedisUnbounded(RawAsyncRedis):
    """``redis.asyncio`` on its default ``ConnectionPool`` (no limit), for reference only.

    Its checkout is cheaper than the blocking pool's, and 64 tasks get 64
    connections; the targets compare against the pool of 10 above.
    """

    name = "raw redis.asyncio, unbounded pool"
    prefix = "rawu:"

    def __init__(self, port: int) -> None:
        pool = ConnectionPool(
            host="127.0.0.1",
            port=port,
            decode_responses=True,
            parser_class=_parser(),
            **_CONNECTION,
        )
        self.client = redis.asyncio.Redis(connection_pool=pool)


class _AsyncFacade(AsyncContender):
    """Our async facade over some driver."""

    cache: AsyncPevensieCache

    async def read(self, key: str) -> str | None:
        return await self.cache.get(RESOURCE, key, None)

    async def close(self) -> None:
        if self.cache.connected:
            await self.cache.disconnect()

    async def set(self, keys: Sequence[str]) -> None:
        op = self.cache.set
        for k in keys:
            await op(RESOURCE, k, VALUE, TTL)

    async def get_hit(self, keys: Sequence[str]) -> None:
        op = self.cache.get
        for k in keys:
            await op(RESOURCE, k)

    async def delete(self, keys: Sequence[str]) -> None:
        op = self.cache.delete
        for k in keys:
            await op(RESOURCE, k)


class OursAsyncRedis(_AsyncFacade):
    """Our Redis driver's async face: ``cache.from_url_async("redis://...")``."""

    name = "pevensie redis"

    def __init__(self, url: str) -> None:
        try:
            self.cache = cache.from_url_async(url)
        except DriverNotFound as exc:
            raise Unavailable("driver not installed") from exc

    async def start(self) -> None:
        await self.cache.connect()


class OursAsyncMemory(_AsyncFacade):
    """Our memory driver's async face: ``cache.new_async(driver="memory")``."""

    name = "pevensie memory"
    kind = "memory"

    def __init__(self) -> None:
        self.cache = cache.new_async(driver="memory")

    async def start(self) -> None:
        await self.cache.connect()


class AiocacheRedis(AsyncContender):
    """aiocache's ``RedisCache`` with its ``StringSerializer``, keys in namespace ``ac``."""

    name = "aiocache RedisCache"

    def __init__(self, port: int) -> None:
        try:
            from aiocache import RedisCache  # type: ignore[import-untyped]
            from aiocache.serializers import StringSerializer  # type: ignore[import-untyped]
        except ImportError as exc:
            raise Unavailable("aiocache not installed") from exc
        connection = {k: v for k, v in _CONNECTION.items() if k != "socket_connect_timeout"}
        self.cache: Any = RedisCache(
            endpoint="127.0.0.1",
            port=port,
            namespace="ac",
            serializer=StringSerializer(),
            pool_max_size=POOL_SIZE,
            create_connection_timeout=_CONNECTION["socket_connect_timeout"],
            connection_pool_class=BlockingConnectionPool,
            connection_pool_kwargs={"parser_class": _parser(), **connection},
        )

    async def read(self, key: str) -> str | None:
        value: str | None = await self.cache.get(key)
        return value

    async def close(self) -> None:
        await self.cache.close()

    async def set(self, keys: Sequence[str]) -> None:
        op = self.cache.set
        for k in keys:
            await op(k, VALUE, ttl=TTL)

    async def get_hit(self, keys: Sequence[str]) -> None:
        op = self.cache.get
        for k in keys:
            await op(k)

    async def delete(self, keys: Sequence[str]) -> None:
        op = self.cache.delete
        for k in keys:
            await op(k)


class CashewsRedis(AsyncContender):
    """cashews with its redis backend (``Cache().setup("redis://...")``), keys prefixed ``cw:``."""

    name = "cashews redis"
    prefix = "cw:"

    def __init__(self, port: int) -> None:
        try:
            from cashews import Cache
        except ImportError as exc:
            raise Unavailable("cashews not installed") from exc
        self.cache: Any = Cache()
        self.cache.setup(
            f"redis://127.0.0.1:{port}/0",
            client_side=False,
            max_connections=POOL_SIZE,
            parser_class=_parser(),
            **_CONNECTION,
        )

    async def start(self) -> None:
        await self.cache.init()

    async def read(self, key: str) -> str | None:
        value: str | None = await self.cache.get(key)
        return value

    async def close(self) -> None:
        await self.cache.close()

    async def set(self, keys: Sequence[str]) -> None:
        op = self.cache.set
        for k in keys:
            await op(k, VALUE, expire=TTL)

    async def get_hit(self, keys: Sequence[str]) -> None:
        op = self.cache.get
        for k in keys:
            await op(k)

    async def delete(self, keys: Sequence[str]) -> None:
        op = self.cache.delete
        for k in keys:
            await op(k)
