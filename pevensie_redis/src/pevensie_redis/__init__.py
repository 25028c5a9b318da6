"""Pevensie Redis: the Redis-compatible driver (Redis, Valkey) for Pevensie Cache.

>>> from dataclasses import replace
>>> from pevensie_cache import cache
>>> from pevensie_redis import default_config, new_cache_driver
>>> config = replace(default_config(), host="cache.example.com")
>>> c = cache.new(driver=new_cache_driver(config))  # then c.connect()

or by name, ``cache.new(driver="redis", host="cache.example.com")``, or by URL,
``cache.from_url("redis://cache.example.com:6379/0")``.

Importing this package does not import redis-py; :class:`RedisDriver` and
:func:`new_cache_driver` load it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pevensie_redis.config import RedisConfig, default_config
from pevensie_redis.errors import (
    RedisAuthenticationError,
    RedisConnectionError,
    RedisDriverError,
    RedisPermissionError,
    RedisPoolExhausted,
    RedisProtocolError,
    RedisServerError,
    RedisServerUnavailable,
    RedisTimeoutError,
)

if TYPE_CHECKING:
    from pevensie_redis.cluster import NearRedisClusterDriver, RedisClusterDriver
    from pevensie_redis.cluster_async import AsyncNearRedisClusterDriver, AsyncRedisClusterDriver
    from pevensie_redis.driver import NearRedisDriver, RedisDriver, RedisSentinelDriver
    from pevensie_redis.driver_async import (
        AsyncNearRedisDriver,
        AsyncRedisDriver,
        AsyncRedisSentinelDriver,
    )
    from pevensie_redis.modes import new_async_cache_driver, new_cache_driver
    from pevensie_redis.near import NearStats

__all__ = [
    "AsyncNearRedisClusterDriver",
    "AsyncNearRedisDriver",
    "AsyncRedisClusterDriver",
    "AsyncRedisDriver",
    "AsyncRedisSentinelDriver",
    "NearRedisClusterDriver",
    "NearRedisDriver",
    "NearStats",
    "RedisAuthenticationError",
    "RedisClusterDriver",
    "RedisConfig",
    "RedisConnectionError",
    "RedisDriver",
    "RedisDriverError",
    "RedisPermissionError",
    "RedisPoolExhausted",
    "RedisProtocolError",
    "RedisSentinelDriver",
    "RedisServerError",
    "RedisServerUnavailable",
    "RedisTimeoutError",
    "default_config",
    "new_async_cache_driver",
    "new_cache_driver",
]

__version__ = "0.1.0"

_LAZY = {
    "RedisDriver": "driver",
    "RedisSentinelDriver": "driver",
    "AsyncRedisDriver": "driver_async",
    "AsyncRedisSentinelDriver": "driver_async",
    "new_cache_driver": "modes",
    "new_async_cache_driver": "modes",
    "RedisClusterDriver": "cluster",
    "AsyncRedisClusterDriver": "cluster_async",
    "NearRedisDriver": "driver",
    "AsyncNearRedisDriver": "driver_async",
    "NearRedisClusterDriver": "cluster",
    "AsyncNearRedisClusterDriver": "cluster_async",
    "NearStats": "near",
}


def __dir__() -> list[str]:
    return [*__all__, "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        return getattr(importlib.import_module(f"pevensie_redis.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
