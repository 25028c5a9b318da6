"""The driver's connection pool: redis-py's ``BlockingConnectionPool`` with a lean checkout.

redis-py 8's ``get_connection``/``release`` pair costs about a third of a local
GET round trip, mostly in bookkeeping for its optional OpenTelemetry metrics
and deprecation checks. This subclass keeps the pool itself (the LIFO queue of
``pool_size`` slots, lazy connection creation, fork safety, ``disconnect``)
and the checks that matter, and drops that bookkeeping:

- a caller waits at most ``timeout`` for a free slot, then gets
  :class:`PoolWaitTimeout`;
- a handed-out connection is connected; an idle one with unread data or a
  closed socket is reconnected first (the pool's health check);
- a connection made before a ``fork()`` never goes back into the child's pool.

redis-py's connection-pool metrics are therefore not recorded for this pool.
"""

from __future__ import annotations

import contextlib
import queue
from typing import Any

from redis.connection import BlockingConnectionPool
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import TimeoutError as RedisPyTimeoutError

__all__ = ["CachePool", "PoolWaitTimeout"]


class PoolWaitTimeout(RedisPyConnectionError):
    """Every pooled connection stayed in use for the pool's whole ``timeout``."""


class CachePool(BlockingConnectionPool):
    """A ``BlockingConnectionPool`` whose checkout does only what the cache needs."""

    def __init__(self, **options: Any) -> None:
        """Take the keyword arguments of ``BlockingConnectionPool`` (see ``pool_options``)."""
        super().__init__(**options)  # type: ignore[no-untyped-call]

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """Return a connected connection, waiting up to ``timeout`` for a free slot."""
        self._checkpid()
        try:
            connection = self.pool.get(True, self.timeout)
        except queue.Empty:
            raise PoolWaitTimeout(
                f"no pooled connection became free within {self.timeout} s"
            ) from None
        try:
            if connection is None:
                connection = self.make_connection()  # type: ignore[no-untyped-call]
            if connection._sock is None:
                connection.connect()
            else:
                _check_idle(connection)
        except BaseException:
            # Give the slot back, whatever state the connection is in.
            if connection is None:
                self.pool.put_nowait(None)
            else:
                connection.disconnect()
                self.release(connection)
            raise
        return connection

    def release(self, connection: Any) -> None:
        """Put ``connection`` back; one from before a ``fork()`` is closed and replaced."""
        self._checkpid()
        if connection.pid != self.pid:
            connection.disconnect()
            connection = None
        # Full: released twice, or after the pool was reset; drop it.
        with contextlib.suppress(queue.Full):
            self.pool.put_nowait(connection)


def _check_idle(connection: Any) -> None:
    """Reconnect an idle connection that has unread data or whose socket was closed."""
    try:
        if not connection.can_read():
            return
    except (RedisPyConnectionError, RedisPyTimeoutError, OSError):
        pass
    connection.disconnect()
    connection.connect()
    if connection.can_read():
        raise RedisPyConnectionError("a fresh connection has unexpected data waiting")
