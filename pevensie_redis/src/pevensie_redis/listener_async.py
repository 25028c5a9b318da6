"""The near cache's invalidation channel: a dedicated pipe, watched in the background.

This module is the source of the sync face too: ``listener.py`` is generated
from it by ``.ci/unasync.py`` (the listener is then a daemon thread rather
than a task). Edit this file, then run ``nox -s generate``.

The server tells a client which keys have changed (``CLIENT TRACKING``). The
listener asks for it in broadcast mode, redirected to itself: with RESP2, which
both Valkey 8.1 and Redis 6/7 speak, the messages then arrive on its own pipe
once it has subscribed to ``__redis__:invalidate``, naming every key changed
on the server (by a write, an expiry, an eviction). Nothing is tracked per
data connection, so a data connection that dies, is killed or reconnects
leaves no key unwatched. :class:`InvalidationListener` keeps that pipe: it
drops the keys each message names from the
:class:`~pevensie_redis.near.NearStore`, and empties the whole store for a
``FLUSHDB``/``FLUSHALL`` (a message without keys).

It also watches the pipe: with no message for ``heartbeat`` seconds it sends
``PING``, and gives the pipe up when no answer comes within one more
heartbeat. When the pipe breaks (closed, killed, server restarted, failover,
network timeout), the store is emptied and disabled at once: reads go to the
server until the listener is listening again. A broken pipe is replaced after
200 ms; an attempt the server refuses (an error reply: an ACL changed while
running, say) is repeated after a delay that doubles up to
:data:`~pevensie_redis.refusals.RETRY_MAX` (:mod:`~pevensie_redis.refusals`).
In a forked child the store starts disabled and the next near-cache read
starts a listener of the child's own.
"""

from __future__ import annotations

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
from pevensie_redis.errors import TrackingRefused, near_cache_refused, refusal_is_final
from pevensie_redis.near import SOLE, NearStore, heartbeat
from pevensie_redis.pipe_async import Pipe, open_pipe
from pevensie_redis.protocol.commands import (
    CLIENT_ID_REPLY,
    INVALIDATION_CHANNEL,
    OK_REPLY,
    PING,
    SUBSCRIBE_REPLY,
    describe,
    pack,
    pack_tracking,
    tracking_probes,
)
from pevensie_redis.refusals import is_refusal, retry_delay

__all__ = ["LISTENER_NAME", "InvalidationListener", "start_near_cache"]

LISTENER_NAME = "pevensie-near-cache-invalidations"
"""The name of the listener's thread (sync face) or task (async face)."""

logger = logging.getLogger("pevensie_redis.near_cache")


class InvalidationListener:
    """Applies the server's invalidations to a :class:`NearStore`, in the background."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Pipe]],
        store: NearStore,
        *,
        heartbeat: float,
        retry_delay: float = 0.2,
        node: str = SOLE,
    ) -> None:
        """Listen on pipes made by ``connect()``, for the ``node`` they reach (one of a Cluster).

        ``node`` names the server in the store: what it fed is dropped when
        its channel breaks, and reads from it are kept only while it listens.
        """
        self._connect = connect
        self._store = store
        self._node = node
        self._heartbeat = heartbeat
        self._retry_delay = retry_delay
        self._attempted = runtime_async.Signal()
        self._lock = threading.Lock()
        self._task: runtime_async.Flight[None] | None = None
        self._pipe: Pipe | None = None
        self._stopping = False
        self._generation = 0
        """Counts the forks this object went through: a run of an older one stops."""
        self.server: str | None = None
        """The server (its endpoint's label) listened to, while listening."""
        self.failure: BaseException | None = None
        """Why the channel last broke, or could not be set up; ``None`` while it works."""
        forks.renew_after_fork(self)

    async def start(self, wait: float) -> bool:
        """Start listening; return whether it listens after its first attempt.

        Waits at most ``wait`` seconds for that attempt; when it fails,
        :attr:`failure` says why (and the listener keeps trying until stopped).
        """
        self.ensure_running()
        await self._attempted.wait(wait)
        return self.server is not None

    def ensure_running(self) -> None:
        """Start the listener unless it runs (again in a forked child, where it does not)."""
        task = self._task
        if task is None or task.done():
            with self._lock:
                task = self._task
                if (task is None or task.done()) and not self._stopping:
                    self._task = runtime_async.start(self._run, LISTENER_NAME)

    async def stop(self) -> None:
        """Stop listening: close the pipe, and wait (bounded) until the listener has ended."""
        self._stopping = True
        task, self._task = self._task, None
        pipe = self._pipe
        if pipe is not None:
            pipe.close()  # wakes the listener
        if task is not None:
            await runtime_async.finish(task, 5)

    def moved(self) -> None:
        """Listen again, from scratch: a read ran on another server than this one listens to.

        The store is emptied and disabled at once (that read is not kept), and
        the pipe is closed, so the listener connects again to the server the
        configuration names now (through Sentinel: the primary).
        """
        self._store.flush(disable=True, node=self._node)
        pipe = self._pipe
        if pipe is not None:
            pipe.close()

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
            except Exception as exc:  # any failure breaks the channel; cancellation stops it
                if self._generation != born:
                    break  # forked: the parent's run, gone on in the child (gevent)
                self.failure = exc
                refused = is_refusal(exc)  # the server's answer (an ACL), not a fault
                if not self._stopping:
                    log = logger.debug if broken else logger.warning
                    log("near cache: the invalidation channel is down (%s)", exc)
                    broken = True
            finally:
                if self._generation == born:  # else forked: nothing here is its own
                    refusals = refusals + 1 if refused else 0
                    # Whatever broke, no entry may outlive the channel that kept it coherent.
                    self.server = None
                    self._store.flush(disable=True, node=self._node)
                    pipe, self._pipe = self._pipe, None
                    if pipe is not None:
                        pipe.close()
                    self._attempted.set()
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
        client_id = await pipe.call(pack([b"CLIENT", b"ID"]))
        if isinstance(client_id, Exception):
            raise TrackingRefused("CLIENT ID", client_id)
        if not CLIENT_ID_REPLY(client_id):
            raise InvalidResponse(f"CLIENT ID got {describe(client_id)} in reply")
        # Set before subscribing: the first message can come in the same read as the
        # confirmation, and a pipe with no one to take it closes on an unexpected reply.
        pipe.on_push = self._apply
        # Tracking first, then the subscription: a refused tracking is probed on this
        # pipe, which a subscription would restrict to (un)subscribing. Nothing is lost
        # in between: the store is enabled only once both are confirmed.
        tracking = await pipe.call(pack_tracking(client_id))
        if isinstance(tracking, Exception):
            raise await _pinpoint(pipe, client_id, tracking)
        if not OK_REPLY(tracking):
            raise InvalidResponse(f"CLIENT TRACKING got {describe(tracking)} in reply")
        subscribed = await pipe.call(pack([b"SUBSCRIBE", INVALIDATION_CHANNEL]))
        if isinstance(subscribed, Exception):
            raise TrackingRefused("SUBSCRIBE", subscribed)
        if not SUBSCRIBE_REPLY(subscribed):
            raise InvalidResponse(f"SUBSCRIBE got {describe(subscribed)} in reply")
        self.server = pipe.endpoint.label
        self.failure = None
        self._store.enable(self._node)
        if self._attempted.is_set():
            logger.info("near cache: listening for invalidations again")
        self._attempted.set()
        while not pipe.closed and not self._stopping and self._generation == born:
            if await pipe.listen(self._heartbeat):
                continue  # a message arrived, or the pipe closed
            # A heartbeat of silence: the server must answer PING within one more.
            try:
                await pipe.call(PING, self._heartbeat)
            except RedisPyTimeoutError:
                raise RedisPyTimeoutError(
                    f"the invalidation channel did not answer PING within {self._heartbeat:g} s"
                ) from None
        raise RedisPyConnectionError(f"the invalidation channel to {pipe.endpoint.label} closed")

    def _apply(self, message: Any) -> None:
        keys = message[2]  # ["message", channel, keys]: a pushed message (pipe_core.pushed)
        self._store.invalidate(None if keys is None else list(keys), self._node)

    def _forked(self) -> None:
        """In a child process: nothing runs; the next near-cache read starts a listener here.

        The parent's pipe is forgotten, never closed (shutting its socket down
        would cut the parent's channel too).
        """
        self._lock = threading.Lock()
        self._attempted = runtime_async.Signal()
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.forget()
        self._task = None
        self._generation += 1
        self.server = None


async def _pinpoint(pipe: Pipe, client_id: int, error: Exception) -> TrackingRefused:
    """Return what the server refused of ``CLIENT TRACKING ON BCAST REDIRECT`` (it said ``error``).

    Tracking without ``BCAST``, then without ``REDIRECT``, is tried on the
    same pipe (closed after: the near cache cannot run there); the first one
    accepted names the option refused.
    """
    if not refusal_is_final(error):
        for option, probe in tracking_probes(client_id):
            if OK_REPLY(await pipe.call(probe)):
                return TrackingRefused(option, error)
    return TrackingRefused("CLIENT TRACKING", error)


async def start_near_cache(
    resolve: Callable[[], Awaitable[Endpoint]],
    config: RedisConfig,
    attach: Callable[[NearStore, InvalidationListener], None],
) -> None:
    """Start the near cache's store and listener (key tracking needs Redis 6+ or Valkey).

    The listener listens to the server ``resolve()`` names. ``attach`` hands
    both to their owner (the channel, whose closing stops the listener) before
    the listener starts: an exception raised into the caller once it runs (a
    signal handler's, a cancellation) leaves nothing the owner cannot stop.
    Raises a :class:`~pevensie_cache.ConfigError` when the server refuses key
    tracking, else redis-py's error, when it is not listening within about
    twice the timeout (and then stops it).
    """

    async def connect() -> Pipe:
        return await open_pipe(await resolve())

    near = NearStore(config.near_cache_size, config.near_cache_max_bytes)
    listener = InvalidationListener(connect, near, heartbeat=heartbeat(config.timeout_seconds))
    attach(near, listener)
    try:
        # Bounded by the connect and reply timeouts of the listener's own first attempt.
        listening = await listener.start(wait=2 * config.timeout_seconds + 1)
    except BaseException:
        await listener.stop()
        raise
    if not listening:
        await listener.stop()
        failure = listener.failure or RedisPyTimeoutError("the invalidation channel did not start")
        refused = near_cache_refused(failure)
        if refused is not None:
            raise refused from failure
        raise failure
