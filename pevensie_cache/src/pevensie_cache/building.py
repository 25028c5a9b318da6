"""Building a driver from a name, a URL or a mapping, for either face of the cache.

:mod:`pevensie_cache.cache` calls these; the sync and async constructors
(``cache.new`` and ``cache.new_async``, ...) differ only in the face they ask
for. A registered driver's async face is its ``async_factory``; a driver
registered without one is run in worker threads
(:class:`~pevensie_cache.threaded.ThreadedAsyncDriver`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from pevensie_cache.driver import AsyncCacheDriver, CacheDriver, is_async_driver
from pevensie_cache.errors import (
    ConfigError,
    DriverError,
    DriverNotFound,
    PevensieCacheError,
    raised_by_signal_handler,
)
from pevensie_cache.plugins import get_registry
from pevensie_cache.registry import DriverSpec
from pevensie_cache.threaded import ThreadedAsyncDriver
from pevensie_cache.urls import mask_url, url_scheme

__all__ = [
    "ENV_VAR",
    "Face",
    "check_driver_object",
    "driver_from_config",
    "driver_from_env",
    "driver_from_name",
    "driver_from_url",
]

ENV_VAR = "PEVENSIE_CACHE_URL"
"""The environment variable ``cache.from_env`` reads."""

Face = Literal["sync", "async"]
"""Which face of the cache a driver is built for."""

_D = TypeVar("_D")


def driver_from_name(name: str, options: dict[str, Any], face: Face) -> Any:
    """Build the registered driver ``name`` with ``options``, for ``face``."""
    spec = get_registry().lookup(name)
    if face == "async":
        if spec.async_factory is not None:
            return _checked_async(spec, _call(spec, spec.async_factory, options))
        return ThreadedAsyncDriver(_call(spec, spec.factory, options))
    return _checked_sync(spec, _call(spec, spec.factory, options))


def driver_from_url(url: str, options: dict[str, Any], face: Face) -> Any:
    """Build the driver that the scheme of ``url`` names, with ``options`` over the URL's."""
    spec = get_registry().lookup_scheme(url_scheme(url))
    url_factory = spec.url_factory
    if url_factory is None:  # the registry refuses schemes without one; a hand-made spec
        raise DriverNotFound(f"the driver {spec.name!r} cannot be built from a URL")
    if face == "async":
        if spec.async_url_factory is not None:
            return _checked_async(spec, _call(spec, spec.async_url_factory, options, url))
        return ThreadedAsyncDriver(_call(spec, url_factory, options, url))
    return _checked_sync(spec, _call(spec, url_factory, options, url))


def driver_from_config(config: Mapping[str, Any], prefix: str, face: Face) -> Any:
    """Build the driver a mapping names with ``driver`` or ``url`` (after ``prefix``)."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"a cache configuration must be a mapping, not {type(config).__name__}")
    options = {
        str(name)[len(prefix) :]: value
        for name, value in config.items()
        if str(name).startswith(prefix)
    }
    url = options.pop("url", None)
    name = options.pop("driver", None)
    if url is None and name is None:
        raise ConfigError(f"a cache configuration needs {prefix}driver or {prefix}url")
    if url is not None:
        if name is not None:
            registry = get_registry()
            if registry.lookup(str(name)) is not registry.lookup_scheme(url_scheme(url)):
                raise ConfigError(
                    f"{prefix}driver={name!r} does not match the scheme of {prefix}url "
                    f"{mask_url(str(url))!r}"
                )
        return driver_from_url(url, options, face)
    if not isinstance(name, str):
        raise ConfigError(f"{prefix}driver must be a str, not {type(name).__name__}")
    return driver_from_name(name, options, face)


def driver_from_env(var: str, default: str | None, options: dict[str, Any], face: Face) -> Any:
    """Build the driver the URL in the environment variable ``var`` (or ``default``) names."""
    url = os.environ.get(var) or default
    if not url:
        raise ConfigError(f"the environment variable {var} is not set")
    return driver_from_url(url, options, face)


def check_driver_object(driver: object, options: dict[str, Any], face: Face) -> None:
    """Check a driver object handed to ``cache.new`` / ``cache.new_async`` directly."""
    if options:
        raise ConfigError(
            "options are only accepted with a driver name; configure the driver "
            f"object itself instead (got: {', '.join(sorted(options))})"
        )
    native = is_async_driver(driver)
    if face == "async" and not native:
        if isinstance(driver, CacheDriver):
            raise ConfigError(
                f"{type(driver).__name__} is a sync driver: pass it to cache.new(), or to "
                "cache.new_async() as ThreadedAsyncDriver(driver) to run it in worker threads"
            )
        raise ConfigError(f"{type(driver).__name__} is not an async cache driver")
    if face == "sync" and (native or not isinstance(driver, CacheDriver)):
        what = "an async driver: pass it to cache.new_async()" if native else "not a cache driver"
        raise ConfigError(
            f"{type(driver).__name__} is {what}"
            + ("" if native else ": it needs connect, disconnect, set, get and delete methods")
        )


def _call(spec: DriverSpec, factory: Callable[..., _D], options: dict[str, Any], *args: str) -> _D:
    try:
        return factory(*args, **options)
    except PevensieCacheError:
        raise
    except TypeError as exc:
        raise ConfigError(
            f"driver {spec.name!r} rejected its options ({', '.join(sorted(options)) or 'none'})"
            f": {exc}"
        ) from exc
    except Exception as exc:
        if raised_by_signal_handler(exc):
            raise  # not the driver's: the caller's own, unchanged
        raise DriverError(
            f"driver {spec.name!r} ({spec.provider.describe()}) failed to build: "
            f"{type(exc).__name__}"
        ) from exc


def _checked_sync(spec: DriverSpec, driver: object) -> CacheDriver:
    if is_async_driver(driver) or not isinstance(driver, CacheDriver):
        raise DriverError(
            f"driver {spec.name!r} ({spec.provider.describe()}) built a "
            f"{type(driver).__name__}, which is not a sync cache driver"
        )
    return driver


def _checked_async(spec: DriverSpec, driver: object) -> AsyncCacheDriver:
    if not is_async_driver(driver):
        raise DriverError(
            f"driver {spec.name!r} ({spec.provider.describe()}) built a "
            f"{type(driver).__name__} as its async face, which is not an async cache driver"
        )
    return driver  # type: ignore[return-value]
