"""Lease waiters woken by the holder's release: one subscriber pipe per driver.

This module is the source of the sync face too: ``lock_releases.py`` is
generated from it by ``.ci/unasync.py`` (the subscriber is then a daemon
thread rather than a task). Edit this file, then run ``nox -s generate``.

A caller of ``get_or_set(..., lock=True)`` that finds the key's lease taken
waits for the holder's value. The holder releases the lease with a script that
deletes the lock key only if it still holds the holder's token and then
``PUBLISH``-es the lock key on
:data:`~pevensie_redis.protocol.commands.LOCK_RELEASED_CHANNEL` (one fixed
channel, the key as the message). :class:`LockReleases` is a driver's one
subscriber: a pipe of its own, opened the first time a waiter asks for it (a
cache whose waiters never wait opens none), whatever the number of waiters;
each message wakes the waiters of the lock it names.

- A waiter registers its :class:`LockWatch` before it tries the lock again, so
  a release that follows its failed attempt always reaches it.
- On a Cluster, ``PUBLISH`` reaches every node (classic pub/sub, broadcast on
  the cluster bus), so subscribing on any one node hears every release
  (``SPUBLISH`` would need Redis 7.0 and a subscription per shard). Through
  Sentinel the subscription follows the primary: each new pipe goes where the
  locator says the primary is, and a failover breaks the old one.
- While the subscription is down (not yet up, broken, refused by an ACL
  without the channel) waiters poll, as they do on a driver without this: the
  lease code looks again at most every 100 ms, which also covers a lease that
  expires without a release (a crashed holder). A waiter waits (up to the
  timeout) for a subscription under way, unless the server refused the last
  attempt (an error reply: an ACL without the channel refuses it for good);
  refused attempts are repeated after a delay that doubles from 200 ms up to
  :data:`~pevensie_redis.refusals.RETRY_MAX`, where a broken connection is tried again after 200 ms.
- A silent pipe is checked with ``PING`` after a heartbeat, as the near
  cache's invalidation channel does (:mod:`~pevensie_redis.listener_async`).
- In a forked child nothing runs and the parent's pipe is forgotten (never
  closed); the child's first waiter starts a subscriber of its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisPyTimeoutError

from pevensie_cache import forks
from pevensie_redis import runtime_async
from pevensie_redis.config import RedisConfig
from pevensie_redis.endpoint import Endpoint
from pevensie_redis.near import heartbeat
from pevensie_redis.pipe_async import Pipe, open_pipe
from pevensie_redis.protocol.commands import (
    LOCK_RELEASED_CHANNEL,
    PING,
    SUBSCRIBE_REPLY,
    describe,
    pack,
)
from pevensie_redis.refusals import RETRY_MAX, is_refusal, retry_delay

__all__ = ["RETRY_MAX", "SUBSCRIBER_NAME", "LockReleases", "LockWatch", "open_lock_releases"]

SUBSCRIBER_NAME = "pevensie-lock-releases"
"""The name of the subscriber's thread (sync face) or task (async face)."""

logger = logging.getLogger("pevensie_redis.locks")


class LockWatch:
    """One waiter's watch of one lock: :meth:`wait` returns when a release of it is published."""

    def __init__(self, owner: LockReleases, lock_key: bytes) -> None:
        """Watch ``lock_key`` through ``owner`` (:meth:`LockReleases.watch` registers it)."""
        self._owner = owner
        self.lock_key = lock_key
        self._released = runtime_async.Signal()

    def wake(self) -> None:
        """Note a release (or a broken subscription: the waiter then looks again at once)."""
        self._released.set()

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a release; return whether one came."""
        released = await self._released.wait(timeout)
        self._released.clear()
        return released

    def close(self) -> None:
        """Stop watching."""
        self._owner._forget(self)


class LockReleases:
    """A subscriber to the lock-release channel, waking the waiters of each lock released."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Pipe]],
        *,
        heartbeat: float,
        retry_delay: float = 0.2,
    ) -> None:
        """Subscribe on pipes made by ``connect()``, once a waiter first asks."""
        self._connect = connect
        self._heartbeat = heartbeat
        self._retry_delay = retry_delay
        self._lock = threading.Lock()
        self._watchers: dict[bytes, set[LockWatch]] = {}
        self._subscribed = runtime_async.Signal()
        self._answered = runtime_async.Signal()
        """The server answered the last attempt at subscribing: subscribed, or refused."""
        self._refused = False
        """The server refused the last attempt (an error reply)."""
        self._task: runtime_async.Flight[None] | None = None
        self._pipe: Pipe | None = None
        self._stopping = False
        self._generation = 0
        """Counts the forks this object went through: a run of an older one stops."""
        self.failure: BaseException | None = None
        """Why the subscription last broke, or could not be made; ``None`` while it works."""
        forks.renew_after_fork(self)

    @property
    def subscribed(self) -> bool:
        """Whether releases reach this driver now."""
        return self._subscribed.is_set()

    async def watch(self, lock_key: bytes, wait: float) -> LockWatch | None:
        """Watch ``lock_key``; ``None`` while the subscription is down (the waiter polls).

        Waits (up to ``wait`` seconds) for a subscription under way; returns
        ``None`` at once when the server refused the last attempt.
        """
        if self._stopping:
            return None
        task = self._task
        if task is None or task.done():
            with self._lock:
                task = self._task
                if (task is None or task.done()) and not self._stopping:
                    self._task = runtime_async.start(self._run, SUBSCRIBER_NAME)
        if not self._subscribed.is_set() and not self._refused:
            await self._answered.wait(wait)
        if not self._subscribed.is_set():
            return None
        watch = LockWatch(self, lock_key)
        with self._lock:
            self._watchers.setdefault(lock_key, set()).add(watch)
        return watch

    async def stop(self) -> None:
        """Stop: close the pipe, wait (bounded) for the subscriber to end, wake every waiter.

        On the async face, called from another event loop than the subscriber's,
        it leaves the stopping to that loop (nothing is left to do if that loop
        is closed).
        """
        self._stopping = True
        owner = self._task.get_loop() if self._task is not None else None  # unasync: remove
        if owner is not None and owner is not asyncio.get_running_loop():  # unasync: remove
            stopping = self.stop()  # unasync: remove
            try:  # unasync: remove
                asyncio.run_coroutine_threadsafe(stopping, owner)  # unasync: remove
            except RuntimeError:  # that loop is closed  # unasync: remove
                stopping.close()  # unasync: remove
            return  # unasync: remove
        task, self._task = self._task, None
        pipe = self._pipe
        if pipe is not None:
            pipe.close()  # wakes the subscriber
        if task is not None:
            await runtime_async.finish(task, 5)
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

    async def _run(self) -> None:
        # Under gevent a run is a greenlet, which (unlike a thread) goes on in a forked
        # child: there it stops, and touches nothing the child's own run uses.
        born = self._generation
        broken = False  # logged once per break, not once per failed attempt
        refusals = 0  # attempts refused in a row
        while not self._stopping and self._generation == born:
            refused = False
            try:
                await self._listen(born)
            except Exception as exc:  # any failure breaks the subscription; cancellation stops it
                if self._generation != born:
                    break  # forked: the parent's run, gone on in the child (gevent)
                self.failure = exc
                refused = is_refusal(exc)  # the server's answer, not a fault
                if not self._stopping:
                    log = logger.debug if broken else logger.info
                    log("lease waiters poll: the lock-release subscription is down (%s)", exc)
                    broken = True
            finally:
                if self._generation == born:  # else forked: nothing here is its own
                    refusals = refusals + 1 if refused else 0
                    self._refused = refused
                    if refused:
                        self._answered.set()  # waiters poll, and none waits for the next attempt
                    else:
                        self._answered.clear()  # the next waiters wait for the next attempt
                    self._subscribed.clear()
                    pipe, self._pipe = self._pipe, None
                    if pipe is not None:
                        pipe.close()
                    self._wake_all()  # no release reaches them now: they look again, then poll
            if not self._stopping and self._generation == born:
                # A break is retried soon; an attempt the server keeps refusing, less often.
                await runtime_async.sleep(retry_delay(self._retry_delay, refusals))
        if self._generation != born:
            await runtime_async.park()  # touching nothing of the child's

    async def _listen(self, born: int) -> None:
        pipe = await self._connect()
        if self._generation != born:  # forked while connecting: not the child's to use
            pipe.forget()
            return
        self._pipe = pipe
        if self._stopping:
            return
        # Set before subscribing: the first message can come in the same read as the
        # confirmation, and a pipe with no one to take it closes on an unexpected reply.
        pipe.on_push = self._apply
        reply = await pipe.call(pack([b"SUBSCRIBE", LOCK_RELEASED_CHANNEL]))
        if isinstance(reply, Exception):
            raise reply  # not allowed (ACL channels), or not a Redis that has pub/sub
        if not SUBSCRIBE_REPLY(reply):
            raise InvalidResponse(f"SUBSCRIBE got {describe(reply)} in reply")
        self.failure = None
        self._subscribed.set()
        self._answered.set()
        while not pipe.closed and not self._stopping and self._generation == born:
            if await pipe.listen(self._heartbeat):
                continue  # a message arrived, or the pipe closed
            # A heartbeat of silence: the server must answer PING within one more.
            try:
                await pipe.call(PING, self._heartbeat)
            except RedisPyTimeoutError:
                raise RedisPyTimeoutError(
                    f"the lock-release channel did not answer PING within {self._heartbeat:g} s"
                ) from None
        raise RedisPyConnectionError(f"the lock-release channel to {pipe.endpoint.label} closed")

    def _apply(self, message: Any) -> None:
        # ["message", channel, lock key]: a pushed message (pipe_core.pushed)
        if message[1] == LOCK_RELEASED_CHANNEL:
            with self._lock:
                watches = list(self._watchers.get(message[2], ()))
            for watch in watches:
                watch.wake()

    def _forked(self) -> None:
        """In a child process: nothing runs; the child's first waiter starts a subscriber.

        The parent's pipe is forgotten, never closed (shutting its socket down
        would cut the parent's subscription too).
        """
        self._lock = threading.Lock()
        self._subscribed = runtime_async.Signal()
        self._answered = runtime_async.Signal()
        self._refused = False
        self.failure = None
        self._watchers = {}
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.forget()
        self._task = None
        self._generation += 1


def open_lock_releases(
    resolve: Callable[[], Awaitable[Endpoint]], config: RedisConfig
) -> LockReleases:
    """Return the lease waiters' subscriber; it connects when a waiter first waits.

    Each of its pipes goes to the server ``resolve()`` names then (through
    Sentinel: the primary).
    """

    async def connect() -> Pipe:
        return await open_pipe(await resolve())

    return LockReleases(connect, heartbeat=heartbeat(config.timeout_seconds))
