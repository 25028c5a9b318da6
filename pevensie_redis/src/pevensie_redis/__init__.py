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
    RedisPoolExhausted,
    RedisServerError,
    RedisTimeoutError,
)

if TYPE_CHECKING:
    from pevensie_redis.driver import RedisDriver, new_cache_driver

__all__ = [
    "RedisAuthenticationError",
    "RedisConfig",
    "RedisConnectionError",
    "RedisDriver",
    "RedisDriverError",
    "RedisPoolExhausted",
    "RedisServerError",
    "RedisTimeoutError",
    "default_config",
    "new_cache_driver",
]

__version__ = "0.1.0"

_LAZY = frozenset({"RedisDriver", "new_cache_driver"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from pevensie_redis import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
