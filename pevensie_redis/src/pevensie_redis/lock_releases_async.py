"""Lease waiters woken by the holder's release, async face: one subscriber pipe per driver.

The twin of :mod:`~pevensie_redis.lock_releases` (read it for the design):
the subscription runs in a task on a pipe of its own, opened the first time a
waiter asks for it; the pipe's pushed messages wake the waiters of the lock
they name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisPyTimeoutError

from pevensie_redis.pipe import Pipe
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
        self._released = asyncio.Event()

    def wake(self) -> None:
        """Note a release (or a broken subscription: the waiter then looks again at once)."""
        self._released.set()

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a release; return whether one came."""
        released = asyncio.ensure_future(self._released.wait())
        try:  # not wait_for: it can lose the caller's cancellation (Python < 3.12)
            done, _ = await asyncio.wait({released}, timeout=timeout)
        finally:
            released.cancel()
            self._released.clear()
        return bool(done)

    def close(self) -> None:
        """Stop watching."""
        self._owner._forget(self)


class LockReleases:
    """A task subscribed to the lock-release channel, waking the waiters of each lock released."""

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
        self._watchers: dict[bytes, set[LockWatch]] = {}
        self._subscribed = asyncio.Event()
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pipe: Pipe | None = None
        self._stopping = False
        self.failure: BaseException | None = None
        """Why the subscription last broke, or could not be made; ``None`` while it works."""

    @property
    def subscribed(self) -> bool:
        """Whether releases reach this driver now."""
        return self._subscribed.is_set()

    async def watch(self, lock_key: bytes, wait: float) -> LockWatch | None:
        """Watch ``lock_key``; ``None`` if the subscription is not up within ``wait`` seconds."""
        if self._stopping:
            return None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        if not self._subscribed.is_set():
            subscribed = asyncio.ensure_future(self._subscribed.wait())
            try:
                await asyncio.wait({subscribed}, timeout=wait)
            finally:
                subscribed.cancel()
            if not self._subscribed.is_set():
                return None
        watch = LockWatch(self, lock_key)
        self._watchers.setdefault(lock_key, set()).add(watch)
        return watch

    async def stop(self) -> None:
        """Stop: close the pipe, end the task (bounded wait), wake every waiter."""
        self._stopping = True
        task, self._task = self._task, None
        if self._pipe is not None:
            self._pipe.close()
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=5)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a failure while stopping is not news
        self._wake_all()

    def _forget(self, watch: LockWatch) -> None:
        watchers = self._watchers.get(watch.lock_key)
        if watchers is not None:
            watchers.discard(watch)
            if not watchers:
                del self._watchers[watch.lock_key]

    def _wake_all(self) -> None:
        for watchers in list(self._watchers.values()):
            for watch in list(watchers):
                watch.wake()

    async def _run(self) -> None:
        broken = False  # logged once per break, not once per failed attempt
        while not self._stopping:
            try:
                await self._listen()
            except Exception as exc:  # any failure breaks the subscription; cancellation stops it
                self.failure = exc
                if not self._stopping:
                    log = logger.debug if broken else logger.info
                    log("lease waiters poll: the lock-release subscription is down (%s)", exc)
                    broken = True
            finally:
                self._subscribed.clear()
                pipe, self._pipe = self._pipe, None
                if pipe is not None:
                    pipe.close()
                self._wake_all()  # no release reaches them now: they look again, then poll
            if not self._stopping:
                await asyncio.sleep(self._retry_delay)

    async def _listen(self) -> None:
        pipe = self._pipe = await self._connect()
        # Set before subscribing: the first message can come in the same read as the confirmation.
        pipe.on_push = self._apply
        pipe.on_close = self._woken.set
        reply = await pipe.send(pack([b"SUBSCRIBE", LOCK_RELEASED_CHANNEL]))
        if isinstance(reply, Exception):
            raise reply  # not allowed (ACL channels), or not a Redis that has pub/sub
        if not SUBSCRIBE_REPLY(reply):
            raise InvalidResponse(f"SUBSCRIBE got {describe(reply)} in reply")
        self.failure = None
        self._subscribed.set()
        while not pipe.closed and not self._stopping:
            self._woken.clear()
            waking = asyncio.ensure_future(self._woken.wait())
            try:
                done, _ = await asyncio.wait({waking}, timeout=self._heartbeat)
            finally:
                waking.cancel()
            if done:
                continue  # a message arrived, or the pipe closed
            # A heartbeat of silence: the server must answer PING within one more.
            try:
                await asyncio.wait_for(pipe.send(pack([b"PING"])), self._heartbeat)
            except TimeoutError:
                raise RedisPyTimeoutError(
                    f"the lock-release channel did not answer PING within {self._heartbeat:g} s"
                ) from None
        raise RedisPyConnectionError(f"the lock-release channel to {pipe.endpoint.label} closed")

    def _apply(self, message: Any) -> None:
        self._woken.set()
        if message[1] == LOCK_RELEASED_CHANNEL:
            for watch in list(self._watchers.get(message[2], ())):
                watch.wake()
