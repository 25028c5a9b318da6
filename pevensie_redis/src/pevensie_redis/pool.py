"""The sync Cluster driver's node pools: redis-py's ``BlockingConnectionPool``, lean and fair.

Only the sync Cluster face (:mod:`~pevensie_redis.cluster_io`) still uses
these pools, until its I/O moves onto the channels (:mod:`~pevensie_redis.channel`)
that the single-server and Sentinel drivers use on both faces.

redis-py's ``get_connection``/``release`` pair costs about a third of a local
GET round trip, mostly in bookkeeping for its optional OpenTelemetry metrics
and deprecation checks. :class:`CachePool` keeps the pool itself (the LIFO
queue of ``pool_size`` slots, lazy connection creation, fork safety) and the
checks that matter, and adds what the cache needs:

- **fair waiting**: a caller waits at most ``timeout`` for a free slot, then
  gets :class:`PoolWaitTimeout`; a released connection goes to the caller that
  has waited longest, so under contention no caller starves while others
  barge in ahead of it;
- **health**: a handed-out connection is connected; an idle one with unread
  data or a closed socket is reconnected first;
- **ownership**: a connection the pool no longer owns (made before a
  ``fork()``, or, in a Sentinel pool, still pointing at a former primary: the
  pool's ``owns_connection``) is closed when it comes back, never reused;
- **no connection is closed under its user**: when redis-py asks the pool to
  drop its connections (a Sentinel failover), idle
  connections are dropped at once and connections in use are closed when they
  come back, never while another thread reads from them.

redis-py's connection-pool metrics are not recorded for these pools.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from typing import Any

from redis.backoff import ExponentialBackoff
from redis.connection import (
    BlockingConnectionPool,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import TimeoutError as RedisPyTimeoutError
from redis.retry import Retry

from pevensie_redis import compat
from pevensie_redis.config import RedisConfig

__all__ = [
    "HEALTH_CHECK_INTERVAL",
    "CachePool",
    "PoolWaitTimeout",
    "pool_options",
]

HEALTH_CHECK_INTERVAL = 30
"""Seconds a pooled connection may sit idle before it PINGs the server before its next command."""


class PoolWaitTimeout(RedisPyConnectionError):
    """Every pooled connection stayed in use for the pool's whole ``timeout``."""

    pool_wait = True
    """Marks the error for :func:`~pevensie_redis.errors.map_error` (a pool wait, not a fault)."""


class _Waiter:
    """A caller waiting for a connection: woken with one handed to it directly."""

    __slots__ = ("connection", "event", "handed")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.handed = False
        self.connection: Any = None


class CachePool(BlockingConnectionPool):
    """A ``BlockingConnectionPool`` whose checkout does only what the cache needs, fairly."""

    def __init__(self, **options: Any) -> None:
        """Take the keyword arguments of ``BlockingConnectionPool`` (see :func:`pool_options`)."""
        options["connection_class"] = compat.connection_class(
            options.get("connection_class", Connection)
        )
        super().__init__(**options)  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        # Our own: redis-py 6.3 to 7.3 show every connection keyword, the password included.
        options = self.connection_kwargs
        where = options.get("path") or f"{options.get('host')}:{options.get('port')}"
        return (
            f"<{type(self).__module__}.{type(self).__name__}"
            f"({where}, db={options.get('db', 0)}, max_connections={self.max_connections})>"
        )

    def reset(self) -> None:
        """Start empty (at creation and in a forked child): slots, waiters, the drop epoch."""
        super().reset()  # type: ignore[no-untyped-call]
        self._handoff = threading.Lock()
        self._waiters: deque[_Waiter] = deque()
        self._epoch = 0

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """Return a connected connection, waiting up to ``timeout`` for a free slot."""
        compat.check_fork(self)
        with self._handoff:
            try:
                connection = compat.take_free(self)
                waiter = None
            except queue.Empty:
                waiter = _Waiter()
                self._waiters.append(waiter)
        if waiter is not None:
            connection = self._wait(waiter)
        try:
            if connection is None:
                connection = self.make_connection()  # type: ignore[no-untyped-call]
                compat.set_epoch(connection, self._epoch)
            if not compat.is_connected(connection):
                compat.set_epoch(connection, self._epoch)
                compat.connect(connection)
            elif compat.epoch(connection) != self._epoch:
                # The pool was told to drop its connections while this one was idle.
                connection.disconnect()
                compat.set_epoch(connection, self._epoch)
                compat.connect(connection)
            else:
                _check_idle(connection)
        except BaseException:
            # Give the slot back, whatever state the connection is in.
            if connection is None:
                self._put(None)
            else:
                connection.disconnect()
                self.release(connection)
            raise
        return connection

    def _wait(self, waiter: _Waiter) -> Any:
        waiter.event.wait(self.timeout)
        with self._handoff:
            if waiter.handed:
                return waiter.connection
            self._waiters.remove(waiter)
        raise PoolWaitTimeout(f"no pooled connection became free within {self.timeout} s")

    def release(self, connection: Any) -> None:
        """Put ``connection`` back, closed first if the pool no longer owns it or dropped it."""
        compat.check_fork(self)
        if not self.owns_connection(connection):
            # Made before a fork, or (Sentinel) connected to a former primary.
            connection.disconnect()
            connection = None
        elif compat.epoch(connection) != self._epoch:
            connection.disconnect()
        self._put(connection)

    def _put(self, connection: Any) -> None:
        with self._handoff:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.connection = connection
                waiter.handed = True
                waiter.event.set()
                return
            # Full: released twice, or after the pool was reset; drop it.
            with contextlib.suppress(queue.Full):
                compat.give_back(self, connection)

    def disconnect(self, inuse_connections: bool = True) -> None:
        """Drop the connections: idle ones now, those in use when they come back.

        Nothing is closed while a caller still uses it. Called by
        :meth:`close` and by redis-py itself after a topology change.
        """
        compat.check_fork(self)
        with self._handoff:
            self._epoch += 1
            # Closed while the lock keeps them in the queue: once released, another
            # thread could take one, reconnect it and be reading from it.
            for connection in compat.idle_connections(self):
                connection.disconnect()

    def disconnect_free_connections(self, *args: Any, **kwargs: Any) -> None:
        """Drop the idle connections (redis-py 7 and newer call it after a topology change)."""
        self.disconnect(inuse_connections=False)

    def close(self) -> None:
        """Close the pool: idle connections now, connections in use as they come back."""
        self.disconnect()


def _check_idle(connection: Any) -> None:
    """Reconnect an idle connection that has unread data or whose socket was closed."""
    try:
        if not connection.can_read():
            return
    except (RedisPyConnectionError, RedisPyTimeoutError, OSError, ValueError):
        pass
    connection.disconnect()
    compat.connect(connection)
    if connection.can_read():
        raise RedisPyConnectionError("a fresh connection has unexpected data waiting")


def pool_options(config: RedisConfig) -> dict[str, Any]:
    """Return the keyword arguments of :class:`CachePool` for ``config``."""
    seconds = config.timeout_seconds
    options: dict[str, Any] = {
        "max_connections": config.pool_size,
        "timeout": seconds,
        "db": config.db,
        "username": config.username,
        "password": config.password,
        "socket_timeout": seconds,
        "socket_connect_timeout": seconds,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": Retry(ExponentialBackoff(), config.retries),
        "retry_on_error": [RedisPyConnectionError, RedisPyTimeoutError],
        "client_name": config.client_name,
        "decode_responses": False,
        # RESP2: every command we send has the same reply in both protocols, and RESP2
        # spares each new connection the HELLO and maintenance-notification handshakes
        # redis-py 8 sends under RESP3, and works with servers older than Redis 6.
        "protocol": 2,
    }
    if config.unix_socket_path is not None:
        options["connection_class"] = UnixDomainSocketConnection
        options["path"] = config.unix_socket_path
        return options
    options["host"] = config.host
    options["port"] = config.port
    options["socket_keepalive"] = True
    if not config.tls:
        options["connection_class"] = Connection
        return options
    options["connection_class"] = SSLConnection
    options["ssl_ca_certs"] = config.tls_ca_file
    options["ssl_certfile"] = config.tls_cert_file
    options["ssl_keyfile"] = config.tls_key_file
    options["ssl_cert_reqs"] = "required" if config.tls_verify else "none"
    options["ssl_check_hostname"] = config.tls_verify
    return options
