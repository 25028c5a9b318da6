"""The facade: build a cache from a driver, a name, a URL or a mapping, and use it.

>>> from pevensie_cache import cache
>>> c = cache.new(driver="memory").connect()
>>> c.set("user", "42", "Ada", ttl_seconds=60)
>>> c.get("user", "42")
'Ada'
>>> c.disconnect()

Values are strings addressed by ``(resource_type, key)``. Every argument is
checked here, once, before any driver is called, so a rejected call changes
nothing whatever the driver. Cached data may be lost at any time: a cache is
not a database.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, overload

from pevensie_cache.driver import BatchCacheDriver, CacheDriver
from pevensie_cache.errors import (
    AlreadyConnected,
    CacheMiss,
    ConfigError,
    DriverError,
    NotConnected,
    PevensieCacheError,
)
from pevensie_cache.plugins import get_registry
from pevensie_cache.registry import DriverInfo, DriverSpec
from pevensie_cache.urls import mask_url, url_scheme
from pevensie_cache.validation import (
    check_address,
    check_items,
    check_keys,
    check_resource_type,
    check_ttl,
    check_value,
)

__all__ = [
    "ENV_VAR",
    "PevensieCache",
    "drivers",
    "from_config",
    "from_env",
    "from_url",
    "new",
]

ENV_VAR = "PEVENSIE_CACHE_URL"
"""The environment variable :func:`from_env` reads."""

_T = TypeVar("_T")
_Self = TypeVar("_Self", bound="PevensieCache")


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


class PevensieCache:
    """A cache over one driver. Build it with :func:`new`, :func:`from_url` or friends.

    A new cache is not connected: call :meth:`connect` (or use it as a context
    manager) before any operation. It is safe to share between threads when
    its driver is (both built-in drivers are).
    """

    __slots__ = ("_delete_many", "_driver", "_get_many", "_live", "_lock", "_set_many")

    def __init__(self, driver: CacheDriver) -> None:
        """Wrap ``driver``; most code calls :func:`new` instead."""
        if not isinstance(driver, CacheDriver):
            raise ConfigError(
                f"{type(driver).__name__} is not a cache driver: it needs connect, "
                "disconnect, set, get and delete methods"
            )
        self._driver = driver
        self._live: CacheDriver | None = None
        self._lock = threading.Lock()
        if isinstance(driver, BatchCacheDriver):
            self._get_many = driver.get_many
            self._set_many = driver.set_many
            self._delete_many = driver.delete_many
        else:
            self._get_many = self._get_each
            self._set_many = self._set_each
            self._delete_many = self._delete_each

    @property
    def driver(self) -> CacheDriver:
        """The driver this cache delegates to."""
        return self._driver

    @property
    def connected(self) -> bool:
        """Whether :meth:`connect` succeeded and :meth:`disconnect` has not been called since."""
        return self._live is not None

    def __repr__(self) -> str:
        state = "connected" if self._live is not None else "disconnected"
        return f"<PevensieCache {self._driver!r} {state}>"

    # -- lifecycle -------------------------------------------------------------------

    def connect(self: _Self) -> _Self:
        """Connect the driver and return this cache, so ``cache.new(...).connect()`` reads well.

        Raises :class:`AlreadyConnected` when already connected, and a
        :class:`DriverError` when the driver cannot connect.
        """
        with self._lock:
            if self._live is not None:
                raise AlreadyConnected("the cache is already connected")
            _call_driver(self._driver.connect)
            self._live = self._driver
        return self

    def disconnect(self) -> None:
        """Disconnect the driver; raises :class:`NotConnected` when not connected."""
        with self._lock:
            if self._live is None:
                raise NotConnected("the cache is not connected")
            self._live = None
            _call_driver(self._driver.disconnect)

    def __enter__(self: _Self) -> _Self:
        return self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self.disconnect()

    # -- single operations (the hot path: one check, one driver call) ----------------

    def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None = None) -> None:
        """Store ``value`` under ``(resource_type, key)``.

        ``ttl_seconds=None`` stores it without expiry and clears any earlier TTL;
        an ``int`` >= 1 makes it expire after that many seconds.
        """
        driver = self._live
        if driver is None:
            raise NotConnected("set() on a cache that is not connected")
        # The common case in one expression; anything unusual takes the full checks,
        # which raise the precise error (or accept, e.g. non-ASCII text).
        if not (
            _plain_address(resource_type, key)
            and type(value) is str
            and value.isascii()
            and (ttl_seconds is None or (type(ttl_seconds) is int and ttl_seconds > 0))
        ):
            _check_address(resource_type, key)
            check_value(value)
            check_ttl(ttl_seconds)
        try:
            driver.set(resource_type, key, value, ttl_seconds)
        except PevensieCacheError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    @overload
    def get(self, resource_type: str, key: str) -> str: ...

    @overload
    def get(self, resource_type: str, key: str, default: _T) -> str | _T: ...

    def get(self, resource_type: str, key: str, default: Any = _MISSING) -> Any:
        """Return the value under ``(resource_type, key)``.

        A miss (absent or expired) raises :class:`CacheMiss`, or returns
        ``default`` when one is given.
        """
        driver = self._live
        if driver is None:
            raise NotConnected("get() on a cache that is not connected")
        if not _plain_address(resource_type, key):
            _check_address(resource_type, key)
        try:
            value = driver.get(resource_type, key)
        except PevensieCacheError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc
        if value is None:
            if default is _MISSING:
                raise CacheMiss(resource_type, key)
            return default
        return value

    def delete(self, resource_type: str, key: str) -> None:
        """Remove the value under ``(resource_type, key)``; an absent key is fine."""
        driver = self._live
        if driver is None:
            raise NotConnected("delete() on a cache that is not connected")
        if not _plain_address(resource_type, key):
            _check_address(resource_type, key)
        try:
            driver.delete(resource_type, key)
        except PevensieCacheError:
            raise
        except Exception as exc:
            raise _wrap(exc) from exc

    # -- batch operations --------------------------------------------------------------

    def get_many(self, resource_type: str, keys: Iterable[str]) -> dict[str, str]:
        """Return the values found for ``keys``; misses are absent from the result."""
        self._require_connected("get_many")
        check_resource_type(resource_type)
        checked = check_keys(keys)
        if not checked:
            return {}
        return _call_driver(self._get_many, resource_type, checked)

    def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None = None
    ) -> None:
        """Store every ``key -> value`` of ``items``, each as :meth:`set` would.

        One invalid key or value rejects the whole batch and nothing is written.
        """
        self._require_connected("set_many")
        check_resource_type(resource_type)
        checked = check_items(items)
        check_ttl(ttl_seconds)
        if checked:
            _call_driver(self._set_many, resource_type, checked, ttl_seconds)

    def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """Remove every key of ``keys``; absent keys are fine."""
        self._require_connected("delete_many")
        check_resource_type(resource_type)
        checked = check_keys(keys)
        if checked:
            _call_driver(self._delete_many, resource_type, checked)

    def _require_connected(self, operation: str) -> None:
        if self._live is None:
            raise NotConnected(f"{operation}() on a cache that is not connected")

    # Fallbacks for drivers without native batch operations.

    def _get_each(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for key in keys:
            value = self._driver.get(resource_type, key)
            if value is not None:
                found[key] = value
        return found

    def _set_each(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        for key, value in items.items():
            self._driver.set(resource_type, key, value, ttl_seconds)

    def _delete_each(self, resource_type: str, keys: Iterable[str]) -> None:
        for key in keys:
            self._driver.delete(resource_type, key)


_KNOWN_RESOURCE_TYPES: set[str] = set()
"""Resource types that passed the full checks; an application uses few, so few are kept."""
_KNOWN_RESOURCE_TYPES_MAX = 1024


def _plain_address(resource_type: object, key: object) -> bool:
    """Whether an address is plainly valid: a known resource type and a non-empty ASCII key.

    The hot path's check; a ``False`` sends the caller to :func:`_check_address`,
    which raises the precise error or accepts the unusual but valid case.
    """
    return (
        type(resource_type) is str
        and resource_type in _KNOWN_RESOURCE_TYPES
        and type(key) is str
        and key != ""
        and key.isascii()
    )


def _check_address(resource_type: object, key: object) -> None:
    """Run the full address checks, and remember a resource type that passes as known."""
    check_address(resource_type, key)
    if type(resource_type) is str and len(_KNOWN_RESOURCE_TYPES) < _KNOWN_RESOURCE_TYPES_MAX:
        _KNOWN_RESOURCE_TYPES.add(resource_type)


def _wrap(exc: Exception) -> DriverError:
    # The message names only the type: a foreign exception's text may hold a secret.
    # The exception itself stays reachable as __cause__.
    return DriverError(f"the cache driver failed with {type(exc).__name__}")


def _call_driver(function: Callable[..., _T], *args: Any) -> _T:
    try:
        return function(*args)
    except PevensieCacheError:
        raise
    except Exception as exc:
        raise _wrap(exc) from exc


# -- building caches -----------------------------------------------------------------


def new(driver: CacheDriver | str = "memory", **options: Any) -> PevensieCache:
    """Return a new, not yet connected cache.

    ``driver`` is a driver object, or the registered name of a driver (see
    :func:`drivers`); with a name, ``options`` go to that driver's factory.
    The default is the built-in in-memory driver.
    """
    if isinstance(driver, str):
        spec = get_registry().lookup(driver)
        return PevensieCache(_build(spec, spec.factory, options))
    if options:
        raise ConfigError(
            "options are only accepted with a driver name; configure the driver "
            f"object itself instead (got: {', '.join(sorted(options))})"
        )
    return PevensieCache(driver)


def from_url(url: str, **options: Any) -> PevensieCache:
    """Return a new cache whose driver is picked by the URL scheme (``memory://``, ...).

    ``options`` go to the driver together with the URL and override what the
    URL says.
    """
    spec = get_registry().lookup_scheme(url_scheme(url))
    assert spec.url_factory is not None  # the registry requires one for every scheme
    return PevensieCache(_build(spec, spec.url_factory, options, url))


def from_config(config: Mapping[str, Any], *, prefix: str = "") -> PevensieCache:
    """Return a new cache from a mapping, as loaded from TOML, JSON or YAML.

    The mapping names the driver with ``driver`` (a registered name) or
    ``url``; every other key is an option of the driver. With ``prefix``, only
    keys that start with it are used, the prefix removed (``{"cache.url": ...}``
    with ``prefix="cache."``).
    """
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
        return from_url(url, **options)
    if not isinstance(name, str):
        raise ConfigError(f"{prefix}driver must be a str, not {type(name).__name__}")
    return new(name, **options)


def from_env(var: str = ENV_VAR, *, default: str | None = None, **options: Any) -> PevensieCache:
    """Return a new cache from the URL in the environment variable ``var``.

    ``default`` is used when the variable is unset or empty; without one that is
    a :class:`ConfigError`.
    """
    url = os.environ.get(var) or default
    if not url:
        raise ConfigError(f"the environment variable {var} is not set")
    return from_url(url, **options)


def drivers() -> list[DriverInfo]:
    """List every installed driver, and every plugin that failed to load, with the reason."""
    return get_registry().infos()


def _build(
    spec: DriverSpec,
    factory: Callable[..., CacheDriver],
    options: dict[str, Any],
    *args: str,
) -> CacheDriver:
    try:
        driver = factory(*args, **options)
    except PevensieCacheError:
        raise
    except TypeError as exc:
        raise ConfigError(
            f"driver {spec.name!r} rejected its options ({', '.join(sorted(options)) or 'none'})"
            f": {exc}"
        ) from exc
    except Exception as exc:
        raise DriverError(
            f"driver {spec.name!r} ({spec.provider.describe()}) failed to build: "
            f"{type(exc).__name__}"
        ) from exc
    if not isinstance(driver, CacheDriver):
        raise DriverError(
            f"driver {spec.name!r} ({spec.provider.describe()}) built a "
            f"{type(driver).__name__}, which is not a cache driver"
        )
    return driver
