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
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pevensie_cache.driver import AsyncCacheDriver, CacheDriver, DriverConfig, is_async_driver
from pevensie_cache.errors import (
    ArgumentTypeError,
    ConfigError,
    DriverError,
    DriverNotFound,
    PevensieCacheError,
    raised_by_signal_handler,
)
from pevensie_cache.options import Option, OptionSet, UnknownOptionError
from pevensie_cache.plugins import get_registry
from pevensie_cache.registry import DriverSpec
from pevensie_cache.threaded import ThreadedAsyncDriver
from pevensie_cache.urls import mask_url, take_query_options, url_scheme

__all__ = [
    "CACHE_OPTIONS",
    "ENV_VAR",
    "Built",
    "Face",
    "check_driver_object",
    "driver_from_config",
    "driver_from_config_object",
    "driver_from_env",
    "driver_from_name",
    "driver_from_object",
    "driver_from_url",
]

ENV_VAR = "PEVENSIE_CACHE_URL"
"""The environment variable ``cache.from_env`` reads."""

Face = Literal["sync", "async"]
"""Which face of the cache a driver is built for."""

_D = TypeVar("_D")


def _namespace_rule(namespace: str) -> str:
    if ":" in namespace:
        raise ConfigError(
            f"namespace must not contain ':' (got {namespace!r}); "
            "keys are stored as <namespace>:<resource_type>:<key>"
        )
    return namespace


CACHE_OPTIONS = OptionSet(
    [
        Option(
            name="namespace",
            kind="str",
            optional=True,
            query=True,
            validate=_namespace_rule,
            doc="Every key of the cache is stored as namespace:resource_type:key, and clear "
            "stays inside it; the rules of a resource type apply.",
        ),
        Option(
            name="fail_open",
            kind="bool",
            query=True,
            doc="Serve the store's unavailability (refused or broken connections, timeouts, "
            "a full pool) as misses and no-ops, logged and counted; bad input still raises.",
        ),
    ],
    owner="cache",
)
"""The options of the cache itself, accepted with every driver's (``?namespace=app1``)."""


@dataclass(frozen=True)
class Built:
    """A driver, and the cache options it is to be wrapped with."""

    driver: Any
    namespace: str | None = None
    fail_open: bool = False


def driver_from_name(name: str, options: dict[str, Any], face: Face) -> Built:
    """Build the registered driver ``name`` with ``options``, for ``face``."""
    if not isinstance(name, str):
        raise ConfigError(
            f"driver must be a driver name, a driver or a configuration, not {type(name).__name__}"
        )
    if "://" in name:
        raise ConfigError(
            f"cache.new() takes a driver name, not a URL ({mask_url(name)!r}): "
            f"use cache.from_url({mask_url(name)!r})"
        )
    driver_options, cache_options = _split(options)
    if "url" in driver_options:
        raise ConfigError(
            f"driver={name!r} with url=...: a URL names its driver by its scheme; "
            "use cache.from_url(url, **options) instead"
        )
    spec = get_registry().lookup(name)
    if face == "async":
        if spec.async_factory is not None:
            driver: Any = _checked_async(spec, _call(spec, spec.async_factory, driver_options))
        else:
            driver = ThreadedAsyncDriver(_call(spec, spec.factory, driver_options))
    else:
        driver = _checked_sync(spec, _call(spec, spec.factory, driver_options))
    return Built(driver, **cache_options)


def driver_from_url(url: str, options: dict[str, Any], face: Face) -> Built:
    """Build the driver that the scheme of ``url`` names, with ``options`` over the URL's.

    The cache's own options (:data:`CACHE_OPTIONS`) are taken out of the URL's
    query and of ``options``; the driver sees the rest.
    """
    scheme = url_scheme(url)
    driver_url, from_query = take_query_options(url, CACHE_OPTIONS.names)
    cache_options: dict[str, Any] = {}
    if from_query:
        CACHE_OPTIONS.convert_query(from_query, cache_options, shown=mask_url(url))
    driver_options, given = _split(options)
    cache_options.update(given)
    spec = get_registry().lookup_scheme(scheme)
    if spec.url_factory is None:  # the registry requires one for every scheme
        raise DriverError(f"driver {spec.name!r} registered {scheme}:// without a url_factory")
    if face == "async":
        if spec.async_url_factory is not None:
            driver: Any = _checked_async(
                spec, _call(spec, spec.async_url_factory, driver_options, driver_url)
            )
        else:
            driver = ThreadedAsyncDriver(_call(spec, spec.url_factory, driver_options, driver_url))
    else:
        driver = _checked_sync(spec, _call(spec, spec.url_factory, driver_options, driver_url))
    return Built(driver, **cache_options)


def driver_from_config(config: Mapping[str, Any], prefix: str, face: Face) -> Built:
    """Build the driver a mapping names with ``driver`` or ``url`` (after ``prefix``)."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"a cache configuration must be a mapping, not {type(config).__name__}")
    if not isinstance(prefix, str):
        raise ArgumentTypeError(f"prefix must be a str, not {type(prefix).__name__}")
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


def driver_from_env(var: str, default: str | None, options: dict[str, Any], face: Face) -> Built:
    """Build the driver the URL in the environment variable ``var`` (or ``default``) names."""
    if not isinstance(var, str) or not var:
        shown = "empty" if isinstance(var, str) else type(var).__name__
        raise ArgumentTypeError(f"var must be the name of an environment variable, not {shown}")
    if default is not None and not isinstance(default, str):
        raise ArgumentTypeError(
            f"default must be a URL (a str) or None, not {type(default).__name__}"
        )
    value = os.environ.get(var)
    if not value:
        if default:
            return driver_from_url(default, options, face)
        builder = "cache.from_env_async" if face == "async" else "cache.from_env"
        state = "is not set" if value is None else "is set but empty"
        raise ConfigError(
            f"the environment variable {var} {state}: set it to a cache URL "
            "(redis://localhost:6379/0, memory://), or give a URL for when it is not: "
            f"{builder}(default='memory://')"
        )
    try:
        return driver_from_url(value, options, face)
    except (ConfigError, DriverNotFound) as exc:
        # The URL is not in the caller's code: say where it came from.
        exc.args = (f"{var}: {exc}", *exc.args[1:])
        raise


def driver_from_object(driver: object, options: dict[str, Any], face: Face) -> Built:
    """Take a driver object handed to ``cache.new`` / ``cache.new_async``, with cache options."""
    driver_options, cache_options = _split(options)
    check_driver_object(driver, driver_options, face)
    return Built(driver, **cache_options)


def driver_from_config_object(config: DriverConfig, options: dict[str, Any], face: Face) -> Built:
    """Build the driver a configuration object describes (``RedisConfig(...)``).

    The driver registered as ``config.driver_name`` is built by its factory
    (for ``face``) called with the configuration as its one argument.
    """
    driver_options, cache_options = _split(options)
    if driver_options:
        raise ConfigError(
            f"a {type(config).__name__} holds the driver's options: set them on it "
            f"(got: {', '.join(sorted(driver_options))}); only the cache's own "
            f"({', '.join(CACHE_OPTIONS.names)}) go beside it"
        )
    spec = get_registry().lookup(str(config.driver_name))
    if face == "async":
        if spec.async_factory is not None:
            driver: Any = _checked_async(spec, _call(spec, spec.async_factory, {}, config))
        else:
            driver = ThreadedAsyncDriver(_call(spec, spec.factory, {}, config))
    else:
        driver = _checked_sync(spec, _call(spec, spec.factory, {}, config))
    return Built(driver, **cache_options)


def _split(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``options`` into the driver's and the cache's own (converted)."""
    driver_options = {name: value for name, value in options.items() if name not in CACHE_OPTIONS}
    cache_options = CACHE_OPTIONS.convert(
        {name: value for name, value in options.items() if name in CACHE_OPTIONS}
    )
    return driver_options, cache_options


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


def _call(
    spec: DriverSpec, factory: Callable[..., _D], options: dict[str, Any], *args: object
) -> _D:
    try:
        return factory(*args, **options)
    except UnknownOptionError as exc:
        raise exc.with_options("cache", CACHE_OPTIONS.names) from None
    except PevensieCacheError:
        raise
    except TypeError as exc:
        raise ConfigError(
            f"driver {spec.name!r} rejected its options ({', '.join(sorted(options)) or 'none'})"
            f": {exc}; the cache's own options are {', '.join(CACHE_OPTIONS.names)}"
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
