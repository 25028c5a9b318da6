"""The Redis driver's errors, under the core's :class:`~pevensie_cache.DriverError`.

Each failure has its own class; the redis-py exception stays reachable as
``__cause__``. Messages name the server (host and port, or socket path) and what
went wrong, never a password: they are built here from the exception's own
text, which redis-py composes from the address and the server's reply only.
"""

from __future__ import annotations

import queue
import ssl
from collections.abc import Iterable

from pevensie_cache import DriverError, DriverUnavailable
from pevensie_redis.protocol.commands import NotText, decode_text

__all__ = [
    "RedisAuthenticationError",
    "RedisConnectionError",
    "RedisDriverError",
    "RedisPermissionError",
    "RedisPoolExhausted",
    "RedisProtocolError",
    "RedisServerError",
    "RedisServerUnavailable",
    "RedisTimeoutError",
    "TrackingRefused",
    "counter_error",
    "decode_value",
    "first_error_reply",
    "map_error",
    "near_cache_refused",
    "refusal_is_final",
    "refuses_scripting",
]


class RedisDriverError(DriverError):
    """Base class of every error the Redis driver raises."""


class RedisConnectionError(RedisDriverError, DriverUnavailable):
    """The server could not be reached, or the connection broke (TLS failures included).

    A :class:`~pevensie_cache.DriverUnavailable`: ``fail_open=True`` serves it open.
    """


class RedisProtocolError(RedisConnectionError):
    """What answered is not a Redis-compatible server (its reply broke the protocol).

    A :class:`RedisConnectionError`, so code that handles unreachable servers
    handles a wrong address too.
    """


class RedisTimeoutError(RedisDriverError, DriverUnavailable):
    """Connecting or a command took longer than the configured ``timeout``.

    A :class:`~pevensie_cache.DriverUnavailable`: ``fail_open=True`` serves it open.
    """


class RedisAuthenticationError(RedisDriverError):
    """The server refused the credentials, or wants credentials that were not given."""


class RedisPoolExhausted(RedisDriverError, DriverUnavailable):
    """Every pooled connection stayed busy for ``timeout``: raise ``pool_size`` or wait less.

    A :class:`~pevensie_cache.DriverUnavailable`: ``fail_open=True`` serves it open.
    """


class RedisServerError(RedisDriverError):
    """The server answered with an error reply; ``server_message`` holds it."""

    def __init__(self, message: str, server_message: str) -> None:
        super().__init__(message)
        self.server_message = server_message
        """The error reply as the server sent it, for example ``OOM command not allowed ...``."""


class RedisPermissionError(RedisServerError, RedisAuthenticationError):
    """The server refused a command or key to this ACL user (a ``NOPERM`` error reply).

    A :class:`RedisServerError` (``server_message`` holds the ``NOPERM ...``
    reply), and a :class:`RedisAuthenticationError` too, as it was before it had
    a class of its own. The user needs the rule README's "Least privilege" shows.
    """


class RedisServerUnavailable(RedisServerError, DriverUnavailable):
    """The server answered that it cannot serve the command now, and kept answering so.

    ``CLUSTERDOWN`` (a Cluster shard without a working primary), ``TRYAGAIN``
    (a slot half-way through a migration) or ``MASTERDOWN`` (a replica that
    lost its primary): the store is down rather than the command wrong. A
    :class:`RedisServerError` (``server_message`` holds the reply) and a
    :class:`~pevensie_cache.DriverUnavailable`: ``fail_open=True`` serves it open.
    """


def map_error(exc: BaseException, action: str) -> RedisDriverError:
    """Return the driver error for a redis-py (or socket) exception raised while doing ``action``.

    ``action`` says what was attempted (``"GET"``, ``"connecting to 127.0.0.1:6379"``);
    raise the result ``from exc`` so the original stays as ``__cause__``.
    """
    from redis import exceptions as rx

    detail = str(exc) or type(exc).__name__
    if isinstance(exc, NotText):
        return RedisDriverError(f"{action}: {exc}")
    if isinstance(exc, rx.InvalidResponse):
        return RedisProtocolError(
            f"{action}: the server's reply is not the Redis protocol: is this address a "
            f"Redis-compatible server (and TLS set the same way on both sides)? ({detail})"
        )
    if isinstance(exc, rx.AuthenticationError):
        return RedisAuthenticationError(f"{action}: authentication failed: {detail}")
    if isinstance(exc, rx.NoPermissionError):
        message = _server_message(exc)
        if not message.startswith("NOPERM"):  # redis-py lines that keep no status_code
            message = f"NOPERM {message}"
        return RedisPermissionError(f"{action}: the user lacks permission: {message}", message)
    if isinstance(exc, (rx.ClusterDownError, rx.TryAgainError)):  # MasterDownError too
        message = _server_message(exc)
        return RedisServerUnavailable(
            f"{action}: the server replied with an error: {message}", message
        )
    if isinstance(exc, rx.ResponseError):
        message = _server_message(exc)
        return RedisServerError(f"{action}: the server replied with an error: {message}", message)
    if _is_pool_wait(exc):
        return RedisPoolExhausted(
            f"{action}: no pooled connection became free within the timeout "
            "(every connection stayed busy; raise pool_size or the timeout)"
        )
    if isinstance(exc, (rx.TimeoutError, TimeoutError)):
        return RedisTimeoutError(f"{action}: timed out ({detail})")
    if isinstance(exc, (rx.ConnectionError, OSError)):
        verify = _certificate_failure(exc)
        if verify is not None:
            return RedisConnectionError(
                f"{action}: TLS certificate verification failed ({verify}); "
                "check tls_ca_file, or the server's certificate and host name"
            )
        return RedisConnectionError(f"{action}: connection failed: {detail}")
    if isinstance(exc, ValueError) and "closed file" in detail:
        # A socket closed under a read (``I/O operation on closed file``): the connection broke.
        return RedisConnectionError(f"{action}: connection failed: the connection was closed")
    return RedisDriverError(f"{action}: {type(exc).__name__}: {detail}")


def _server_message(exc: BaseException) -> str:
    # redis-py strips a known error code (NOPERM, NOSCRIPT, OOM, ...) from the
    # message; put it back so the reply reads as sent.
    from pevensie_redis.protocol.error_codes import server_message

    return server_message(exc)


def _is_pool_wait(exc: BaseException) -> bool:
    from redis import exceptions as rx

    if getattr(exc, "pool_wait", False) or isinstance(exc, getattr(rx, "MaxConnectionsError", ())):
        return True
    # BlockingConnectionPool raises ConnectionError("No connection available.")
    # from inside its `except queue.Empty` when the wait for a connection times out.
    return isinstance(exc, rx.ConnectionError) and (
        isinstance(exc.__context__, queue.Empty) or str(exc) == "No connection available."
    )


def _certificate_failure(exc: BaseException) -> str | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current.verify_message or "certificate verify failed"
        current = current.__cause__ or current.__context__
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return "certificate verify failed"
    return None


def refuses_scripting(exc: BaseException) -> bool:
    """Whether an error reply means scripts are unavailable here (ACL, renamed or unknown)."""
    from redis import exceptions as rx

    if isinstance(exc, rx.NoPermissionError):
        return True
    text = str(exc).lower()
    return "unknown command" in text or "disabled" in text


class TrackingRefused(Exception):
    """The server refused a command or option the near cache's listener needs.

    Raised by the listener, turned into a ``ConfigError`` that says what to do
    by :func:`near_cache_refused`.
    """

    def __init__(self, refused: str, reply: Exception) -> None:
        """``refused`` names it: ``CLIENT TRACKING``, ``BCAST``, ``SUBSCRIBE``, ..."""
        super().__init__(f"the server refused {refused}: {_server_message(reply)}")
        self.refused = refused
        self.reply = reply


def refusal_is_final(reply: BaseException) -> bool:
    """Whether an error reply to ``CLIENT TRACKING`` says all there is to know.

    An ACL denial or an unknown command names what was refused; any other
    error (a syntax error, an option the server lacks) is worth probing with
    :func:`~pevensie_redis.protocol.commands.tracking_probes`.
    """
    from redis import exceptions as rx

    message = _server_message(reply)
    return (
        isinstance(reply, rx.NoPermissionError) or message.startswith("NOPERM") or _unknown(message)
    )


def _unknown(message: str) -> bool:
    lowered = message.lower()
    return "unknown command" in lowered or "unknown subcommand" in lowered


_SUPPORTED = "Redis 6 or newer, or Valkey"
_DROP = f"use {_SUPPORTED}, or drop near_cache"


def near_cache_refused(exc: BaseException) -> Exception | None:
    """Return the configuration error when the server refused the near cache's commands.

    The near cache needs broadcast key tracking redirected to its listening
    connection (``CLIENT TRACKING ON BCAST REDIRECT``: Redis 6 or newer, or
    Valkey) and an ACL user allowed ``CLIENT ID``, ``CLIENT TRACKING`` and
    ``SUBSCRIBE`` to ``__redis__:invalidate``. The message names what the
    server refused and what to do. Any other failure (``None`` returned) is a
    connection failure, for :func:`map_error`.
    """
    from redis import exceptions as rx

    from pevensie_cache import ConfigError

    if isinstance(exc, TrackingRefused):
        return ConfigError(_refusal(exc.refused, exc.reply))
    if not isinstance(exc, rx.ResponseError):
        return None
    return ConfigError(
        f"near_cache needs key tracking (CLIENT TRACKING and SUBSCRIBE: {_SUPPORTED}, "
        f"and an ACL user allowed both); the server said: {_server_message(exc)}"
    )


def _refusal(refused: str, reply: Exception) -> str:
    from redis import exceptions as rx

    said = _server_message(reply)
    if isinstance(reply, rx.NoPermissionError) or said.startswith("NOPERM"):
        return (
            f"near_cache needs key tracking, and the server's ACL does not allow this user "
            f"{refused} (it said: {said}); the near cache sends CLIENT ID, CLIENT TRACKING and "
            "SUBSCRIBE to the channel __redis__:invalidate: grant them "
            "(pevensie_redis.acl.acl_rule(resource_types, config) gives a rule with every "
            "command the driver sends), or drop near_cache"
        )
    if refused == "BCAST":
        return (
            "near_cache needs key tracking in broadcast mode (CLIENT TRACKING ON BCAST), and the "
            f"server refused BCAST (it said: {said}); tracking only what each connection read "
            "would leave a value read on a connection that later closed unwatched, so the near "
            f"cache is refused rather than risk serving stale values: {_DROP}"
        )
    if refused == "REDIRECT":
        return (
            "near_cache needs key tracking redirected to its listening connection "
            "(CLIENT TRACKING ... REDIRECT, as RESP2 delivers invalidations), and the server "
            f"refused REDIRECT (it said: {said}): {_DROP}"
        )
    if _unknown(said):
        return (
            f"near_cache needs key tracking, and the server does not know {refused} "
            f"(it said: {said}): it has no server-assisted client-side caching (as Garnet, "
            f"Google Memorystore or Redis before 6): {_DROP}"
        )
    if refused == "SUBSCRIBE":
        return (
            "near_cache needs key tracking, whose invalidations it receives by subscribing to "
            f"__redis__:invalidate, and the server refused SUBSCRIBE (it said: {said}): {_DROP}"
        )
    return (
        "near_cache needs key tracking in broadcast mode redirected to its listening connection "
        f"(CLIENT TRACKING ON BCAST REDIRECT), and the server refused {refused} "
        f"(it said: {said}): {_DROP}"
    )


def first_error_reply(replies: Iterable[object]) -> Exception | None:
    """Return the first error reply among ``replies``, if any.

    Error replies are redis-py exception instances: ``ResponseError`` and its
    kin, and, from the async face's reader, ``AuthenticationError`` (``NOAUTH``,
    ``WRONGPASS``), which redis-py files under connection errors.
    """
    for reply in replies:
        if isinstance(reply, Exception):
            return reply
    return None


def decode_value(value: bytes, action: str) -> str:
    """Decode a stored value read by ``action``; a value that is not UTF-8 is a driver error."""
    try:
        return decode_text(value)
    except NotText as exc:
        raise map_error(exc, action) from exc


def counter_error(exc: BaseException, action: str) -> Exception:
    """Return the error for an ``INCRBY`` error reply (not an integer, overflow: CounterError)."""
    from pevensie_cache import CounterError

    text = str(exc).lower()
    if "not an integer" in text or "overflow" in text:
        return CounterError(
            "incr met a stored value that is not a 64-bit integer, or would overflow; "
            "the value is unchanged"
        )
    return map_error(exc, action)
