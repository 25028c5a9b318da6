"""The mode choice: which driver a :class:`~pevensie_redis.RedisConfig` asks for, on either face.

Above the drivers (single server, Sentinel, Cluster), which know nothing of
each other; each mode's module is imported only when it is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pevensie_redis.config import RedisConfig, default_config

if TYPE_CHECKING:
    from pevensie_redis.cluster import RedisClusterDriver
    from pevensie_redis.cluster_async import AsyncRedisClusterDriver
    from pevensie_redis.driver import RedisDriver
    from pevensie_redis.driver_async import AsyncRedisDriver

__all__ = ["new_async_cache_driver", "new_cache_driver"]


def new_cache_driver(config: RedisConfig | None = None) -> RedisDriver | RedisClusterDriver:
    """Return a Redis driver for ``cache.new(driver=...)``; ``None`` means the defaults.

    ``config.cluster`` gives the Redis Cluster driver, ``config.sentinels`` the
    Sentinel one, anything else the single-server driver.
    """
    config = default_config() if config is None else config
    if config.cluster:
        from pevensie_redis.cluster import RedisClusterDriver

        return RedisClusterDriver(config)
    from pevensie_redis.driver import NearRedisDriver, RedisDriver, RedisSentinelDriver

    if config.near_cache:
        return NearRedisDriver(config)
    return RedisSentinelDriver(config) if config.sentinels else RedisDriver(config)


def new_async_cache_driver(
    config: RedisConfig | None = None,
) -> AsyncRedisDriver | AsyncRedisClusterDriver:
    """Return the async face of a Redis driver for ``cache.new_async(driver=...)``."""
    config = default_config() if config is None else config
    if config.cluster:
        from pevensie_redis.cluster_async import AsyncRedisClusterDriver

        return AsyncRedisClusterDriver(config)
    from pevensie_redis.driver_async import (
        AsyncNearRedisDriver,
        AsyncRedisDriver,
        AsyncRedisSentinelDriver,
    )

    if config.near_cache:
        return AsyncNearRedisDriver(config)
    return AsyncRedisSentinelDriver(config) if config.sentinels else AsyncRedisDriver(config)
