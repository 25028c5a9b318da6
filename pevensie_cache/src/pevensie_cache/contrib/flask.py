"""A Flask-Caching cache type over any Pevensie driver (``pip install "pevensie-cache[flask]"``).

.. code-block:: python

    app.config["CACHE_TYPE"] = "pevensie_cache.contrib.flask.PevensieCache"
    app.config["CACHE_PEVENSIE_URL"] = "redis://localhost:6379/0"  # any Pevensie URL
    app.config["CACHE_OPTIONS"] = {"resource_type": "flask"}  # other keys: driver options
    cache = Cache(app)

``@cache.cached``, ``@cache.memoize``, ``delete_memoized``, ``clear`` and the
rest of the Flask-Caching API work as with its ``RedisCache``, with
``CACHE_KEY_PREFIX`` and ``CACHE_DEFAULT_TIMEOUT`` as Flask-Caching defines
them: a timeout of ``0`` keeps a value forever, ``None`` means the default, a
negative one expires the value at once, a fraction or ``timedelta`` rounds up
to whole seconds.

Values are kept as Flask-Caching's Redis backend keeps them: integers as plain
integers (``inc``/``dec`` are atomic on the server), other objects pickled,
here as base64 text (see :mod:`pevensie_cache.contrib.values`: reading a
pickle can run code, so keep the cache server private). ``CACHE_SERIALIZER``
does not apply.

What differs from Flask-Caching's ``RedisCache``: ``clear()`` deletes this
backend's resource type (every key prefix in it), never the whole database;
retries, timeouts, Cluster, Sentinel, TLS and ``memory://`` come from the
Pevensie driver.

Fail-open: Flask-Caching's decorators already swallow (and log) a backend's
errors outside debug mode; ``app.config["CACHE_PEVENSIE_FAIL_OPEN"] = True``
(or ``fail_open`` in ``CACHE_OPTIONS``) makes every call do so, direct
``cache.get``/``cache.set`` and debug mode included: an unreachable server
reads as a miss and writes nothing, logged at WARNING (at most every 10 s) and
counted by ``instrument()``.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flask_caching.backends.base import BaseCache

from pevensie_cache.contrib.shared import SharedCache, shared_cache
from pevensie_cache.contrib.values import dumps, loads
from pevensie_cache.errors import ArgumentTypeError
from pevensie_cache.options import UnknownOptionError
from pevensie_cache.validation import check_resource_type

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["PevensieCache"]

URL_SETTING = "CACHE_PEVENSIE_URL"
"""The Flask config key of the Pevensie URL."""

FAIL_OPEN_SETTING = "CACHE_PEVENSIE_FAIL_OPEN"
"""The Flask config key of the cache's ``fail_open`` (default ``False``)."""

_OWN_OPTIONS = ("resource_type", "key_prefix", "default_timeout", "ignore_delete_many_errors")
"""The backend's own options; every other one goes to the driver (or the cache)."""

DEFAULT_RESOURCE_TYPE = "flask"
"""The resource type of a backend whose ``CACHE_OPTIONS`` name none."""

_NOW = 0
_FOREVER = None


class PevensieCache(BaseCache):
    """A Flask-Caching backend: URL from ``CACHE_PEVENSIE_URL``, options from ``CACHE_OPTIONS``."""

    def __init__(
        self,
        url: str,
        *,
        resource_type: str = DEFAULT_RESOURCE_TYPE,
        key_prefix: str = "",
        default_timeout: int | timedelta = 300,
        ignore_delete_many_errors: bool = False,
        **options: Any,
    ) -> None:
        """Configure the backend; nothing connects until first use.

        ``options`` go to the driver; ``key_prefix`` starts every key, within
        ``resource_type``.
        """
        super().__init__(default_timeout=0)  # the one argument of every Flask-Caching 2.x
        self.default_timeout = _seconds(default_timeout)
        # Flask-Caching's CACHE_IGNORE_ERRORS; a batch delete here never fails key by key.
        self.ignore_delete_many_errors = ignore_delete_many_errors
        check_resource_type(resource_type)
        if not isinstance(key_prefix, str):
            raise ArgumentTypeError(f"key_prefix must be a str, not {type(key_prefix).__name__}")
        self.resource_type = resource_type
        self.key_prefix = key_prefix
        try:
            self._shared: SharedCache = shared_cache(url, options, what=URL_SETTING)
        except UnknownOptionError as exc:
            raise exc.with_options("Flask-Caching backend", _OWN_OPTIONS) from None

    @classmethod
    def factory(
        cls, app: Flask, config: dict[str, Any], args: list[Any], kwargs: dict[str, Any]
    ) -> PevensieCache:
        """Build the backend from the Flask config (Flask-Caching calls this)."""
        if config.get(FAIL_OPEN_SETTING) is not None:
            kwargs = {"fail_open": config[FAIL_OPEN_SETTING], **kwargs}
        return cls(
            config.get(URL_SETTING),  # type: ignore[arg-type]  # checked by shared_cache
            *args,
            key_prefix=config.get("CACHE_KEY_PREFIX") or "",
            **kwargs,
        )

    def ttl(self, timeout: int | float | timedelta | None) -> int | None:
        """Return the TTL a Flask-Caching ``timeout`` means: seconds, ``None`` (forever) or 0 (now).

        ``None`` is the default timeout; ``0`` keeps the value forever.
        """
        seconds = self.default_timeout if timeout is None else _seconds(timeout)
        if seconds == 0:
            return _FOREVER
        return max(_NOW, seconds)

    def get(self, key: str) -> Any:
        """Return the value of ``key``, or ``None``."""
        text = self._shared.sync().get(self.resource_type, self.key_prefix + key, None)
        return None if text is None else loads(text)

    def get_many(self, *keys: str) -> list[Any]:
        """Return the values of ``keys`` in order (``None`` for a miss), in one batch."""
        if not keys:
            return []
        prefix = self.key_prefix
        found = self._shared.sync().get_many(self.resource_type, [prefix + key for key in keys])
        return [_loads_or_none(found.get(prefix + key)) for key in keys]

    def get_dict(self, *keys: str) -> dict[str, Any]:
        """Return ``{key: value}`` for ``keys`` (``None`` for a miss), in one batch."""
        return dict(zip(keys, self.get_many(*keys), strict=True))

    def set(self, key: str, value: Any, timeout: int | timedelta | None = None) -> bool:
        """Store ``value`` under ``key``; return ``True``."""
        text = dumps(value)
        ttl = self.ttl(timeout)
        c = self._shared.sync()
        if ttl == _NOW:
            c.delete(self.resource_type, self.key_prefix + key)
        else:
            c.set(self.resource_type, self.key_prefix + key, text, ttl)
        return True

    def add(self, key: str, value: Any, timeout: int | timedelta | None = None) -> bool:
        """Store ``value`` unless ``key`` holds one; return whether it was stored."""
        text = dumps(value)
        ttl = self.ttl(timeout)
        c = self._shared.sync()
        if ttl == _NOW:
            return c.get(self.resource_type, self.key_prefix + key, None) is None
        return c.add(self.resource_type, self.key_prefix + key, text, ttl)

    def set_many(
        self, mapping: dict[str, Any], timeout: int | timedelta | None = None
    ) -> list[Any]:
        """Store every item of ``mapping`` in one batch; return the keys stored."""
        if not mapping:
            return []
        prefix = self.key_prefix
        items = {prefix + key: dumps(value) for key, value in mapping.items()}
        ttl = self.ttl(timeout)
        c = self._shared.sync()
        if ttl == _NOW:
            c.delete_many(self.resource_type, items)
        else:
            c.set_many(self.resource_type, items, ttl)
        return list(mapping)

    def delete(self, key: str) -> bool:
        """Delete ``key``; return whether it held a value."""
        return self._shared.sync().delete(self.resource_type, self.key_prefix + key)

    def delete_many(self, *keys: str) -> list[Any]:
        """Delete ``keys`` in one batch; return them (an absent key counts as deleted)."""
        if keys:
            prefix = self.key_prefix
            self._shared.sync().delete_many(self.resource_type, [prefix + key for key in keys])
        return list(keys)

    def has(self, key: str) -> bool:
        """Return whether ``key`` holds a value."""
        return self._shared.sync().exists(self.resource_type, self.key_prefix + key)

    def clear(self) -> bool:
        """Delete every key of this backend's resource type, and nothing else."""
        self._shared.sync().clear(self.resource_type)
        return True

    def inc(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the integer under ``key`` atomically (absent: 0)."""
        return self._shared.sync().incr(self.resource_type, self.key_prefix + key, delta)

    def dec(self, key: str, delta: int = 1) -> int:
        """Subtract ``delta`` from the integer under ``key`` atomically (absent: 0)."""
        return self.inc(key, -delta)


def _seconds(timeout: int | float | timedelta) -> int:
    """Return a timeout in whole seconds, fractions rounded up."""
    if isinstance(timeout, timedelta):
        return math.ceil(timeout.total_seconds())
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ArgumentTypeError(
            f"a timeout must be a number of seconds or a timedelta, not {type(timeout).__name__}"
        )
    return math.ceil(timeout)


def _loads_or_none(text: str | None) -> Any:
    return None if text is None else loads(text)
