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
from pevensie_cache.driver import (
    AsyncBatchCacheDriver,
    AsyncCacheDriver,
    BatchCacheDriver,
    CacheDriver,
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
    LockTimeout,
    NotConnected,
    PevensieCacheError,
    UnsupportedOperation,
    WrongEventLoop,
)
from pevensie_cache.facade import PevensieCache
from pevensie_cache.facade_async import AsyncPevensieCache
from pevensie_cache.hookspecs import hookimpl
from pevensie_cache.observability import instrument, uninstrument
from pevensie_cache.registry import DriverInfo, Register
from pevensie_cache.threaded import ThreadedAsyncDriver
from pevensie_cache.urls import mask_url

__all__ = [
    "AlreadyConnected",
    "ArgumentError",
    "ArgumentTypeError",
    "ArgumentValueError",
    "AsyncBatchCacheDriver",
    "AsyncCacheDriver",
    "AsyncPevensieCache",
    "BatchCacheDriver",
    "CacheDriver",
    "CacheMiss",
    "CodecError",
    "ConfigError",
    "CounterError",
    "DriverConflict",
    "DriverError",
    "DriverInfo",
    "DriverNotFound",
    "LockTimeout",
    "NotConnected",
    "PevensieCache",
    "PevensieCacheError",
    "Register",
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
