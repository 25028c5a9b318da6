"""The near cache's invalidation channel, async face: a task on a dedicated pipe.

The twin of :mod:`~pevensie_redis.listener` (read it for the protocol): the
connection is a :class:`~pevensie_redis.pipe.Pipe` whose pushed messages go
to the :class:`~pevensie_redis.near.NearStore`, watched by a ``PING`` after
``heartbeat`` seconds of silence; when it breaks, the store is emptied and
disabled until the task has listened again under a new client id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from pevensie_redis import wire
from pevensie_redis.near import NearStore
from pevensie_redis.pipe import Pipe

__all__ = ["InvalidationListener"]

INVALIDATION_CHANNEL = b"__redis__:invalidate"
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
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pipe: Pipe | None = None
        self._client_id: int | None = None
        self._message = asyncio.Event()
        self.last_error: str | None = None
        """Why the channel last broke, or ``None``."""

    @property
    def client_id(self) -> int | None:
        """The id data connections redirect their invalidations to, while listening."""
        return self._client_id

    async def start(self, wait: float) -> bool:
        """Start the task; return whether it was listening within ``wait`` seconds."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), wait)
        return self._ready.is_set()

    async def stop(self) -> None:
        """Stop listening: cancel the task and close its pipe."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._pipe is not None:
            self._pipe.close()

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("near cache: the invalidation channel broke (%s)", exc)
            finally:
                self._client_id = None
                self._store.flush(disable=True)
                pipe, self._pipe = self._pipe, None
                if pipe is not None:
                    pipe.close()
            await asyncio.sleep(self._retry_delay)

    async def _listen(self) -> None:
        pipe = self._pipe = await self._connect()
        client_id = await pipe.send(wire.pack([b"CLIENT", b"ID"]))
        confirmed = await pipe.send(wire.pack([b"SUBSCRIBE", INVALIDATION_CHANNEL]))
        for reply in (client_id, confirmed):
            if isinstance(reply, Exception):
                raise reply
        pipe.on_push = self._apply
        self._client_id = int(client_id)
        self._store.enable()
        self._ready.set()
        while not pipe.closed:
            self._message.clear()
            try:
                await asyncio.wait_for(self._message.wait(), self._heartbeat)
            except asyncio.TimeoutError:
                # Silence: the pipe's own timer fails the PING if nothing answers in time.
                await pipe.send(wire.pack([b"PING"]))
        raise ConnectionError("the invalidation channel closed")

    def _apply(self, message: Any) -> None:
        self._message.set()
        if isinstance(message, list) and len(message) >= 3 and message[0] == b"message":
            keys = message[2]
            self._store.invalidate(None if keys is None else list(keys))
