"""The contenders: one class per way of caching, each running whole workload loops.

Every workload method runs its loop itself, so the harness times one call and
adds no per-operation cost of its own. A contender that lacks a workload simply
has no method of that name, and the report shows ``-``.

Keys arrive as plain names (``k17``); each contender turns them into what its
users would pass (raw redis-py and dogpile get a prefix, which the facade and
cachelib add themselves), so the contenders never share a stored key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from pevensie_cache import DriverNotFound, PevensieCache, cache

__all__ = [
    "RESOURCE",
    "TTL",
    "VALUE",
    "WORKLOADS",
    "CachelibRedis",
    "CachelibSimple",
    "Contender",
    "DogpileRedis",
    "OursMemory",
    "OursRedis",
    "PoolShape",
    "RawRedis",
    "Unavailable",
]

VALUE = "0123456789abcdef" * 6 + "wxyz"  # 100 ASCII characters, 100 bytes
TTL = 300
RESOURCE = "bench"

# (name, unit, label); the method of that name runs the workload.
WORKLOADS: list[tuple[str, str, str]] = [
    ("set", "ops/s", "set with TTL"),
    ("get_hit", "ops/s", "get (hit)"),
    ("get_miss", "ops/s", "get (miss)"),
    ("delete", "ops/s", "delete"),
    ("set_many", "keys/s", "set_many 100, TTL"),
    ("get_many", "keys/s", "get_many 100"),
    ("threads_get", "ops/s", "8 threads get"),
]

Batch = Sequence[str]
Items = Mapping[str, str]


class Unavailable(Exception):
    """A contender cannot run here (for example its package or driver is missing)."""


class PoolShape:
    """The connection-pool class, parser and settings that the Redis contenders share."""

    def __init__(
        self,
        pool_class: type[redis.ConnectionPool],
        parser_class: type[Any],
        max_connections: int | None,
        source: str,
        connection_options: dict[str, Any] | None = None,
    ) -> None:
        self.pool_class = pool_class
        self.parser_class = parser_class
        self.max_connections = max_connections
        self.source = source
        self.connection_options = connection_options or {}

    def describe(self) -> str:
        """One line for the report."""
        size = "unbounded" if self.max_connections is None else str(self.max_connections)
        options = ", ".join(f"{k}={v}" for k, v in sorted(self.connection_options.items()))
        return (
            f"{self.pool_class.__name__}, parser {self.parser_class.__name__}, "
            f"max_connections {size}{', ' + options if options else ''} ({self.source})"
        )

    def make_pool(self, port: int, *, decode_responses: bool) -> redis.ConnectionPool:
        """Build a pool of this shape to 127.0.0.1:``port``, database 0."""
        kwargs: dict[str, Any] = {
            **self.connection_options,
            "host": "127.0.0.1",
            "port": port,
            "db": 0,
            "decode_responses": decode_responses,
            "parser_class": self.parser_class,
        }
        if self.max_connections is not None:
            kwargs["max_connections"] = self.max_connections
        return self.pool_class(**kwargs)


# Connection settings copied from our driver's pool to raw redis-py and the peers,
# so that every contender's connections time out and health-check alike.
_MIRRORED = (
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "health_check_interval",
)


def default_pool_shape() -> PoolShape:
    """redis-py's defaults: ConnectionPool with its default parser (hiredis when installed)."""
    from redis.connection import DefaultParser

    return PoolShape(redis.ConnectionPool, DefaultParser, None, "redis-py defaults")


def _redis_py_class(pool: redis.ConnectionPool) -> type[redis.ConnectionPool]:
    """The nearest redis-py pool class: our driver's own subclass is not what users call."""
    for klass in type(pool).__mro__:
        if klass.__module__.startswith("redis.") and issubclass(klass, redis.ConnectionPool):
            return klass
    return redis.ConnectionPool


def pool_shape_of(driver: object) -> PoolShape | None:
    """Give raw redis-py the pool settings of our driver.

    Our driver has no redis-py pool (its connections are its own): raw
    redis-py then gets a ``BlockingConnectionPool`` of ``pool_size`` with the
    driver's timeouts, keepalive and health-check interval. A driver holding a
    redis-py pool (the sync Cluster driver's nodes) gives that pool's shape.
    """
    config = getattr(driver, "config", None)
    if config is not None and hasattr(config, "pool_size") and not config.cluster:
        from redis.connection import DefaultParser

        seconds = config.timeout_seconds
        return PoolShape(
            redis.BlockingConnectionPool,
            DefaultParser,
            config.pool_size,
            "our driver's pool_size and settings (its connections are its own)",
            {
                "socket_timeout": seconds,
                "socket_connect_timeout": seconds,
                "socket_keepalive": True,
                "health_check_interval": 30,
            },
        )
    seen: set[int] = set()
    todo: list[object] = [driver]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, redis.ConnectionPool):
            parser = obj.connection_kwargs.get("parser_class")
            if parser is None:
                from redis.connection import DefaultParser

                parser = DefaultParser
            limit = getattr(obj, "max_connections", None)
            unbounded = limit is None or limit >= 2**31 - 1
            klass = _redis_py_class(obj)
            source = "as our driver"
            if klass is not type(obj):
                source = f"our driver uses {type(obj).__name__}, a subclass of it"
            mirrored = {
                k: obj.connection_kwargs[k] for k in _MIRRORED if k in obj.connection_kwargs
            }
            return PoolShape(klass, parser, None if unbounded else limit, source, mirrored)
        if isinstance(obj, redis.Redis):
            todo.append(obj.connection_pool)
            continue
        names: list[str] = list(getattr(obj, "__dict__", {}))
        for klass in type(obj).__mro__:
            names.extend(getattr(klass, "__slots__", ()))
        for name in names:
            try:
                todo.append(getattr(obj, name))
            except AttributeError:
                continue
    return None


class Contender:
    """Base class: a name, a kind (``redis`` or ``memory``) and the key mapping."""

    name = "?"
    kind = "redis"
    prefix = ""

    def keys(self, names: Sequence[str]) -> list[str]:
        """Turn plain key names into what this contender's users pass."""
        p = self.prefix
        return [p + n for n in names] if p else list(names)

    def supports(self, workload: str) -> bool:
        """Whether this contender runs ``workload``."""
        if workload == "threads_get":
            return hasattr(self, "get_hit")
        return callable(getattr(self, workload, None))

    def fill(self, keys: Sequence[str]) -> None:
        """Store VALUE under every key (untimed set-up)."""
        raise NotImplementedError

    def read(self, key: str) -> str | None:
        """Read one key back as ``str`` (correctness check, untimed)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""


def _chunks(keys: Sequence[str], size: int = 100) -> list[Sequence[str]]:
    return [keys[i : i + size] for i in range(0, len(keys), size)]


class RawRedis(Contender):
    """redis-py used directly: ``Redis.get/set/delete``, MGET and a pipeline of SET EX."""

    name = "raw redis-py"
    prefix = "raw:"

    def __init__(self, port: int, shape: PoolShape) -> None:
        self.client = redis.Redis(connection_pool=shape.make_pool(port, decode_responses=True))

    def fill(self, keys: Sequence[str]) -> None:
        for chunk in _chunks(keys):
            self.set_many([dict.fromkeys(chunk, VALUE)])

    def read(self, key: str) -> str | None:
        value: str | None = self.client.get(key)
        return value

    def close(self) -> None:
        self.client.close()
        self.client.connection_pool.disconnect()

    def set(self, keys: Batch) -> None:
        op = self.client.set
        for k in keys:
            op(k, VALUE, ex=TTL)

    def get_hit(self, keys: Batch) -> None:
        op = self.client.get
        for k in keys:
            op(k)

    get_miss = get_hit

    def delete(self, keys: Batch) -> None:
        op = self.client.delete
        for k in keys:
            op(k)

    def set_many(self, batches: Sequence[Items]) -> None:
        pipeline = self.client.pipeline
        for items in batches:
            pipe = pipeline(transaction=False)
            for k, v in items.items():
                pipe.set(k, v, ex=TTL)
            pipe.execute()

    def get_many(self, batches: Sequence[Batch]) -> None:
        op = self.client.mget
        for keys in batches:
            op(keys)


class _Facade(Contender):
    """Our facade over some driver."""

    cache: PevensieCache

    def fill(self, keys: Sequence[str]) -> None:
        for chunk in _chunks(keys):
            self.cache.set_many(RESOURCE, dict.fromkeys(chunk, VALUE), ttl_seconds=TTL)

    def read(self, key: str) -> str | None:
        return self.cache.get(RESOURCE, key, None)

    def close(self) -> None:
        if self.cache.connected:
            self.cache.disconnect()

    def set(self, keys: Batch) -> None:
        op = self.cache.set
        for k in keys:
            op(RESOURCE, k, VALUE, TTL)

    def get_hit(self, keys: Batch) -> None:
        op = self.cache.get
        for k in keys:
            op(RESOURCE, k)

    def get_miss(self, keys: Batch) -> None:
        op = self.cache.get
        for k in keys:
            op(RESOURCE, k, None)

    def delete(self, keys: Batch) -> None:
        op = self.cache.delete
        for k in keys:
            op(RESOURCE, k)

    def set_many(self, batches: Sequence[Items]) -> None:
        op = self.cache.set_many
        for items in batches:
            op(RESOURCE, items, TTL)

    def get_many(self, batches: Sequence[Batch]) -> None:
        op = self.cache.get_many
        for keys in batches:
            op(RESOURCE, keys)


class OursRedis(_Facade):
    """Our Redis driver through the facade: ``cache.from_url("redis://...")``."""

    name = "pevensie redis"

    def __init__(self, url: str) -> None:
        try:
            self.cache = cache.from_url(url).connect()
        except DriverNotFound as exc:
            raise Unavailable("driver not installed") from exc
        except Exception as exc:
            raise Unavailable(f"{type(exc).__name__} building or connecting it") from exc


class OursMemory(_Facade):
    """Our memory driver through the facade: ``cache.new(driver="memory")``."""

    name = "pevensie memory"
    kind = "memory"

    def __init__(self) -> None:
        self.cache = cache.new(driver="memory").connect()


class _Cachelib(Contender):
    """The workloads of any cachelib cache: they share cachelib's ``BaseCache`` API."""

    cache: Any

    def fill(self, keys: Sequence[str]) -> None:
        for chunk in _chunks(keys):
            self.cache.set_many(dict.fromkeys(chunk, VALUE))

    def read(self, key: str) -> str | None:
        value: str | None = self.cache.get(key)
        return value

    def set(self, keys: Batch) -> None:
        op = self.cache.set
        for k in keys:
            op(k, VALUE, TTL)

    def get_hit(self, keys: Batch) -> None:
        op = self.cache.get
        for k in keys:
            op(k)

    get_miss = get_hit

    def delete(self, keys: Batch) -> None:
        op = self.cache.delete
        for k in keys:
            op(k)

    def set_many(self, batches: Sequence[Items]) -> None:
        op = self.cache.set_many
        for items in batches:
            op(items, TTL)

    def get_many(self, batches: Sequence[Batch]) -> None:
        op = self.cache.get_many
        for keys in batches:
            op(*keys)


class CachelibRedis(_Cachelib):
    """cachelib's ``RedisCache`` on a pool of the same shape (it pickles values)."""

    name = "cachelib RedisCache"

    def __init__(self, port: int, shape: PoolShape) -> None:
        try:
            from cachelib import RedisCache
        except ImportError as exc:
            raise Unavailable("cachelib not installed") from exc
        client = redis.Redis(connection_pool=shape.make_pool(port, decode_responses=False))
        self.client = client
        self.cache = RedisCache(host=client, default_timeout=TTL, key_prefix="cl:")

    def close(self) -> None:
        self.client.close()
        self.client.connection_pool.disconnect()


class DogpileRedis(Contender):
    """dogpile.cache's ``dogpile.cache.redis`` backend in a region, TTL set on the server."""

    name = "dogpile.cache redis"
    prefix = "dp:"

    def __init__(self, port: int, shape: PoolShape) -> None:
        try:
            from dogpile.cache import make_region
            from dogpile.cache.api import NO_VALUE
        except ImportError as exc:
            raise Unavailable("dogpile.cache not installed") from exc
        self.pool = shape.make_pool(port, decode_responses=False)
        self.no_value = NO_VALUE
        self.region = make_region().configure(
            "dogpile.cache.redis",
            expiration_time=TTL,
            arguments={
                "connection_pool": self.pool,
                "redis_expiration_time": TTL,
                "distributed_lock": False,
            },
        )

    def fill(self, keys: Sequence[str]) -> None:
        for chunk in _chunks(keys):
            self.region.set_multi(dict.fromkeys(chunk, VALUE))

    def read(self, key: str) -> str | None:
        value = self.region.get(key)
        return None if value is self.no_value else str(value)

    def close(self) -> None:
        self.pool.disconnect()

    def set(self, keys: Batch) -> None:
        op = self.region.set
        for k in keys:
            op(k, VALUE)

    def get_hit(self, keys: Batch) -> None:
        op = self.region.get
        for k in keys:
            op(k)

    get_miss = get_hit

    def delete(self, keys: Batch) -> None:
        op = self.region.delete
        for k in keys:
            op(k)

    def set_many(self, batches: Sequence[Items]) -> None:
        op = self.region.set_multi
        for items in batches:
            op(items)

    def get_many(self, batches: Sequence[Batch]) -> None:
        op = self.region.get_multi
        for keys in batches:
            op(keys)


class CachelibSimple(_Cachelib):
    """cachelib's in-process ``SimpleCache`` (the memory driver's peer)."""

    name = "cachelib SimpleCache"
    kind = "memory"

    def __init__(self) -> None:
        try:
            from cachelib import SimpleCache
        except ImportError as exc:
            raise Unavailable("cachelib not installed") from exc
        # A threshold far above the key space, so pruning never runs.
        self.cache = SimpleCache(threshold=10_000_000, default_timeout=TTL)


Factory = Callable[[], Contender]
