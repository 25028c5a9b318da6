"""Lease waiters woken by the holder's release, sync face: one subscriber connection per driver.

A caller of ``get_or_set(..., lock=True)`` that finds the key's lease taken
waits for the holder's value. The holder releases the lease with a script that
deletes the lock key only if it still holds the holder's token and then
``PUBLISH``-es the lock key on :data:`~pevensie_redis.protocol.commands.LOCK_RELEASED_CHANNEL`
(one fixed channel, the key as the message). :class:`LockReleases` is this
driver's one subscriber: a dedicated connection, opened the first time a
waiter asks for it (a cache whose waiters never wait opens none), whatever
the number of waiters; each message wakes the waiters of the lock it names.

- A waiter registers its :class:`LockWatch` before it tries the lock again, so
  a release that follows its failed attempt always reaches it.
- On a Cluster, ``PUBLISH`` reaches every node (classic pub/sub, broadcast on
  the cluster bus), so subscribing on any one node hears every release
  (``SPUBLISH`` would need Redis 7.0 and a subscription per shard). Through
  Sentinel the subscription follows the primary: a failover breaks the
  connection, and the next one goes to the new primary.
- While the subscription is down (not yet up, broken, refused by an ACL
  without the channel) waiters poll, as they do on a driver without this: the
  lease code looks again at most every 100 ms, which also covers a lease that
  expires without a release (a crashed holder).
- A silent connection is checked with ``PING`` after a heartbeat, as the near
  cache's listener does (:mod:`~pevensie_redis.listener`).

The async face's twin is :mod:`~pevensie_redis.lock_releases_async`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisPyTimeoutError

from pevensie_redis import compat
from pevensie_redis.protocol.commands import (
    LOCK_RELEASED_CHANNEL,
    SUBSCRIBE_REPLY,
    describe,
    pack,
)

__all__ = ["LockReleases", "LockWatch"]

logger = logging.getLogger("pevensie_redis.locks")


class LockWatch:
    """One waiter's watch of one lock: :meth:`wait` returns when a release of it is published."""

    def __init__(self, owner: LockReleases, lock_key: bytes) -> None:
        """Watch ``lock_key`` through ``owner`` (:meth:`LockReleases.watch` registers it)."""
        self._owner = owner
        self.lock_key = lock_key
        self._released = threading.Event()

    def wake(self) -> None:
        """Note a release (or a broken subscription: the waiter then looks again at once)."""
        self._released.set()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a release; return whether one came."""
        released = self._released.wait(timeout)
        self._released.clear()
        return released

    def close(self) -> None:
        """Stop watching."""
        self._owner._forget(self)


class LockReleases:
    """A daemon thread subscribed to the lock-release channel, waking released locks' waiters."""

    def __init__(
        self, connect: Callable[[], Any], *, heartbeat: float, retry_delay: float = 0.2
    ) -> None:
        """Subscribe on connections made by ``connect()`` (redis-py, connected), once asked."""
        self._connect = connect
        self._heartbeat = heartbeat
        self._retry_delay = retry_delay
        self._lock = threading.Lock()
        self._watchers: dict[bytes, set[LockWatch]] = {}
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._connection: Any = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.failure: BaseException | None = None
        """Why the subscription last broke, or could not be made; ``None`` while it works."""

    @property
    def subscribed(self) -> bool:
        """Whether releases reach this driver now."""
        return self._subscribed.is_set()

    def watch(self, lock_key: bytes, wait: float) -> LockWatch | None:
        """Watch ``lock_key``; ``None`` if the subscription is not up within ``wait`` seconds."""
        if self._stopping.is_set():
            return None
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._pid = os.getpid()
                self._thread, self._connection, self._watchers = None, None, {}
                self._subscribed.clear()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pevensie-lock-releases", daemon=True
                )
                self._thread.start()
        if not self._subscribed.wait(wait):
            return None
        watch = LockWatch(self, lock_key)
        with self._lock:
            self._watchers.setdefault(lock_key, set()).add(watch)
        return watch

    def stop(self) -> None:
        """Stop: close the connection, wait (bounded) for the thread, wake every waiter."""
        self._stopping.set()
        with self._lock:
            connection, thread = self._connection, self._thread
        if connection is not None:
            compat.shutdown(connection)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._wake_all()

    def _forget(self, watch: LockWatch) -> None:
        with self._lock:
            watchers = self._watchers.get(watch.lock_key)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._watchers[watch.lock_key]

    def _wake_all(self) -> None:
        with self._lock:
            watches = [watch for watchers in self._watchers.values() for watch in watchers]
        for watch in watches:
            watch.wake()

    def _run(self) -> None:
        broken = False  # logged once per break, not once per failed attempt
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as exc:  # any failure breaks the subscription (stop() included)
                self.failure = exc
                if not self._stopping.is_set():
                    log = logger.debug if broken else logger.info
                    log("lease waiters poll: the lock-release subscription is down (%s)", exc)
                    broken = True
            finally:
                self._subscribed.clear()
                with self._lock:
                    connection, self._connection = self._connection, None
                if connection is not None:
                    connection.disconnect()
                self._wake_all()  # no release reaches them now: they look again, then poll
            self._stopping.wait(self._retry_delay)

    def _listen(self) -> None:
        connection = self._connect()
        with self._lock:
            self._connection = connection
        if self._stopping.is_set():
            return
        connection.send_packed_command((pack([b"SUBSCRIBE", LOCK_RELEASED_CHANNEL]),))
        subscribed = connection.read_response()  # ["subscribe", channel, 1] (errors raise)
        if not SUBSCRIBE_REPLY(subscribed):
            raise InvalidResponse(f"SUBSCRIBE got {describe(subscribed)} in reply")
        self.failure = None
        self._subscribed.set()
        pinged = False
        while not self._stopping.is_set():
            if not connection.can_read(timeout=self._heartbeat):
                if pinged:  # the PING sent a heartbeat ago has no answer: the channel is dead
                    raise RedisPyTimeoutError(
                        f"the lock-release channel did not answer PING within {self._heartbeat:g} s"
                    )
                connection.send_packed_command((pack([b"PING"]),))
                pinged = True
                continue
            message = connection.read_response()
            pinged = False
            self._apply(message)
        raise RedisPyConnectionError("the lock-release channel was closed")

    def _apply(self, message: Any) -> None:
        if not isinstance(message, list) or len(message) < 3 or message[0] != b"message":
            return  # the PING's answer (["pong", ""])
        if message[1] == LOCK_RELEASED_CHANNEL:
            with self._lock:
                watches = list(self._watchers.get(message[2], ()))
            for watch in watches:
                watch.wake()
