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
from typing import Any, overload

from pevensie_cache import building as _building
from pevensie_cache.building import ENV_VAR
from pevensie_cache.driver import AsyncCacheDriver, CacheDriver, DriverConfig
from pevensie_cache.errors import UnsupportedOperation
from pevensie_cache.facade import PevensieCache
from pevensie_cache.facade_async import AsyncPevensieCache
from pevensie_cache.inspection import CacheInspector, NamespacedInspector
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


@overload
def new(
    driver: CacheDriver | DriverConfig,
    *,
    namespace: str | None = None,
    fail_open: bool = False,
) -> PevensieCache: ...


@overload
def new(
    driver: str = "memory",
    *,
    namespace: str | None = None,
    fail_open: bool = False,
    **options: Any,
) -> PevensieCache: ...


def new(
    driver: CacheDriver | DriverConfig | str = "memory",
    *,
    namespace: str | None = None,
    fail_open: bool = False,
    **options: Any,
) -> PevensieCache:
    """Return a new, not yet connected cache.

    ``driver`` is a driver's configuration object (the typed path:
    ``cache.new(RedisConfig(host="cache.internal"))``, where a type checker
    catches a misspelt option), a driver object, or the registered name of a
    driver (see :func:`drivers`), whose ``options`` go to its factory (the
    Redis driver's are the fields of ``pevensie_redis.RedisConfig``, the
    memory driver's ``max_entries``). The default is the built-in in-memory
    driver. ``namespace`` and ``fail_open`` are the cache's own options (see
    :class:`~pevensie_cache.PevensieCache`).
    """
    built = _build(driver, options, "sync")
    return PevensieCache(built.driver, namespace=namespace, fail_open=fail_open)


@overload
def new_async(
    driver: AsyncCacheDriver | DriverConfig,
    *,
    namespace: str | None = None,
    fail_open: bool = False,
) -> AsyncPevensieCache: ...


@overload
def new_async(
    driver: str = "memory",
    *,
    namespace: str | None = None,
    fail_open: bool = False,
    **options: Any,
) -> AsyncPevensieCache: ...


def new_async(
    driver: AsyncCacheDriver | DriverConfig | str = "memory",
    *,
    namespace: str | None = None,
    fail_open: bool = False,
    **options: Any,
) -> AsyncPevensieCache:
    """Return a new, not yet connected async cache; the arguments are :func:`new`'s.

    A driver registered without a native async face runs in worker threads
    (``cache.drivers()`` says which); a driver object must be an async driver.
    """
    built = _build(driver, options, "async")
    return AsyncPevensieCache(built.driver, namespace=namespace, fail_open=fail_open)


def from_url(url: str, **options: Any) -> PevensieCache:
    """Return a new cache whose driver is picked by the URL scheme (``memory://``, ...).

    ``options`` go to the driver together with the URL and override what the
    URL says; the cache's own options (``namespace``, ``fail_open``) may be
    query parameters too (``redis://host/0?namespace=app1&fail_open=true``).
    """
    return _sync(_building.driver_from_url(url, options, "sync"))


def from_url_async(url: str, **options: Any) -> AsyncPevensieCache:
    """Return a new async cache whose driver is picked by the URL scheme; see :func:`from_url`."""
    return _async(_building.driver_from_url(url, options, "async"))


def from_config(config: Mapping[str, Any], *, prefix: str = "") -> PevensieCache:
    """Return a new cache from a mapping, as loaded from TOML, JSON, YAML or INI files.

    The mapping names the driver with ``driver`` (a registered name) or
    ``url``; every other key is an option of the driver, or of the cache
    (``namespace``, ``fail_open``). Values may be text (``"6379"``,
    ``"true"``, ``"2s"``): they are converted as URL query values are. With
    ``prefix``, only keys that start with it are used, the prefix removed
    (``{"cache.url": ...}`` with ``prefix="cache."``).
    """
    return _sync(_building.driver_from_config(config, prefix, "sync"))


def from_config_async(config: Mapping[str, Any], *, prefix: str = "") -> AsyncPevensieCache:
    """Return a new async cache from a mapping; see :func:`from_config`."""
    return _async(_building.driver_from_config(config, prefix, "async"))


def from_env(var: str = ENV_VAR, *, default: str | None = None, **options: Any) -> PevensieCache:
    """Return a new cache from the URL in the environment variable ``var``.

    ``default`` is used when the variable is unset or empty; without one that
    is a :class:`~pevensie_cache.ConfigError`.
    """
    return _sync(_building.driver_from_env(var, default, options, "sync"))


def from_env_async(
    var: str = ENV_VAR, *, default: str | None = None, **options: Any
) -> AsyncPevensieCache:
    """Return a new async cache from the URL in the environment variable ``var``."""
    return _async(_building.driver_from_env(var, default, options, "async"))


def _build(driver: object, options: dict[str, Any], face: _building.Face) -> _building.Built:
    if isinstance(driver, str):
        return _building.driver_from_name(driver, options, face)
    if isinstance(driver, DriverConfig):
        return _building.driver_from_config_object(driver, options, face)
    return _building.driver_from_object(driver, options, face)


def _sync(built: _building.Built) -> PevensieCache:
    return PevensieCache(built.driver, namespace=built.namespace, fail_open=built.fail_open)


def _async(built: _building.Built) -> AsyncPevensieCache:
    return AsyncPevensieCache(built.driver, namespace=built.namespace, fail_open=built.fail_open)


def drivers() -> list[DriverInfo]:
    """List every installed driver, and every plugin that failed to load, with the reason.

    Each entry says whether the driver has a native async face
    (``native_async``); one without runs in worker threads under ``new_async``.
    """
    return _get_registry().infos()


def inspector(c: PevensieCache | AsyncPevensieCache | object) -> CacheInspector:
    """Return the inspector of a cache's driver (or of a driver): TTLs, keys, server facts.

    For operator tools such as the ``pevensie-cache`` command line; the
    inspector works on a connected cache's sync face, inside its namespace if
    it has one. A driver whose plugin registered no inspector raises
    :class:`~pevensie_cache.UnsupportedOperation`.
    """
    name, found = identify_driver(c)
    if found is None:
        raise UnsupportedOperation(
            f"the {name} driver offers no inspector (TTLs, key listings, server statistics)"
        )
    namespace = getattr(c, "namespace", None)
    return found if namespace is None else NamespacedInspector(found, namespace)


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
