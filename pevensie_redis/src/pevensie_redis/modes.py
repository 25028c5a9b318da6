"""The mode choice: which driver a :class:`~pevensie_redis.RedisConfig` asks for.

Above the three drivers (single server, Cluster, Sentinel), which know nothing
of each other; each mode's module is imported only when it is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pevensie_redis.config import RedisConfig, default_config

if TYPE_CHECKING:
    from pevensie_redis.cluster import RedisClusterDriver
    from pevensie_redis.driver import RedisDriver

__all__ = ["new_cache_driver"]


def new_cache_driver(config: RedisConfig | None = None) -> RedisDriver | RedisClusterDriver:
    """Return a Redis driver for ``cache.new(driver=...)``; ``None`` means the defaults.

    ``config.cluster`` gives the Redis Cluster driver, ``config.sentinels`` the
    Sentinel one, anything else the single-server driver.
    """
    config = default_config() if config is None else config
    if config.cluster:
        from pevensie_redis.cluster import RedisClusterDriver

        return RedisClusterDriver(config)
    if config.sentinels:
        from pevensie_redis.sentinel import RedisSentinelDriver

        return RedisSentinelDriver(config)
    from pevensie_redis.driver import RedisDriver

    return RedisDriver(config)
