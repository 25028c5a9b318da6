"""Pevensie Cache: a small, driver-based string cache.

>>> from pevensie_cache import cache
>>> with cache.new(driver="memory") as c:
...     c.set("session", "abc", "data", ttl_seconds=300)
...     c.get("session", "abc")
'data'

Drivers are plugins found through the ``pevensie.drivers`` entry-point group;
plugin authors mark their hook implementations with :data:`hookimpl`.
"""

from __future__ import annotations

from pevensie_cache import cache
from pevensie_cache.codecs import Codec
from pevensie_cache.driver import (
    AsyncBatchCacheDriver,
    AsyncCacheDriver,
    BatchCacheDriver,
    CacheDriver,
    DriverConfig,
)
from pevensie_cache.errors import (
    AlreadyConnected,
    ArgumentError,
    ArgumentTypeError,
    ArgumentValueError,
    CacheMiss,
    CodecError,
    ConfigError,
    CounterError,
    DriverConflict,
    DriverError,
    DriverNotFound,
    DriverUnavailable,
    LockNotHeld,
    LockTimeout,
    NotConnected,
    PevensieCacheError,
    UnsupportedOperation,
    WrongEventLoop,
)
from pevensie_cache.facade import PevensieCache
from pevensie_cache.facade_async import AsyncPevensieCache
from pevensie_cache.hookspecs import hookimpl
from pevensie_cache.locks import CacheLock
from pevensie_cache.locks_async import AsyncCacheLock
from pevensie_cache.observability import instrument, uninstrument
from pevensie_cache.registry import DriverInfo, Register
from pevensie_cache.resource import CachedFunction, Resource
from pevensie_cache.resource_async import AsyncCachedFunction, AsyncResource
from pevensie_cache.threaded import ThreadedAsyncDriver
from pevensie_cache.urls import mask_url

__all__ = [
    "AlreadyConnected",
    "ArgumentError",
    "ArgumentTypeError",
    "ArgumentValueError",
    "AsyncBatchCacheDriver",
    "AsyncCacheDriver",
    "AsyncCacheLock",
    "AsyncCachedFunction",
    "AsyncPevensieCache",
    "AsyncResource",
    "BatchCacheDriver",
    "CacheDriver",
    "CacheLock",
    "CacheMiss",
    "CachedFunction",
    "Codec",
    "CodecError",
    "ConfigError",
    "CounterError",
    "DriverConfig",
    "DriverConflict",
    "DriverError",
    "DriverInfo",
    "DriverNotFound",
    "DriverUnavailable",
    "LockNotHeld",
    "LockTimeout",
    "NotConnected",
    "PevensieCache",
    "PevensieCacheError",
    "Register",
    "Resource",
    "ThreadedAsyncDriver",
    "UnsupportedOperation",
    "WrongEventLoop",
    "cache",
    "hookimpl",
    "instrument",
    "mask_url",
    "uninstrument",
]

__version__ = "0.1.0"


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
