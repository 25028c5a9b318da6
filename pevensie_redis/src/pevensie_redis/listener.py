"""The near cache's invalidation channel, sync face: a thread on a dedicated connection.

The server tells a client which keys have changed (``CLIENT TRACKING``). The
listener asks for it in broadcast mode, redirected to itself: with RESP2, which
both Valkey 8.1 and Redis 6/7 speak, the messages then arrive on its own
connection once it has subscribed to ``__redis__:invalidate``, naming every key
changed on the server (by a write, an expiry, an eviction). Nothing is tracked
per data connection, so a data connection that dies, is killed or reconnects
leaves no key unwatched. :class:`InvalidationListener` keeps that connection:
it drops the keys each message names from the
:class:`~pevensie_redis.near.NearStore`, and empties the whole store for a
``FLUSHDB``/``FLUSHALL`` (a message without keys).

It also watches the connection: with no message for ``heartbeat`` seconds it
sends ``PING``, and gives the connection up when no answer comes within one
more heartbeat. When the connection breaks (closed, killed, server restarted,
failover, network timeout), the store is emptied and disabled at once: reads go
to the server until the listener is listening again. In a forked child the
store starts disabled and the next near-cache read starts a listener of the
child's own. The async face's twin is :mod:`~pevensie_redis.listener_async`.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisPyTimeoutError

from pevensie_redis import compat
from pevensie_redis.errors import TrackingRefused, refusal_is_final
from pevensie_redis.near import NearStore
from pevensie_redis.protocol.commands import (
    CLIENT_ID_REPLY,
    INVALIDATION_CHANNEL,
    OK_REPLY,
    SUBSCRIBE_REPLY,
    describe,
    pack,
    pack_tracking,
    tracking_probes,
)

__all__ = ["InvalidationListener"]

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
        self._attempted = threading.Event()
        self._lock = threading.Lock()
        self._connection: Any = None
        self._thread: threading.Thread | None = None
        self.server: str | None = None
        """The server (``host:port`` or socket path) listened to, while listening."""
        self.failure: BaseException | None = None
        """Why the channel last broke, or could not be set up; ``None`` while it works."""
        _LISTENERS.add(self)

    def start(self, wait: float) -> bool:
        """Start the thread; return whether it is listening after its first attempt.

        Waits at most ``wait`` seconds for that attempt; when it fails,
        :attr:`failure` says why (and the thread keeps trying until stopped).
        """
        with self._lock:
            self._start_thread()
        self._attempted.wait(wait)
        return self.server is not None

    def ensure_running(self) -> None:
        """Start the thread again in a forked child (the parent's thread was not forked)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stopping.is_set():
                    self._start_thread()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="pevensie-near-cache-invalidations", daemon=True
        )
        self._thread.start()

    def _forked(self) -> None:
        """In a child process: nothing runs; the next near-cache read starts a thread here.

        The parent's connection is left alone (shutting its socket down would
        cut the parent's channel too).
        """
        stopped = self._stopping.is_set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        if stopped:  # the parent had closed this cache: it stays closed
            self._stopping.set()
        self._attempted = threading.Event()
        self._connection = None
        self._thread = None
        self.server = None

    def stop(self) -> None:
        """Stop listening: close the connection and wait (bounded) for the thread."""
        self._stopping.set()
        self._interrupt()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def moved(self) -> None:
        """Listen again, from scratch: a read ran on another server than this one listens to.

        The store is emptied and disabled at once (that read is not kept), and
        the connection is closed under the thread, which connects again to the
        server the configuration names now (through Sentinel: the primary).
        """
        self._store.flush(disable=True)
        self._interrupt()

    def _interrupt(self) -> None:
        """Shut the connection's socket: the thread's next read fails, and it reconnects."""
        with self._lock:
            connection = self._connection
        if connection is not None:
            compat.shutdown(connection)

    def _run(self) -> None:
        broken = False  # logged once per break, not once per failed attempt
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as exc:  # any failure breaks the channel (stop() included)
                self.failure = exc
                if not self._stopping.is_set():
                    log = logger.debug if broken else logger.warning
                    log("near cache: the invalidation channel is down (%s)", exc)
                    broken = True
            finally:
                # Whatever broke, no entry may outlive the channel that kept it coherent.
                self.server = None
                self._store.flush(disable=True)
                with self._lock:
                    connection, self._connection = self._connection, None
                if connection is not None:
                    connection.disconnect()
                self._attempted.set()
            self._stopping.wait(self._retry_delay)

    def _listen(self) -> None:
        connection = self._connect()
        with self._lock:
            self._connection = connection
        if self._stopping.is_set():
            return
        client_id = _ask(connection, pack([b"CLIENT", b"ID"]), "CLIENT ID")
        if not CLIENT_ID_REPLY(client_id):
            raise InvalidResponse(f"CLIENT ID got {describe(client_id)} in reply")
        # Tracking first, then the subscription: a refused tracking is probed on this
        # connection, which a subscription would restrict to (un)subscribing.
        try:
            tracking = _ask(connection, pack_tracking(client_id), "CLIENT TRACKING")
        except TrackingRefused as refused:
            raise _pinpoint(connection, client_id, refused) from None
        if not OK_REPLY(tracking):
            raise InvalidResponse(f"CLIENT TRACKING got {describe(tracking)} in reply")
        subscribed = _ask(connection, pack([b"SUBSCRIBE", INVALIDATION_CHANNEL]), "SUBSCRIBE")
        if not SUBSCRIBE_REPLY(subscribed):
            raise InvalidResponse(f"SUBSCRIBE got {describe(subscribed)} in reply")
        self.server = compat.server_of(connection)
        self.failure = None
        self._store.enable()
        if self._attempted.is_set():
            logger.info("near cache: listening for invalidations again")
        self._attempted.set()
        pinged = False
        while not self._stopping.is_set():
            if not connection.can_read(timeout=self._heartbeat):
                if pinged:  # the PING sent a heartbeat ago has no answer: the channel is dead
                    raise RedisPyTimeoutError(
                        f"the invalidation channel did not answer PING within {self._heartbeat:g} s"
                    )
                connection.send_packed_command((pack([b"PING"]),))
                pinged = True
                continue
            message = connection.read_response()
            pinged = False
            self._apply(message)
        raise RedisPyConnectionError("the near cache was closed")

    def _apply(self, message: Any) -> None:
        if not isinstance(message, list) or len(message) < 3 or message[0] != b"message":
            return  # the PING's answer (["pong", ""]) or a subscription confirmation
        keys = message[2]
        self._store.invalidate(None if keys is None else list(keys))


def _ask(connection: Any, command: bytes, refused: str) -> Any:
    """Send ``command`` and return its reply; an error reply is a :class:`TrackingRefused`."""
    connection.send_packed_command((command,))
    try:
        return connection.read_response()
    except ResponseError as exc:
        raise TrackingRefused(refused, exc) from exc


def _pinpoint(connection: Any, client_id: int, refused: TrackingRefused) -> TrackingRefused:
    """Return what the server refused of ``CLIENT TRACKING ON BCAST REDIRECT``.

    Tracking without ``BCAST``, then without ``REDIRECT``, is tried on the
    same connection (closed after); the first one accepted names the option.
    """
    if not refusal_is_final(refused.reply):
        for option, probe in tracking_probes(client_id):
            try:
                _ask(connection, probe, option)
            except TrackingRefused:
                continue
            return TrackingRefused(option, refused.reply)
    return refused


_LISTENERS: weakref.WeakSet[InvalidationListener] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for listener in list(_LISTENERS):
        listener._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
