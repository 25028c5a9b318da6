"""The error hierarchy of Pevensie Cache: every error it raises derives from one base.

Drivers raise subclasses of :class:`DriverError` for their own failures and keep
the client library's exception as ``__cause__``. Argument errors are also
``ValueError`` or ``TypeError`` so that code written against the standard
exceptions keeps working.

What the facade wraps, and what it never touches:

- exceptions that are not ``Exception`` subclasses (``KeyboardInterrupt``,
  ``SystemExit``, ``asyncio.CancelledError``, ``gevent.Timeout``) are never caught;
- Pevensie's own errors (a driver's :class:`DriverError`, :class:`CacheMiss`, ...)
  reach the caller as raised;
- an exception raised by a Python signal handler (Celery's
  ``SoftTimeLimitExceeded``, a ``SIGALRM`` deadline) lands in whatever code runs
  at that moment, often inside a driver: it is not the driver's, and reaches the
  caller unchanged (see :func:`raised_by_signal_handler`);
- any other exception out of a driver is the driver's own failure (a client
  library's error it did not translate, or its bug): the caller gets a
  :class:`DriverError` with that exception as ``__cause__`` (see :func:`driver_failure`).
"""

from __future__ import annotations

import functools
import signal
from types import CodeType

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
    "called_from_its_own_loader",
    "driver_failure",
    "interrupted_its_caller",
    "raised_by_signal_handler",
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
    """Return the :class:`DriverError` to raise ``from exc`` for a driver's own failure.

    For an ``Exception`` out of a driver that is neither a Pevensie error nor
    :func:`raised_by_signal_handler` (those reach the caller unchanged). The
    message names only the exception's type: its text may hold a secret. The
    exception itself stays reachable as ``__cause__``.
    """
    return DriverError(f"the cache driver failed with {type(exc).__name__}")


def raised_by_signal_handler(exc: BaseException) -> bool:
    """Return whether ``exc`` was raised by a Python signal handler installed now.

    A handler (``signal.signal(signum, handler)``) runs in the main thread,
    between two bytecodes of whatever code runs there, so its exception seems to
    come from that code; but the handler's own frame is in the exception's
    traceback, which is how it is recognised (whatever thread or greenlet
    asks). Called only on the failure path: it asks ``signal.getsignal`` about
    every signal, about 0.1 ms.
    """
    handlers = _handler_code()
    if not handlers:
        return False
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in handlers:
            return True
        tb = tb.tb_next
    return False


def waited_for_a_load(key: object, wait: float) -> LockTimeout:
    """Return the error of a ``get_or_set`` that waited ``wait`` s for another caller's load.

    ``key``: the single flight's key, ``(resource_type, key)``.
    """
    if isinstance(key, tuple) and len(key) == 2:
        what = f"resource type {key[0]!r}, key {key[1]!r}"
    else:
        what = repr(key)
    return LockTimeout(
        f"get_or_set waited {wait:g} s (lock_wait) for the value of {what}, "
        "loaded by another caller in this process"
    )


def called_from_its_own_loader(key: object) -> ArgumentValueError:
    """Return the error of a ``get_or_set`` for ``key`` from inside its own load (a wait for ever).

    ``key``: the single flight's key, ``(resource_type, key)``.
    """
    return ArgumentValueError(
        f"get_or_set for {key!r} was called again from inside its own loader, which "
        "would wait for itself for ever: load that value directly there"
    )


def interrupted_its_caller(exc: BaseException) -> bool:
    """Return whether ``exc`` interrupted the code it was raised in rather than came from it.

    Not an ``Exception`` (``KeyboardInterrupt``, ``SystemExit``, ``gevent.Timeout``,
    ``GreenletExit``), or raised by a signal handler (:func:`raised_by_signal_handler`):
    meant for the caller it landed in, never to be handed to others as their outcome.
    """
    return not isinstance(exc, Exception) or raised_by_signal_handler(exc)


def _handler_code() -> set[CodeType]:
    """Return the code objects of the Python-level signal handlers installed now."""
    found: set[CodeType] = set()
    for signum in _signal_numbers():
        try:
            handler = signal.getsignal(signum)
        except (ValueError, OSError):  # a number the platform lists but does not handle
            continue
        code = _code_of(handler)
        if code is not None:
            found.add(code)
    return found


@functools.cache
def _signal_numbers() -> tuple[int, ...]:
    """Return the signals of this platform (asked once: the question costs a quarter ms)."""
    return tuple(sorted(int(signum) for signum in signal.valid_signals()))


def _code_of(handler: object, depth: int = 0) -> CodeType | None:
    """Return the code a handler runs: a function's, a bound method's, a partial's, a callable's."""
    if depth > 3 or handler is None or isinstance(handler, int):  # SIG_DFL, SIG_IGN
        return None
    code = getattr(handler, "__code__", None)
    if isinstance(code, CodeType):
        return code
    inner = getattr(handler, "__func__", None) or getattr(handler, "func", None)
    if inner is not None:
        return _code_of(inner, depth + 1)
    for klass in type(handler).__mro__:  # an object whose class defines __call__
        call = klass.__dict__.get("__call__")
        if call is not None:
            return _code_of(call, depth + 1)
    return None
