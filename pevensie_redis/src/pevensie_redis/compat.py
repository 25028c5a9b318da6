"""Every use of redis-py's internals, in one place, with what each relies on.

Nothing of the drivers uses it any more: the single-server, Sentinel and
Cluster modes have connections (and, on a Cluster, a slot map and router) of
their own on both faces and use nothing of redis-py but its exception classes.
What is left serves :mod:`~pevensie_redis.pool` alone; both go.

The supported range is redis-py 5.0 to 8.x (``redis>=5.0,<9``). Each entry
below names what it relies on and where releases differ; every entry was
checked against 5.0.0, 5.3.1, 6.0.0, 6.4.0, 7.0.0, 7.4.1, 8.0.0 and 8.1.0,
each with and without hiredis, by ``nox -s compat`` (which runs the driver's
single-server, Cluster, Sentinel, TLS, Unix-socket and reliability tests on
each of them).

Connections:

- ``Connection._sock``: the socket, ``None`` while disconnected (all releases).
- ``Connection.retry``: the connection's own ``Retry``. :func:`connect_once`
  swaps it for one connect attempt; :func:`connect` runs the attempts under
  it (all releases). Releases differ in what their ``connect()`` retries:
  before 7.2 only a TCP connect that timed out (a refused one raises a raw
  ``OSError``, which is not among the retried errors, and a failed handshake
  is not retried), while 7.2 and newer retry connect and handshake together.
  :func:`connect` gives every release the newer behaviour.
- ``Connection.on_connect()``, ``health_check_interval``,
  ``next_health_check``: redis-py 5's handshake sends ``CLIENT SETINFO``,
  ``CLIENT SETNAME`` and ``SELECT`` with a health check, which PINGs a
  connection whose check is due (a new one always is); when the PING fails,
  the health check's retry reconnects inside the PING and so handshakes and
  health-checks again: against a stalled server that recursion never ends.
  From 6.0 on, a reconnection made inside a command handshakes without health
  checks, which ends it. :func:`connection_class` gives redis-py 5 a
  handshake without health checks (its ``on_connect`` with
  ``health_check_interval`` at 0, then the next check scheduled as a
  handshake reply would, on 5's clock, ``time.time()``).

Pools (:class:`~pevensie_redis.pool.CachePool` is a ``BlockingConnectionPool``):

- ``ConnectionPool._checkpid()``, ``pid`` and ``reset()``: the fork check,
  which calls ``reset()`` in a child process; ``reset()`` also runs from
  ``__init__`` (all releases).
- ``BlockingConnectionPool.pool``: its LIFO queue of ``max_connections``
  slots, each a connection or ``None`` for one not made yet, rebuilt by
  ``reset()`` (all releases; 8.1's ``reset()`` and ``__del__`` read its
  ``queue`` too).
- ``disconnect(inuse_connections=...)``: how redis-py asks a pool to drop its
  connections (all releases).

Attributes this module stores on redis-py objects carry a ``_pevensie_`` prefix.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from redis.backoff import NoBackoff
from redis.connection import Connection
from redis.retry import Retry

__all__ = [
    "check_fork",
    "connect",
    "connect_once",
    "connection_class",
    "epoch",
    "give_back",
    "idle_connections",
    "is_connected",
    "set_epoch",
    "take_free",
]

_ONE_ATTEMPT = Retry(NoBackoff(), 0)

# redis-py 6.0 added on_connect_check_health() (a handshake without health checks).
_HANDSHAKE_CHECKS_HEALTH = not hasattr(Connection, "on_connect_check_health")


# -- connections ---------------------------------------------------------------------


def is_connected(connection: Any) -> bool:
    """Return whether ``connection`` has an open socket (``Connection._sock``)."""
    return connection._sock is not None


def connect_once(connection: Any) -> None:
    """Open ``connection`` with one connect attempt, if it is not open.

    The connection's own ``retry`` would retry the TCP connect inside each of
    the driver's retries, so one call could cost ``(retries + 1) ** 2``
    timeouts against a server that stops accepting. Only the calling thread
    holds the connection, so swapping its ``retry`` for the connect is safe.
    """
    if connection._sock is not None:
        return
    saved = connection.retry
    connection.retry = _ONE_ATTEMPT
    try:
        connection.connect()
    finally:
        connection.retry = saved


def connect(connection: Any) -> None:
    """Open ``connection`` if it is not open, retrying connect and handshake as its ``retry`` says.

    What redis-py 7.2 and newer do in ``connect()``, on every release: each
    attempt is :func:`connect_once`, and a failed one (refused, timed out,
    broken handshake) is retried with the connection's backoff.
    """
    if connection._sock is not None:
        return
    connection.retry.call_with_retry(
        lambda: connect_once(connection), lambda _error: connection.disconnect()
    )


class _HandshakeWithoutHealthCheck:
    """Mixin for redis-py 5's connection classes: the handshake sends no health-check PING."""

    health_check_interval: int
    next_health_check: float

    def on_connect(self) -> None:
        interval = self.health_check_interval
        self.health_check_interval = 0
        try:
            super().on_connect()  # type: ignore[misc]
        finally:
            self.health_check_interval = interval
        if interval:
            self.next_health_check = time.time() + interval


@functools.cache
def _without_handshake_health_check(cls: type) -> type:
    # Same name, so redis-py's reprs and messages read as before.
    return type(cls.__name__, (_HandshakeWithoutHealthCheck, cls), {"__module__": cls.__module__})


def connection_class(cls: Any) -> Any:
    """Return the connection class a pool should make for ``cls``.

    ``cls`` itself on redis-py 6.0 and newer; on redis-py 5, a subclass whose
    handshake does not health-check (see the module docstring).
    """
    if not _HANDSHAKE_CHECKS_HEALTH or issubclass(cls, _HandshakeWithoutHealthCheck):
        return cls
    return _without_handshake_health_check(cls)


def epoch(connection: Any) -> int:
    """Return the pool epoch ``connection`` was connected in (see ``CachePool.disconnect``)."""
    return int(getattr(connection, "_pevensie_epoch", 0))


def set_epoch(connection: Any, value: int) -> None:
    """Record the pool epoch ``connection`` is connected in."""
    connection._pevensie_epoch = value


# -- pools ---------------------------------------------------------------------------


def check_fork(pool: Any) -> None:
    """Reset ``pool`` if this process is a fork of the one that made it (``_checkpid``)."""
    pool._checkpid()


def take_free(pool: Any) -> Any:
    """Take a free slot of ``pool`` without waiting: a connection, or ``None`` for one not made.

    Raises ``queue.Empty`` when every slot is taken.
    """
    return pool.pool.get_nowait()


def give_back(pool: Any, connection: Any) -> None:
    """Put a slot (a connection, or ``None``) back into ``pool``; ``queue.Full`` if it is full."""
    pool.pool.put_nowait(connection)


def idle_connections(pool: Any) -> list[Any]:
    """Return the connections sitting idle in ``pool`` (a snapshot; slots stay where they are)."""
    return [connection for connection in pool.pool.queue if connection is not None]
