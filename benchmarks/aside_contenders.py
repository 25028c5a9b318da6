"""The cache-aside contenders (issue 11): each way of caching a function's result, as a row.

A :class:`Row` is one (workload, contender) pair: a loop that makes one call
per input (sync, or a coroutine run on the run's one event loop) and a
``fill`` that makes every call once beforehand, untimed, so that the timed
calls are hits. Each memoised function counts its own calls, so the report
can show that no timed sample ran the function (a pure hit path).

The cache-aside rows (``aside_*`` workloads) call a memoised "load user i"
for i cycling over 1,000 arguments, whose result is a 100-character string:

- hand-written get-then-set on our cache (``get(..., None)``, then on a miss
  ``set``), the baseline: what users write today;
- ``cache.get_or_set(rt, str(i), loader, ttl)``;
- ``@cache.cached(rt, ttl)`` (the JSON codec, its default);
- dogpile.cache's ``region.get_or_create`` and ``@region.cache_on_arguments``
  (Redis backend, pickled values, the same pool shape as ours);
- aiocache's ``@cached`` (``RedisCache``, its default JSON serializer, a
  ``BlockingConnectionPool`` of 10) and cashews' ``@cache(ttl=...)`` (redis
  backend, its defaults), on the async rows;
- raw redis-py / redis.asyncio get-then-set, for scale.

The resource rows compare ``cache.resource(rt)`` (the ``"str"`` codec) with
the direct call; the clear rows delete 100,000 keys with ``cache.clear`` or a
django-redis-style ``delete_pattern`` written with raw redis-py (``SCAN
MATCH`` pages, one ``DEL`` per page).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from async_contenders import POOL_SIZE, RawAsyncRedis
from contenders import TTL, VALUE, PoolShape, Unavailable
from redis.asyncio.connection import BlockingConnectionPool

from pevensie_cache import AsyncPevensieCache, PevensieCache

__all__ = [
    "ASIDE_TTL",
    "PATTERN_10",
    "PATTERN_1000",
    "Counter",
    "Row",
    "aiocache_rows",
    "cashews_rows",
    "clear_rows",
    "dogpile_rows",
    "fill",
    "ours_aside_rows",
    "ours_async_aside_rows",
    "pool_client",
    "raw_aside_rows",
    "raw_async_aside_rows",
    "resource_rows",
    "unrelated_keys",
]

ASIDE_TTL = 3600
"""TTL of memoised results: longer than any run, so no hit turns into a miss mid-run."""
ARGUMENTS = list(range(1000))
RT = "user"  # the resource type of our cache-aside rows


class Counter:
    """How many times a memoised function ran."""

    def __init__(self) -> None:
        self.calls = 0


FRESH = "get_or_set, stale_seconds + a tag"
"""The issue 24 row: the hit path with ``stale_seconds=60`` and ``tags=[f"user:{i}"]``."""


@dataclass
class Row:
    """One (workload, contender) pair: ``run(inputs)`` makes one call per input.

    ``run`` is a plain function, or an ``async def`` when ``is_async``;
    ``fill(inputs)`` (same kind) makes every call once so the timed ones hit. A row with
    ``fixed`` units (clear: the keys it deletes) runs once per sample, and
    ``fill`` runs before every sample.
    """

    workload: str
    contender: str
    run: Callable[[Sequence[Any]], Any]
    fill: Callable[[Sequence[Any]], Any] | None = None
    is_async: bool = False
    inputs: Sequence[Any] = field(default_factory=lambda: ARGUMENTS)
    counter: Counter | None = None
    fixed: int | None = None


def _loader(counter: Counter) -> Callable[[int], str]:
    def load_user(i: int) -> str:
        counter.calls += 1
        return VALUE

    return load_user


def _async_loader(counter: Counter) -> Callable[[int], Awaitable[str]]:
    async def load_user(i: int) -> str:
        counter.calls += 1
        return VALUE

    return load_user


# -- sync, our cache ------------------------------------------------------------------------


def ours_aside_rows(workload: str, cache: PevensieCache) -> list[Row]:
    """Hand-written get-then-set, ``get_or_set`` and ``@cached`` on a connected sync cache."""
    rows: list[Row] = []

    counter = Counter()
    load = _loader(counter)
    get, put = cache.get, cache.set

    def hand_written(i: int) -> str:
        key = str(i)
        value = get(RT, key, None)
        if value is None:
            value = load(i)
            put(RT, key, value, ASIDE_TTL)
        return value

    rows.append(_sync_row(workload, "hand-written get-then-set", hand_written, counter))

    counter = Counter()
    load2 = _loader(counter)
    get_or_set = cache.get_or_set

    def with_get_or_set(i: int) -> str:
        return get_or_set(RT + "2", str(i), lambda: load2(i), ASIDE_TTL)

    rows.append(_sync_row(workload, "get_or_set", with_get_or_set, counter))

    counter = Counter()
    cached = cache.cached(RT + "3", ASIDE_TTL)(_loader(counter))
    rows.append(_sync_row(workload, "@cached (json)", cached, counter))

    counter = Counter()
    load4 = _loader(counter)

    def fresh(i: int) -> str:
        return get_or_set(
            RT + "4", str(i), lambda: load4(i), ASIDE_TTL, stale_seconds=60, tags=[f"user:{i}"]
        )

    rows.append(_sync_row(workload, FRESH, fresh, counter))
    return rows


def raw_aside_rows(workload: str, client: redis.Redis) -> list[Row]:
    """Get-then-set with raw redis-py (``decode_responses=True``), for scale."""
    counter = Counter()
    load = _loader(counter)
    get: Callable[[str], Any] = client.get
    put = client.set

    def raw(i: int) -> str:
        key = f"raw:user:{i}"
        value: str | None = get(key)
        if value is None:
            value = load(i)
            put(key, value, ex=ASIDE_TTL)
        return value

    return [_sync_row(workload, "raw redis-py get-then-set", raw, counter)]


def dogpile_rows(workload: str, backend: str, arguments: dict[str, Any]) -> list[Row]:
    """dogpile.cache's ``get_or_create`` and ``@cache_on_arguments`` on one region."""
    try:
        from dogpile.cache import make_region
    except ImportError as exc:
        raise Unavailable("dogpile.cache not installed") from exc
    region = make_region().configure(backend, expiration_time=ASIDE_TTL, arguments=arguments)
    counter = Counter()
    load = _loader(counter)
    get_or_create = region.get_or_create

    def with_get_or_create(i: int) -> str:
        value: str = get_or_create(f"dp:user:{i}", lambda: load(i))
        return value

    counter2 = Counter()
    on_arguments = region.cache_on_arguments()(_loader(counter2))
    return [
        _sync_row(workload, "dogpile get_or_create", with_get_or_create, counter),
        _sync_row(workload, "dogpile cache_on_arguments", on_arguments, counter2),
    ]


def _sync_row(workload: str, name: str, function: Callable[[int], str], counter: Counter) -> Row:
    def run(inputs: Sequence[Any]) -> None:
        for i in inputs:
            function(i)

    def fill(inputs: Sequence[Any]) -> None:
        for i in inputs:
            if function(i) != VALUE:
                raise AssertionError(f"{name} returned something else than the loaded value")

    return Row(workload, name, run, fill, counter=counter)


# -- async ------------------------------------------------------------------------------------


def ours_async_aside_rows(workload: str, cache: AsyncPevensieCache) -> list[Row]:
    """Hand-written get-then-set, ``get_or_set`` and ``@cached`` on a connected async cache."""
    rows: list[Row] = []

    counter = Counter()
    load = _async_loader(counter)
    get, put = cache.get, cache.set

    async def hand_written(i: int) -> str:
        key = str(i)
        value = await get(RT, key, None)
        if value is None:
            value = await load(i)
            await put(RT, key, value, ASIDE_TTL)
        return value

    rows.append(_async_row(workload, "hand-written get-then-set", hand_written, counter))

    counter = Counter()
    load2 = _async_loader(counter)
    get_or_set = cache.get_or_set

    async def with_get_or_set(i: int) -> str:
        return await get_or_set(RT + "2", str(i), lambda: load2(i), ASIDE_TTL)

    rows.append(_async_row(workload, "get_or_set", with_get_or_set, counter))

    counter = Counter()
    cached = cache.cached(RT + "3", ASIDE_TTL)(_async_loader(counter))
    rows.append(_async_row(workload, "@cached (json)", cached, counter))

    counter = Counter()
    load4 = _async_loader(counter)

    async def fresh(i: int) -> str:
        return await get_or_set(
            RT + "4", str(i), lambda: load4(i), ASIDE_TTL, stale_seconds=60, tags=[f"user:{i}"]
        )

    rows.append(_async_row(workload, FRESH, fresh, counter))
    return rows


def raw_async_aside_rows(workload: str, port: int) -> tuple[list[Row], Any]:
    """Get-then-set with raw redis.asyncio (pool of 10, ``decode_responses=True``), for scale."""
    raw = RawAsyncRedis(port)
    counter = Counter()
    load = _async_loader(counter)
    get: Callable[[str], Awaitable[Any]] = raw.client.get
    put = raw.client.set

    async def hand_written(i: int) -> str:
        key = f"raw:user:{i}"
        value: str | None = await get(key)
        if value is None:
            value = await load(i)
            await put(key, value, ex=ASIDE_TTL)
        return value

    return [_async_row(workload, "raw redis.asyncio get-then-set", hand_written, counter)], raw


def aiocache_rows(workload: str, port: int | None) -> tuple[list[Row], Any]:
    """aiocache's ``@cached``: on ``RedisCache`` (``port``), else on ``SimpleMemoryCache``."""
    try:
        from aiocache import (  # type: ignore[import-untyped]
            RedisCache,
            SimpleMemoryCache,
            cached,
        )
    except ImportError as exc:
        raise Unavailable("aiocache not installed") from exc
    counter = Counter()
    if port is None:
        decorator = cached(ttl=ASIDE_TTL, cache=SimpleMemoryCache, namespace="acd")
    else:
        decorator = cached(
            ttl=ASIDE_TTL,
            cache=RedisCache,
            namespace="acd",
            endpoint="127.0.0.1",
            port=port,
            pool_max_size=POOL_SIZE,
            create_connection_timeout=5.0,
            connection_pool_class=BlockingConnectionPool,
            connection_pool_kwargs={"socket_timeout": 5.0, "socket_keepalive": True},
        )
    function = decorator(_async_loader(counter))
    return [_async_row(workload, "aiocache @cached", function, counter)], function.cache


def cashews_rows(workload: str, port: int | None) -> tuple[list[Row], Any]:
    """cashews' ``@cache(ttl=...)``: redis backend (``port``), else its memory backend."""
    try:
        from cashews import Cache
    except ImportError as exc:
        raise Unavailable("cashews not installed") from exc
    cache = Cache()
    if port is None:
        cache.setup("mem://")
    else:
        cache.setup(
            f"redis://127.0.0.1:{port}/0",
            client_side=False,
            max_connections=POOL_SIZE,
            socket_timeout=5.0,
            socket_connect_timeout=5.0,
        )
    counter = Counter()
    function = cache(ttl=ASIDE_TTL)(_async_loader(counter))
    return [_async_row(workload, "cashews @cache", function, counter)], cache


def _async_row(
    workload: str, name: str, function: Callable[[int], Awaitable[str]], counter: Counter
) -> Row:
    async def run(inputs: Sequence[Any]) -> None:
        for i in inputs:
            await function(i)

    async def fill(inputs: Sequence[Any]) -> None:
        for i in inputs:
            if await function(i) != VALUE:
                raise AssertionError(f"{name} returned something else than the loaded value")

    return Row(workload, name, run, fill, is_async=True, counter=counter)


# -- resource vs the direct call ------------------------------------------------------------


KEYS = [f"k{i}" for i in range(1000)]


def resource_rows(prefix: str, cache: PevensieCache | AsyncPevensieCache) -> list[Row]:
    """Get (hit) and set with TTL: the direct call and a ``"str"`` resource, on ``cache``."""
    resource: Any = cache.resource("res")
    direct: Any = cache
    get_w, set_w = f"{prefix}_get", f"{prefix}_set"
    if isinstance(cache, PevensieCache):

        def direct_get(keys: Sequence[Any]) -> None:
            op = direct.get
            for k in keys:
                op("res", k)

        def resource_get(keys: Sequence[Any]) -> None:
            op = resource.get
            for k in keys:
                op(k)

        def direct_set(keys: Sequence[Any]) -> None:
            op = direct.set
            for k in keys:
                op("res", k, VALUE, TTL)

        def resource_set(keys: Sequence[Any]) -> None:
            op = resource.set
            for k in keys:
                op(k, VALUE, TTL)

        def fill(_keys: Sequence[Any]) -> None:
            cache.set_many("res", dict.fromkeys(KEYS, VALUE), ASIDE_TTL)

        runs: tuple[Callable[[Sequence[Any]], Any], ...] = (
            direct_get,
            resource_get,
            direct_set,
            resource_set,
        )
        fills: Callable[[Sequence[Any]], Any] = fill
        is_async = False
    else:

        async def a_direct_get(keys: Sequence[Any]) -> None:
            op = direct.get
            for k in keys:
                await op("res", k)

        async def a_resource_get(keys: Sequence[Any]) -> None:
            op = resource.get
            for k in keys:
                await op(k)

        async def a_direct_set(keys: Sequence[Any]) -> None:
            op = direct.set
            for k in keys:
                await op("res", k, VALUE, TTL)

        async def a_resource_set(keys: Sequence[Any]) -> None:
            op = resource.set
            for k in keys:
                await op(k, VALUE, TTL)

        async def a_fill(_keys: Sequence[Any]) -> None:
            await direct.set_many("res", dict.fromkeys(KEYS, VALUE), ASIDE_TTL)

        runs = (a_direct_get, a_resource_get, a_direct_set, a_resource_set)
        fills, is_async = a_fill, True
    names = ("direct call", 'resource, "str" codec')
    return [
        Row(get_w, names[0], runs[0], fills, is_async, KEYS),
        Row(get_w, names[1], runs[1], None, is_async, KEYS),
        Row(set_w, names[0], runs[2], None, is_async, KEYS),
        Row(set_w, names[1], runs[3], None, is_async, KEYS),
    ]


# -- clear ------------------------------------------------------------------------------------


CLEAR_RT = "clr"
PATTERN_10 = "delete_pattern, itersize 10 (django-redis default)"
PATTERN_1000 = "delete_pattern, itersize 1000"


def delete_pattern(client: redis.Redis, pattern: str, itersize: int) -> int:
    """django-redis-style ``delete_pattern``: ``SCAN MATCH`` page by page, one ``DEL`` per page."""
    deleted = 0
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor, match=pattern, count=itersize)
        if keys:
            deleted += client.delete(*keys)
        if cursor == 0:
            return deleted


def clear_rows(
    client: redis.Redis, ours: PevensieCache, memory: PevensieCache, size: int
) -> list[Row]:
    """Delete ``size`` keys of one resource type: ``cache.clear`` and ``delete_pattern``.

    ``run`` returns nothing; ``fill`` writes the ``size`` keys again (untimed)
    before every sample. The server holds as many unrelated keys besides.
    """
    names = [f"{i}" for i in range(size)]

    def fill_server(_inputs: Sequence[Any]) -> None:
        for start in range(0, size, 1000):
            chunk = names[start : start + 1000]
            client.mset({f"{CLEAR_RT}:{n}": VALUE for n in chunk})

    def fill_memory(_inputs: Sequence[Any]) -> None:
        for start in range(0, size, 1000):
            memory.set_many(CLEAR_RT, dict.fromkeys(names[start : start + 1000], VALUE))

    def check(deleted: int) -> None:
        if deleted != size:
            raise AssertionError(f"deleted {deleted} keys instead of {size}")

    def ours_clear(_inputs: Sequence[Any]) -> None:
        check(ours.clear(CLEAR_RT))

    def pattern_10(_inputs: Sequence[Any]) -> None:
        check(delete_pattern(client, f"{CLEAR_RT}:*", 10))

    def pattern_1000(_inputs: Sequence[Any]) -> None:
        check(delete_pattern(client, f"{CLEAR_RT}:*", 1000))

    def memory_clear(_inputs: Sequence[Any]) -> None:
        check(memory.clear(CLEAR_RT))

    return [
        Row("clear", PATTERN_10, pattern_10, fill_server, fixed=size),
        Row("clear", PATTERN_1000, pattern_1000, fill_server, fixed=size),
        Row("clear", "pevensie redis clear()", ours_clear, fill_server, fixed=size),
        Row("clear", "pevensie memory clear()", memory_clear, fill_memory, fixed=size),
    ]


def unrelated_keys(client: redis.Redis, size: int) -> None:
    """Write ``size`` keys of another resource type, which every clear must step over."""
    for start in range(0, size, 1000):
        client.mset({f"other:{i}": VALUE for i in range(start, min(size, start + 1000))})


def pool_client(shape: PoolShape, port: int) -> redis.Redis:
    """A raw redis-py client on a pool of our driver's shape, returning ``str``."""
    return redis.Redis(connection_pool=shape.make_pool(port, decode_responses=True))


def fill(loop: asyncio.AbstractEventLoop, row: Row) -> None:
    """Run a row's fill: on ``loop`` for an async row, directly for a sync one."""
    if row.fill is None:
        return
    if row.is_async:
        loop.run_until_complete(row.fill(row.inputs))
    else:
        row.fill(row.inputs)
