"""The mode choice: which driver a :class:`~pevensie_redis.RedisConfig` asks for, on either face.

A mode is composed, not flagged:

- **where to connect** is a locator handed to the one channel design
  (:mod:`~pevensie_redis.channel`): :class:`~pevensie_redis.direct.Direct`
  (``host``/``port`` or ``unix_socket_path``),
  :class:`~pevensie_redis.sentinel.Sentinels` (``sentinels``), or the Cluster
  driver's slot map (``cluster``);
- **layers** go over it: replica reads (:mod:`~pevensie_redis.replicas`, with
  ``read_from_replicas``: any locator that names replicas, and the Cluster's
  own per-slot choice) and the near cache (``near_cache``: its store and
  listener, :class:`~pevensie_redis.driver.NearRedisDriver`; on a Cluster,
  a listener per primary, :class:`~pevensie_redis.cluster.NearRedisClusterDriver`).
  With both, the near cache is filled from the primaries and the reads it does
  not keep go to the replicas.

A combination that is not supported is a :class:`~pevensie_cache.ConfigError`
saying why, raised when the configuration is made (``RedisConfig``): replica
reads without a locator that names replicas, Cluster with Sentinel. No
combination wins silently.

Above the drivers (single server and Sentinel, Cluster), which know nothing of
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
        from pevensie_redis.cluster import NearRedisClusterDriver, RedisClusterDriver

        return NearRedisClusterDriver(config) if config.near_cache else RedisClusterDriver(config)
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
        from pevensie_redis.cluster_async import (
            AsyncNearRedisClusterDriver,
            AsyncRedisClusterDriver,
        )

        if config.near_cache:
            return AsyncNearRedisClusterDriver(config)
        return AsyncRedisClusterDriver(config)
    from pevensie_redis.driver_async import (
        AsyncNearRedisDriver,
        AsyncRedisDriver,
        AsyncRedisSentinelDriver,
    )

    if config.near_cache:
        return AsyncNearRedisDriver(config)
    return AsyncRedisSentinelDriver(config) if config.sentinels else AsyncRedisDriver(config)
