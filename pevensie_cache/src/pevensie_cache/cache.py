"""Build caches: by driver name, URL, mapping or environment, for the sync or the async face.

>>> from pevensie_cache import cache
>>> c = cache.new(driver="memory").connect()
>>> c.set("user", "42", "Ada", ttl_seconds=60)
>>> c.get("user", "42")
'Ada'
>>> c.disconnect()

Every ``new``/``from_*`` function has an ``_async`` twin that builds an
:class:`~pevensie_cache.AsyncPevensieCache` with the same arguments. Each
driver documents its own options: ``cache.drivers()`` lists the installed
drivers, and the Redis driver's options are the fields of
:class:`pevensie_redis.RedisConfig`. Cached data may be lost at any time: a
cache is not a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pevensie_cache import building as _building
from pevensie_cache.building import ENV_VAR
from pevensie_cache.driver import AsyncCacheDriver, CacheDriver
from pevensie_cache.errors import UnsupportedOperation
from pevensie_cache.facade import PevensieCache
from pevensie_cache.facade_async import AsyncPevensieCache
from pevensie_cache.inspection import CacheInspector
from pevensie_cache.plugins import get_registry as _get_registry
from pevensie_cache.registry import DriverInfo
from pevensie_cache.threaded import ThreadedAsyncDriver

__all__ = [
    "ENV_VAR",
    "AsyncPevensieCache",
    "PevensieCache",
    "drivers",
    "from_config",
    "from_config_async",
    "from_env",
    "from_env_async",
    "from_url",
    "from_url_async",
    "inspector",
    "new",
    "new_async",
]


def __dir__() -> list[str]:
    return list(__all__)


def new(driver: CacheDriver | str = "memory", **options: Any) -> PevensieCache:
    """Return a new, not yet connected cache.

    ``driver`` is a driver object, or the registered name of a driver (see
    :func:`drivers`); with a name, ``options`` go to that driver's factory
    (the Redis driver's are the fields of ``pevensie_redis.RedisConfig``, the
    memory driver's ``max_entries``). The default is the built-in in-memory
    driver.
    """
    if isinstance(driver, str):
        return PevensieCache(_building.driver_from_name(driver, options, "sync"))
    _building.check_driver_object(driver, options, "sync")
    return PevensieCache(driver)


def new_async(driver: AsyncCacheDriver | str = "memory", **options: Any) -> AsyncPevensieCache:
    """Return a new, not yet connected async cache; the arguments are :func:`new`'s.

    A driver registered without a native async face runs in worker threads
    (``cache.drivers()`` says which); a driver object must be an async driver.
    """
    if isinstance(driver, str):
        return AsyncPevensieCache(_building.driver_from_name(driver, options, "async"))
    _building.check_driver_object(driver, options, "async")
    return AsyncPevensieCache(driver)


def from_url(url: str, **options: Any) -> PevensieCache:
    """Return a new cache whose driver is picked by the URL scheme (``memory://``, ...).

    ``options`` go to the driver together with the URL and override what the
    URL says.
    """
    return PevensieCache(_building.driver_from_url(url, options, "sync"))


def from_url_async(url: str, **options: Any) -> AsyncPevensieCache:
    """Return a new async cache whose driver is picked by the URL scheme; see :func:`from_url`."""
    return AsyncPevensieCache(_building.driver_from_url(url, options, "async"))


def from_config(config: Mapping[str, Any], *, prefix: str = "") -> PevensieCache:
    """Return a new cache from a mapping, as loaded from TOML, JSON, YAML or INI files.

    The mapping names the driver with ``driver`` (a registered name) or
    ``url``; every other key is an option of the driver. Values may be text
    (``"6379"``, ``"true"``, ``"2s"``): they are converted as URL query values
    are. With ``prefix``, only keys that start with it are used, the prefix
    removed (``{"cache.url": ...}`` with ``prefix="cache."``).
    """
    return PevensieCache(_building.driver_from_config(config, prefix, "sync"))


def from_config_async(config: Mapping[str, Any], *, prefix: str = "") -> AsyncPevensieCache:
    """Return a new async cache from a mapping; see :func:`from_config`."""
    return AsyncPevensieCache(_building.driver_from_config(config, prefix, "async"))


def from_env(var: str = ENV_VAR, *, default: str | None = None, **options: Any) -> PevensieCache:
    """Return a new cache from the URL in the environment variable ``var``.

    ``default`` is used when the variable is unset or empty; without one that
    is a :class:`~pevensie_cache.ConfigError`.
    """
    return PevensieCache(_building.driver_from_env(var, default, options, "sync"))


def from_env_async(
    var: str = ENV_VAR, *, default: str | None = None, **options: Any
) -> AsyncPevensieCache:
    """Return a new async cache from the URL in the environment variable ``var``."""
    return AsyncPevensieCache(_building.driver_from_env(var, default, options, "async"))


def drivers() -> list[DriverInfo]:
    """List every installed driver, and every plugin that failed to load, with the reason.

    Each entry says whether the driver has a native async face
    (``native_async``); one without runs in worker threads under ``new_async``.
    """
    return _get_registry().infos()


def inspector(c: PevensieCache | AsyncPevensieCache | object) -> CacheInspector:
    """Return the inspector of a cache's driver (or of a driver): TTLs, keys, server facts.

    For operator tools such as the ``pevensie-cache`` command line; the
    inspector works on a connected cache's sync face. A driver whose plugin
    registered no inspector raises :class:`~pevensie_cache.UnsupportedOperation`.
    """
    name, found = identify_driver(c)
    if found is None:
        raise UnsupportedOperation(
            f"the {name} driver offers no inspector (TTLs, key listings, server statistics)"
        )
    return found


def identify_driver(
    c: PevensieCache | AsyncPevensieCache | object,
) -> tuple[str, CacheInspector | None]:
    """Return the registered name of the driver of ``c`` (a cache or a driver), and its inspector.

    A driver no plugin recognises is named after its class, with no inspector.
    """
    driver: object = c.driver if isinstance(c, (PevensieCache, AsyncPevensieCache)) else c
    if isinstance(driver, ThreadedAsyncDriver):
        driver = driver.sync_driver
    known = _get_registry().identify(driver)
    if known is None:
        return type(driver).__name__, None
    return known
