"""The ``redis`` driver's plugin: registers it with Pevensie Cache.

Importing this module imports neither redis-py nor the driver: listing the
drivers stays cheap. The factories import them when a cache is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pevensie_cache import hookimpl
from pevensie_redis.config import SCHEMES

if TYPE_CHECKING:
    from pevensie_cache import Register
    from pevensie_redis.cluster import RedisClusterDriver
    from pevensie_redis.cluster_async import AsyncRedisClusterDriver
    from pevensie_redis.config import RedisConfig
    from pevensie_redis.driver import RedisDriver
    from pevensie_redis.driver_async import AsyncRedisDriver
    from pevensie_redis.inspection import RedisInspector

__all__ = [
    "DRIVER_NAME",
    "from_url",
    "from_url_async",
    "inspector",
    "new",
    "new_async",
    "register_cache_drivers",
]

DRIVER_NAME = "redis"


def new(config: RedisConfig | None = None, **fields: Any) -> RedisDriver | RedisClusterDriver:
    """Build a driver from keyword fields of :class:`RedisConfig` (``host=...``, ``port=...``).

    ``config`` is a base configuration the fields replace parts of; without it,
    the fields replace parts of :func:`~pevensie_redis.default_config`. Values
    may be text, as in settings files (``port="6379"``, ``timeout="2s"``): they
    are converted as URL query values are.
    """
    from pevensie_redis.modes import new_cache_driver

    return new_cache_driver(_config(config, fields))


def from_url(url: str, **fields: Any) -> RedisDriver | RedisClusterDriver:
    """Build a driver from a ``redis://``-style URL; ``fields`` override what the URL says."""
    from pevensie_redis.config import RedisConfig
    from pevensie_redis.modes import new_cache_driver

    return new_cache_driver(RedisConfig.from_url(url, **fields))


def new_async(
    config: RedisConfig | None = None, **fields: Any
) -> AsyncRedisDriver | AsyncRedisClusterDriver:
    """Build the async face of a driver from keyword fields, as :func:`new` does."""
    from pevensie_redis.modes import new_async_cache_driver

    return new_async_cache_driver(_config(config, fields))


def from_url_async(url: str, **fields: Any) -> AsyncRedisDriver | AsyncRedisClusterDriver:
    """Build the async face of a driver from a ``redis://``-style URL."""
    from pevensie_redis.config import RedisConfig
    from pevensie_redis.modes import new_async_cache_driver

    return new_async_cache_driver(RedisConfig.from_url(url, **fields))


def inspector(driver: object) -> RedisInspector | None:
    """Return the inspector of one of this package's drivers, or ``None`` for any other."""
    if not type(driver).__module__.startswith("pevensie_redis."):
        return None  # not ours: import nothing
    from pevensie_redis.inspection import inspector_for_driver

    return inspector_for_driver(driver)


def _config(config: RedisConfig | None, fields: dict[str, Any]) -> RedisConfig:
    from dataclasses import replace

    from pevensie_redis.config import OPTIONS, default_config

    converted = OPTIONS.convert(fields)
    base = default_config() if config is None else config
    return replace(base, **converted) if converted else base


@hookimpl
def register_cache_drivers(register: Register) -> None:
    """Register the ``redis`` driver and its URL schemes."""
    register(
        DRIVER_NAME,
        new,
        url_factory=from_url,
        async_factory=new_async,
        async_url_factory=from_url_async,
        schemes=SCHEMES,
        description="Redis-compatible servers (Redis, Valkey) via redis-py, with pooling and TLS.",
        inspector=inspector,
    )
