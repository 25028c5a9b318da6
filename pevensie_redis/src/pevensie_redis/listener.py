"""The near cache's invalidation channel, sync face: a thread on a dedicated connection.

The server tells a client which keys it read have changed (``CLIENT
TRACKING``). With RESP2, which both Valkey 8.1 and Redis 6/7 speak, those
messages go to another connection, named by ``REDIRECT <client id>``, that
has subscribed to ``__redis__:invalidate``. :class:`InvalidationListener`
keeps that connection: it drops the keys each message names from the
:class:`~pevensie_redis.near.NearStore`, and empties the whole store for a
``FLUSHDB``/``FLUSHALL`` (a message without keys).

It also watches the connection: with no message for ``heartbeat`` seconds it
sends ``PING`` and expects the answer within the timeout. When the connection
breaks (killed, server restarted, failover, network timeout), the store is
emptied and disabled: reads go to the server until the listener has connected
again, under a new client id, and data connections have re-enabled tracking
towards it. The async face's twin is :mod:`~pevensie_redis.listener_async`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pevensie_redis.near import NearStore

__all__ = ["INVALIDATION_CHANNEL", "InvalidationListener"]

INVALIDATION_CHANNEL = b"__redis__:invalidate"
"""The channel the server publishes invalidations on (RESP2 with REDIRECT)."""

logger = logging.getLogger("pevensie_redis.near_cache")


class InvalidationListener:
    """A daemon thread that applies the server's invalidations to a :class:`NearStore`."""

    def __init__(
        self,
        connect: Callable[[], Any],
        store: NearStore,
        *,
        heartbeat: float,
        retry_delay: float = 0.2,
    ) -> None:
        """Listen on connections made by ``connect()`` (a redis-py ``Connection``, connected)."""
        self._connect = connect
        self._store = store
        self._heartbeat = heartbeat
        self._retry_delay = retry_delay
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._connection: Any = None
        self._client_id: int | None = None
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        """Why the channel last broke (for statistics and logs), or ``None``."""

    @property
    def client_id(self) -> int | None:
        """The id data connections redirect their invalidations to, while listening."""
        return self._client_id

    def start(self, wait: float) -> bool:
        """Start the thread; return whether it was listening within ``wait`` seconds."""
        self._thread = threading.Thread(
            target=self._run, name="pevensie-near-cache-invalidations", daemon=True
        )
        self._thread.start()
        return self._ready.wait(wait)

    def stop(self) -> None:
        """Stop listening: close the connection and wait (bounded) for the thread."""
        self._stopping.set()
        with self._lock:
            connection = self._connection
        if connection is not None:
            connection.disconnect()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as exc:  # any failure breaks the channel; stop() closes it under us
                self.last_error = f"{type(exc).__name__}: {exc}"
                if not self._stopping.is_set():
                    logger.warning("near cache: the invalidation channel broke (%s)", exc)
            finally:
                # Whatever broke, no entry may outlive the channel that kept it coherent.
                self._client_id = None
                self._store.flush(disable=True)
                with self._lock:
                    connection, self._connection = self._connection, None
                if connection is not None:
                    connection.disconnect()
            self._stopping.wait(self._retry_delay)

    def _listen(self) -> None:
        connection = self._connect()
        with self._lock:
            self._connection = connection
        if self._stopping.is_set():
            return
        connection.send_command("CLIENT", "ID")
        client_id = int(connection.read_response())
        connection.send_command("SUBSCRIBE", INVALIDATION_CHANNEL)
        connection.read_response()  # ["subscribe", channel, 1]
        self._client_id = client_id
        self._store.enable()
        self._ready.set()
        pinged = False
        while not self._stopping.is_set():
            if not connection.can_read(timeout=self._heartbeat):
                if pinged:  # the PING sent a heartbeat ago has no answer: the channel is dead
                    raise TimeoutError("the invalidation channel did not answer PING")
                connection.send_command("PING")
                pinged = True
                continue
            message = connection.read_response()
            pinged = False
            self._apply(message)

    def _apply(self, message: Any) -> None:
        if not isinstance(message, list) or len(message) < 3 or message[0] != b"message":
            return  # the PING's answer (["pong", ""]) or a subscription confirmation
        keys = message[2]
        self._store.invalidate(None if keys is None else list(keys))
