"""The near cache's invalidation channel, async face: a task on a dedicated pipe.

The twin of :mod:`~pevensie_redis.listener` (read it for the protocol): the
connection is a :class:`~pevensie_redis.pipe.Pipe` whose pushed messages go
to the :class:`~pevensie_redis.near.NearStore`, watched by a ``PING`` after
``heartbeat`` seconds of silence that must be answered within one more
heartbeat; when the pipe closes or goes silent, the store is emptied and
disabled at once, until the task is listening again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisPyTimeoutError

from pevensie_redis.errors import TrackingRefused, refusal_is_final
from pevensie_redis.near import NearStore
from pevensie_redis.pipe import Pipe
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
    """A task that applies the server's invalidations to a :class:`NearStore`."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Pipe]],
        store: NearStore,
        *,
        heartbeat: float,
        retry_delay: float = 0.2,
    ) -> None:
        """Listen on pipes made by ``connect()``."""
        self._connect = connect
        self._store = store
        self._heartbeat = heartbeat
        self._retry_delay = retry_delay
        self._attempted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pipe: Pipe | None = None
        self._woken = asyncio.Event()
        self._stopping = False
        self.server: str | None = None
        """The server (its endpoint's label) listened to, while listening."""
        self.failure: BaseException | None = None
        """Why the channel last broke, or could not be set up; ``None`` while it works."""

    async def start(self, wait: float) -> bool:
        """Start the task; return whether it is listening after its first attempt.

        Waits at most ``wait`` seconds for that attempt; when it fails,
        :attr:`failure` says why (and the task keeps trying until stopped).
        """
        self._task = asyncio.get_running_loop().create_task(self._run())
        attempted = asyncio.ensure_future(self._attempted.wait())
        try:  # not wait_for: it can lose the caller's cancellation (Python < 3.12)
            await asyncio.wait({attempted}, timeout=wait)
        finally:
            attempted.cancel()
        return self.server is not None

    async def stop(self) -> None:
        """Stop listening: close the pipe, end the task, and wait (bounded) until it has.

        Python before 3.12 can lose a cancellation inside ``asyncio.wait_for``
        when the awaited event fires at the same moment (a message arriving),
        so the task also checks a flag at every turn; the wait is bounded all
        the same, and a cancellation of ``stop()`` itself is not swallowed.
        """
        self._stopping = True
        task, self._task = self._task, None
        if self._pipe is not None:
            self._pipe.close()  # wakes the task (Pipe.on_close)
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=5)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a failure while stopping is not news

    def moved(self) -> None:
        """Listen again, from scratch: a read ran on another server than this one listens to.

        The store is emptied and disabled at once (that read is not kept), and
        the pipe is closed, so the task connects again to the server the
        configuration names now (through Sentinel: the primary).
        """
        self._store.flush(disable=True)
        if self._pipe is not None:
            self._pipe.close()

    async def _run(self) -> None:
        broken = False  # logged once per break, not once per failed attempt
        while not self._stopping:
            try:
                await self._listen()
            except Exception as exc:  # any failure breaks the channel; cancellation stops it
                self.failure = exc
                if not self._stopping:
                    log = logger.debug if broken else logger.warning
                    log("near cache: the invalidation channel is down (%s)", exc)
                    broken = True
            finally:
                # Whatever broke, no entry may outlive the channel that kept it coherent.
                self.server = None
                self._store.flush(disable=True)
                pipe, self._pipe = self._pipe, None
                if pipe is not None:
                    pipe.close()
                self._attempted.set()
            if not self._stopping:
                await asyncio.sleep(self._retry_delay)

    async def _listen(self) -> None:
        pipe = self._pipe = await self._connect()
        client_id = await pipe.send(pack([b"CLIENT", b"ID"]))
        if isinstance(client_id, Exception):
            raise TrackingRefused("CLIENT ID", client_id)
        if not CLIENT_ID_REPLY(client_id):
            raise InvalidResponse(f"CLIENT ID got {describe(client_id)} in reply")
        # Set before subscribing: the first message can come in the same read as the
        # confirmation, and a pipe with no one to take it closes on an unexpected reply.
        pipe.on_push = self._apply
        pipe.on_close = self._woken.set
        # Tracking first, then the subscription: a refused tracking is probed on this
        # pipe, which a subscription would restrict to (un)subscribing. Nothing is lost
        # in between: the store is enabled only once both are confirmed.
        tracking = await pipe.send(pack_tracking(client_id))
        if isinstance(tracking, Exception):
            raise await _pinpoint(pipe, client_id, tracking)
        if not OK_REPLY(tracking):
            raise InvalidResponse(f"CLIENT TRACKING got {describe(tracking)} in reply")
        subscribed = await pipe.send(pack([b"SUBSCRIBE", INVALIDATION_CHANNEL]))
        if isinstance(subscribed, Exception):
            raise TrackingRefused("SUBSCRIBE", subscribed)
        if not SUBSCRIBE_REPLY(subscribed):
            raise InvalidResponse(f"SUBSCRIBE got {describe(subscribed)} in reply")
        self.server = pipe.endpoint.label
        self.failure = None
        self._store.enable()
        if self._attempted.is_set():
            logger.info("near cache: listening for invalidations again")
        self._attempted.set()
        while not pipe.closed and not self._stopping:
            self._woken.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self._heartbeat)
                continue  # a message arrived, or the pipe closed
            # A heartbeat of silence: the server must answer PING within one more.
            try:
                await asyncio.wait_for(pipe.send(pack([b"PING"])), self._heartbeat)
            except TimeoutError:
                raise RedisPyTimeoutError(
                    f"the invalidation channel did not answer PING within {self._heartbeat:g} s"
                ) from None
        raise RedisPyConnectionError(f"the invalidation channel to {pipe.endpoint.label} closed")

    def _apply(self, message: Any) -> None:
        self._woken.set()
        if isinstance(message, list) and len(message) >= 3 and message[0] == b"message":
            keys = message[2]
            self._store.invalidate(None if keys is None else list(keys))


async def _pinpoint(pipe: Pipe, client_id: int, error: Exception) -> TrackingRefused:
    """Return what the server refused of ``CLIENT TRACKING ON BCAST REDIRECT`` (it said ``error``).

    Tracking without ``BCAST``, then without ``REDIRECT``, is tried on the
    same pipe (closed after: the near cache cannot run there); the first one
    accepted names the option refused.
    """
    if not refusal_is_final(error):
        for option, probe in tracking_probes(client_id):
            if OK_REPLY(await pipe.send(probe)):
                return TrackingRefused(option, error)
    return TrackingRefused("CLIENT TRACKING", error)
