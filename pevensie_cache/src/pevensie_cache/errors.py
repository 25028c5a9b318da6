"""The error hierarchy of Pevensie Cache: every error it raises derives from one base.

Drivers raise subclasses of :class:`DriverError` for their own failures and keep
the client library's exception as ``__cause__``. Argument errors are also
``ValueError`` or ``TypeError`` so that code written against the standard
exceptions keeps working.
"""

from __future__ import annotations

__all__ = [
    "AlreadyConnected",
    "ArgumentError",
    "ArgumentTypeError",
    "ArgumentValueError",
    "CacheMiss",
    "CodecError",
    "ConfigError",
    "CounterError",
    "DriverConflict",
    "DriverError",
    "DriverNotFound",
    "DriverUnavailable",
    "LockNotHeld",
    "LockTimeout",
    "NotConnected",
    "PevensieCacheError",
    "UnsupportedOperation",
    "WrongEventLoop",
    "driver_failure",
]


class PevensieCacheError(Exception):
    """Base class of every error raised by Pevensie Cache and its drivers."""


class AlreadyConnected(PevensieCacheError):
    """``connect()`` was called on a cache that is already connected."""


class NotConnected(PevensieCacheError):
    """An operation, or ``disconnect()``, was called on a cache that is not connected."""


class CacheMiss(PevensieCacheError, KeyError):
    """``get`` found no value for ``(resource_type, key)``: absent or expired."""

    def __init__(self, resource_type: str, key: str) -> None:
        super().__init__(resource_type, key)
        self.resource_type = resource_type
        self.key = key

    def __str__(self) -> str:
        return f"no cached value for resource type {self.resource_type!r}, key {self.key!r}"


class DriverNotFound(PevensieCacheError, LookupError):
    """No installed driver has the requested name or URL scheme.

    The message lists the drivers that are installed and any plugin that failed
    to load, with the reason.
    """


class DriverConflict(PevensieCacheError, LookupError):
    """Two plugins registered the same driver name or URL scheme.

    Raised when the ambiguous name is used; the message names both distributions.
    """


class DriverError(PevensieCacheError):
    """A driver's own failure (connection, timeout, server error, ...).

    The exception of the underlying client library, when there is one, is kept
    as ``__cause__``.
    """


class DriverUnavailable(DriverError):
    """The store could not be reached in time: refused or broken connection, timeout, full pool.

    The failures ``fail_open=True`` turns into misses and no-ops. A driver
    raises a subclass of it for them (the Redis driver's
    ``RedisConnectionError``, ``RedisTimeoutError`` and ``RedisPoolExhausted``
    are); any other failure, and every argument error, still raises.
    """


class WrongEventLoop(PevensieCacheError, RuntimeError):
    """An async cache was used from another event loop than the one it connected on.

    Connections belong to one event loop; connect a cache in each loop (or
    thread running a loop) that uses it.
    """


class UnsupportedOperation(PevensieCacheError, NotImplementedError):
    """The driver does not implement an optional operation (``add``, ``incr``, ``clear``, ...).

    The message names the operation and the driver. The facade never emulates
    an atomic operation with several racy calls.
    """


class CounterError(PevensieCacheError, ValueError):
    """``incr`` met a stored value that is not a 64-bit integer, or the result would overflow.

    The stored value is left unchanged.
    """


class CodecError(PevensieCacheError, ValueError):
    """A stored value could not be decoded by the resource's codec.

    The message names the resource type and key, never the value.
    """

    def __init__(self, message: str, resource_type: str, key: str) -> None:
        super().__init__(message)
        self.resource_type = resource_type
        self.key = key


class LockTimeout(PevensieCacheError, TimeoutError):
    """A lock was not taken within its wait bound.

    ``cache.lock(...)`` waited ``wait_seconds`` while another holder kept the
    lock, or ``get_or_set(..., lock=True)`` waited its whole ``lock_wait`` for
    another holder's value.
    """


class LockNotHeld(PevensieCacheError, RuntimeError):
    """``extend()`` was called on a lock this holder no longer holds.

    Its lease ran out (another holder may have taken the lock since), or it was
    released.
    """


class ArgumentError(PevensieCacheError):
    """An argument broke the input rules; nothing was changed."""


class ArgumentValueError(ArgumentError, ValueError):
    """An argument has the right type but a value the rules reject."""


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument has a type the rules reject (for example ``bytes`` for a value)."""


class ConfigError(ArgumentValueError):
    """A driver configuration, URL, mapping or option is invalid."""


def driver_failure(exc: Exception) -> DriverError:
    """Return the :class:`DriverError` to raise ``from exc`` for a driver's foreign exception.

    The message names only the exception's type: a foreign exception's text may
    hold a secret. The exception itself stays reachable as ``__cause__``.
    """
    return DriverError(f"the cache driver failed with {type(exc).__name__}")
