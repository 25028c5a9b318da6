"""The Cluster router, async face: the slot map, a channel per node, the redirects followed.

This module is the source of the sync face too: ``cluster_io.py`` is
generated from it by ``.ci/unasync.py`` (over the sync channels, with the
background refresh in a thread of its own: :mod:`~pevensie_redis.runtime`).
Edit this file, then run ``nox -s generate``.

The Cluster driver (``cluster_async.py``, and ``cluster.py`` generated from
it) sends through a :class:`ClusterIO` and never touches a connection. The
router keeps its own slot map (:class:`~pevensie_redis.protocol.slots.SlotMap`,
from ``CLUSTER SLOTS``) and one :class:`~pevensie_redis.channel_async.Channel`
per node (multiplexed pipes; a second one, whose handshake ends with
``READONLY``, per replica that serves reads). :meth:`ClusterIO.execute` sends
one command to the node that serves its slot and follows the cluster:

==============================  ===================================================
what happens                    what the router does
==============================  ===================================================
``MOVED slot host:port``        the slot is that node's now: the map says so at once,
                                a refresh of the whole map is started (in the
                                background), the command goes there
``ASK slot host:port``          ``ASKING`` and the command to that node, once (also a
                                primary that serves no slot yet); the map is unchanged
``TRYAGAIN``, ``CLUSTERDOWN``   refresh the map, back off, send again (any command:
                                the node refused it before running it)
a slot no node serves           refresh the map, back off, look again
a node that does not answer     refresh the map (asking the other nodes first), back
(connection error, timeout)     off, send again; a command that must run once only
                                if it cannot have been sent
==============================  ===================================================

Bounds (:class:`~pevensie_redis.cluster_attempts.Attempts`, one per call):
``MOVED`` and ``ASK`` together at most :data:`MAX_REDIRECTS` times per call
(then :class:`~pevensie_redis.RedisConnectionError`). ``TRYAGAIN``, ``CLUSTERDOWN``
and unserved slots are what a cluster answers for a moment during a failover
(on Redis 7.0 one node can go on answering ``CLUSTERDOWN`` after the others
report the cluster up): they are ridden out while the call's ``timeout`` has
time left, counted from the call's start (at least ``retries`` more attempts
in any case); then the driver's typed error, saying what the cluster
answered. A node that does not answer costs a whole attempt: at most
``retries`` more of those. Each attempt waits at most ``timeout`` to connect
and ``timeout`` for its reply; each back-off is at most
:data:`~pevensie_redis.cluster_attempts.BACKOFF_CAP` seconds and never
outlasts the call's timeout; a refresh asks one node after
another and starts no new question after ``timeout`` has passed. Refreshes
are single-flighted: callers that need one while another is under way wait
for that one, and a caller interrupted while it waits leaves the refresh
running for the others.

Lease waiters get a subscriber of their own (:meth:`ClusterIO.lock_releases`)
on one primary: a release published on any node reaches every node.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from redis.exceptions import InvalidResponse

from pevensie_cache import forks
from pevensie_redis import runtime_async
from pevensie_redis.channel_async import Channel
from pevensie_redis.cluster_attempts import Attempts
from pevensie_redis.config import RedisConfig
from pevensie_redis.endpoint import Endpoint, endpoint
from pevensie_redis.errors import (
    RedisConnectionError,
    RedisDriverError,
    RedisTimeoutError,
    map_error,
)
from pevensie_redis.lock_releases_async import LockReleases, open_lock_releases
from pevensie_redis.pipe_core import not_sent
from pevensie_redis.protocol.commands import (
    ASKING,
    CLUSTER_SLOTS,
    OK_REPLY,
    PING,
    PING_REPLY,
    READONLY,
    Shape,
)
from pevensie_redis.protocol.slots import (
    ASK,
    MOVED,
    Redirect,
    SlotMap,
    cluster_error,
    node_name,
    parse_cluster_slots,
    redirect_of,
)

__all__ = [
    "MAX_REDIRECTS",
    "SUSPECT_SECONDS",
    "UNREACHABLE",
    "ClusterIO",
    "open_cluster",
]

MAX_REDIRECTS = 16
"""``MOVED`` and ``ASK`` replies one call follows before it gives up (a cluster in a loop)."""

UNREACHABLE = (RedisConnectionError, RedisTimeoutError)
"""What a node's channel raises when the node cannot be reached or did not answer in time."""

_ASKING = ASKING
_PING = PING
SUSPECT_SECONDS = 5.0
"""Seconds a node that failed to answer is asked for the slot map only after the others."""

_REFRESH_SOON_INTERVAL = 0.1
"""Seconds after a refresh during which a ``MOVED`` starts no new one (it fixed its own slot)."""


class ClusterIO:
    """The nodes of one Redis Cluster and their slot map, for any number of callers at once."""

    def __init__(self, config: RedisConfig) -> None:
        """Route for ``config`` (any node of the cluster); :meth:`discover` fills the map."""
        self._config = config
        self._retries = config.retries
        self._timeout = config.timeout_seconds
        self._down_until = 0.0
        """Until when (monotonic) refused calls fail fast: see :meth:`gave_up`."""
        self._seed = node_name(config.host, config.port)
        self._map = SlotMap.empty()
        self._map.learn(config.host, config.port)
        self._channels: dict[str, Channel] = {}
        self._readonly: dict[str, Channel] = {}
        self._lock = threading.Lock()
        self._refreshing: runtime_async.Flight[bool] | None = None
        """The refresh under way (or the last one)."""
        self._generation = 0
        self._refreshed_at = 0.0
        self._failed: dict[str, float] = {}
        """When each node that failed to answer did so last (by name), until it answers again."""
        self._closed = False
        forks.renew_after_fork(self)

    def __repr__(self) -> str:
        return f"<ClusterIO {self._seed} {self._map!r}>"

    # -- the slot map ------------------------------------------------------------------

    @property
    def slot_map(self) -> SlotMap:
        """The slot map as the router knows it now (replaced whole by each refresh)."""
        return self._map

    @property
    def generation(self) -> int:
        """How many refreshes have ended: a caller that saw one number needs no refresh after it."""
        return self._generation

    def node_of(self, slot: int) -> str | None:
        """Return the name (``host:port``) of the primary that serves ``slot``, if known."""
        return self._map.primaries[slot]

    def primaries(self) -> list[str]:
        """Return the names of the primaries, as the slot map knows them."""
        return self._map.primary_names()

    def replicas_of(self, slot: int) -> tuple[str, ...]:
        """Return the names of the replicas of ``slot``'s primary (synced, not failed)."""
        return self._map.replicas[slot]

    def moved(self, redirect: Redirect, node: str) -> str:
        """Record a ``MOVED`` that ``node`` replied, start a refresh; return the new owner."""
        host = redirect.host or self._map.address(node)[0]
        owner = self._map.assign(redirect.slot, host, redirect.port)
        self._refresh_soon()
        return owner

    def asked(self, redirect: Redirect, node: str) -> str:
        """Return the name of the node an ``ASK`` that ``node`` replied sends the command to."""
        return self._map.learn(redirect.host or self._map.address(node)[0], redirect.port)

    async def discover(self) -> None:
        """Read the slot map from the configured node; raise the driver's error when it cannot."""
        action = f"connecting to {self._config.display_url()}"
        replies = await self._channel(self._seed).pipeline([CLUSTER_SLOTS], action)
        reply = replies[0]
        if isinstance(reply, Exception):
            if "cluster support disabled" in str(reply):
                raise RedisConnectionError(
                    f"{action}: {self._seed} is not a Redis Cluster node ({reply}); "
                    "leave cluster off for a single server"
                ) from reply
            raise map_error(reply, action) from reply
        host = self._map.address(self._seed)[0]
        try:
            fresh = parse_cluster_slots(reply, host)
        except InvalidResponse as exc:
            raise map_error(exc, action) from exc
        if not fresh.covered():
            raise RedisConnectionError(f"{action}: no node of the cluster serves a slot yet")
        fresh.learn(*self._map.address(self._seed))
        self._map = fresh
        self._generation += 1

    async def refresh(self, seen: int | None = None, *, avoid: str | None = None) -> bool:
        """Read the slot map again, unless a refresh ended after the caller saw ``seen``.

        ``seen`` is :attr:`generation` as the caller last saw it (``None``:
        now). A refresh under way is joined, not repeated. The nodes are asked
        one after another, ``avoid`` (one that just failed) and those that
        failed lately last, until one answers or ``timeout`` has passed; the
        map is kept when none does. Return whether a map was read.
        """
        with self._lock:
            if seen is not None and self._generation != seen:
                return True
            flight = self._refreshing
            if flight is None or flight.done():
                flight = self._refreshing = runtime_async.start(lambda: self._refresh_now(avoid))
        return await runtime_async.join(flight)

    async def _refresh_now(self, avoid: str | None) -> bool:
        fresh = await self._read_map(avoid)
        if fresh is not None:
            self._map = fresh
        self._generation += 1
        self._refreshed_at = time.monotonic()
        return fresh is not None

    async def _read_map(self, avoid: str | None) -> SlotMap | None:
        deadline = time.monotonic() + self._timeout
        known = self._map
        candidates = known.node_names()
        if self._seed not in candidates:
            candidates.append(self._seed)
        # Nodes that failed a moment ago last (a stalled one costs a whole timeout).
        now = time.monotonic()
        failed = self._failed
        candidates.sort(
            key=lambda n: (n == avoid, now - failed.get(n, -SUSPECT_SECONDS) < SUSPECT_SECONDS)
        )
        for node in candidates:
            if self._closed or time.monotonic() > deadline:
                return None
            try:
                replies = await self.exchange(node, [CLUSTER_SLOTS], "CLUSTER SLOTS")
            except RedisDriverError:
                continue  # refused us (credentials, ACL): another node may not
            if not replies or isinstance(replies[0], Exception):
                continue
            try:
                fresh = parse_cluster_slots(replies[0], known.address(node)[0])
            except InvalidResponse:
                continue
            if fresh.covered():  # a node that joined a moment ago may know no slot yet
                for name in known.addresses.keys() - fresh.addresses.keys():
                    fresh.learn(*known.addresses[name])  # a new primary met through ASK
                return fresh
        return None

    def _refresh_soon(self) -> None:
        """Start a refresh in the background, unless one is under way or has just ended."""
        with self._lock:
            if self._closed or (self._refreshing is not None and not self._refreshing.done()):
                return
            if time.monotonic() - self._refreshed_at < _REFRESH_SOON_INTERVAL:
                return
            self._refreshing = runtime_async.start(lambda: self._refresh_now(None))

    def _forked(self) -> None:
        """In a forked child: a new lock, and no refresh under way.

        The parent's refresh runs in a thread (sync face) the child does not
        have: joining it would wait for ever, and the next refresh would never start.
        """
        self._lock = threading.Lock()
        self._refreshing = None

    # -- commands ----------------------------------------------------------------------

    async def execute(
        self, slot: int, packed: bytes, name: str, *, once: bool = False, shape: Shape | None = None
    ) -> Any:
        """Send one command for ``slot`` where the cluster serves it; return its reply.

        An error reply other than the cluster's own comes back as a value (a
        redis-py exception instance). ``TRYAGAIN`` and ``CLUSTERDOWN`` are
        sent again, any command (the node refused it before running it), after
        a refresh of the map and a back-off, while the call has time left (see
        :class:`Attempts`); then :class:`~pevensie_redis.RedisServerError`
        with the reply (a slot no node serves:
        :class:`~pevensie_redis.RedisConnectionError`). A command that must
        run ``once`` (not idempotent) is sent again after a failed node only
        when it cannot have been sent. Raises the driver's errors for nodes
        that cannot be reached (after ``retries`` more attempts) and for a
        cluster that keeps redirecting. ``shape``: the shape of the command's
        reply (see the channel's ``pipeline``).
        """
        started = time.monotonic()
        attempts: Attempts | None = None  # made at the first failed attempt (see Attempts)
        hops = 0
        asking: str | None = None
        seen = self._generation
        while True:
            node = asking or self._map.primaries[slot]
            if node is None:
                attempts = attempts or self.attempts(started)
                if not attempts.refused():
                    self.gave_up()
                    raise RedisConnectionError(
                        f"{attempts.spent(name)}: no node of the cluster serves slot {slot}"
                    )
                await self.refresh(seen)
                seen = self._generation
                await self.pause(attempts)
                continue
            if asking is None:
                commands, shapes = [packed], [shape]
            else:
                commands, shapes = [_ASKING, packed], [OK_REPLY, shape]
            try:
                replies = await self._send(node, commands, name, idempotent=not once, shapes=shapes)
            except UNREACHABLE as exc:
                attempts = attempts or self.attempts(started)
                if not attempts.failed() or (once and not _unsent(exc)):
                    raise
                asking = None
                await self.refresh(seen, avoid=node)
                seen = self._generation
                await self.pause(attempts)
                continue
            reply = replies[-1]
            if not isinstance(reply, Exception):
                return reply
            kind = cluster_error(reply)
            if kind is None:
                return reply
            asking = None
            if kind in (MOVED, ASK):
                redirect = redirect_of(reply)
                if redirect is None:
                    return reply
                hops += 1
                if hops > MAX_REDIRECTS:
                    raise RedisConnectionError(
                        f"{name}: the cluster kept redirecting the command ({hops - 1} redirects)"
                    ) from reply
                if redirect.ask:
                    asking = self.asked(redirect, node)
                else:
                    self.moved(redirect, node)
                continue
            # TRYAGAIN, CLUSTERDOWN: refused before it ran, whatever the command.
            attempts = attempts or self.attempts(started)
            if not attempts.refused():
                self.gave_up()
                raise map_error(reply, attempts.spent(name)) from reply
            await self.refresh(seen)
            seen = self._generation
            await self.pause(attempts)

    def attempts(self, started: float | None = None) -> Attempts:
        """Return a new count of attempts for a call started at ``started`` (``None``: now)."""
        ride = time.monotonic() >= self._down_until
        return Attempts(self._retries, self._timeout, started, ride=ride)

    def gave_up(self) -> None:
        """Note a call whose refusals outlasted its attempts: the cluster is down for now.

        For a ``timeout`` from now (from the last such call), calls the cluster
        refuses fail after ``retries`` more attempts instead of riding the
        refusals out (see :class:`Attempts`): with a shard down for good,
        every call would otherwise hold its caller for the whole timeout (a
        ``fail_open`` cache's too, before it serves the miss). A cluster back
        in service answers the next call at once; a refusal after the window
        is ridden out again.
        """
        self._down_until = time.monotonic() + self._timeout

    async def pause(self, attempts: Attempts) -> None:
        """Pause before the next attempt of a call (see :meth:`Attempts.pause`)."""
        await runtime_async.sleep(attempts.pause())

    async def exchange(
        self,
        node: str,
        commands: Sequence[bytes],
        name: str,
        *,
        idempotent: bool = True,
        readonly: bool = False,
        shapes: Sequence[Shape | None] | None = None,
    ) -> list[Any]:
        """Send ``commands`` to ``node``; return the replies (none if it cannot be reached).

        Error replies come back in place. Commands that are not ``idempotent``
        are never left to go another way once they may have been sent: the
        connection error is raised. ``readonly``: over ``READONLY`` pipes
        (reads from a replica). ``shapes``: the shape of each reply.
        """
        try:
            return await self._send(
                node, commands, name, idempotent=idempotent, readonly=readonly, shapes=shapes
            )
        except UNREACHABLE as exc:
            if not idempotent and not _unsent(exc):
                raise
            return []  # the caller goes another way

    async def exchange_many(
        self,
        by_node: dict[str, list[bytes]],
        name: str,
        *,
        readonly: Collection[str] = (),
        shapes: Mapping[str, Sequence[Shape | None]] | None = None,
    ) -> dict[str, list[Any] | RedisDriverError]:
        """Send each node its commands; return each node's replies.

        Every node at once on the async face, one node after the other on the
        sync face. A node that cannot be reached answers with the driver's
        error instead of a list; a node in ``readonly`` (a replica, over
        ``READONLY`` pipes) also with any other error of the driver (the
        caller asks the primary). ``shapes``: the shape of each node's replies.
        """
        nodes = list(by_node)
        answers: list[Any] = [
            self._attempt(node, by_node[node], name, node in readonly, shapes) for node in nodes
        ]
        answers = await asyncio.gather(*answers)  # unasync: remove
        return dict(zip(nodes, answers, strict=True))

    async def _attempt(
        self,
        node: str,
        commands: list[bytes],
        name: str,
        readonly: bool,
        shapes: Mapping[str, Sequence[Shape | None]] | None,
    ) -> list[Any] | RedisDriverError:
        try:
            shaped = None if shapes is None else shapes.get(node)
            return await self._send(node, commands, name, readonly=readonly, shapes=shaped)
        except UNREACHABLE as exc:
            return exc
        except RedisDriverError as exc:
            if readonly:
                return exc
            raise

    async def _send(
        self,
        node: str,
        commands: Sequence[bytes],
        name: str,
        *,
        idempotent: bool = True,
        readonly: bool = False,
        shapes: Sequence[Shape | None] | None = None,
    ) -> list[Any]:
        """Send ``commands`` to ``node`` in one write; return the replies, error replies in place.

        A node that failed to answer is sent nothing more until it answers a
        ``PING`` again (alone, within ``timeout``): a command written to a
        stalled server would be run when it wakes up, after its caller was
        told it failed. Raises :data:`UNREACHABLE` errors (marked as never sent
        when the ``PING`` failed).
        """
        channel = self._readonly_channel(node) if readonly else self._channel(node)
        try:
            if node in self._failed:
                try:
                    await channel.pipeline([_PING], "PING", shapes=[PING_REPLY])
                except UNREACHABLE as exc:
                    not_sent(exc)
                    raise
                self._failed.pop(node, None)
            return await channel.pipeline(commands, name, idempotent=idempotent, shapes=shapes)
        except UNREACHABLE:
            self._failed[node] = time.monotonic()
            raise

    async def ask(
        self,
        node: str,
        commands: Sequence[bytes],
        name: str,
        shapes: Sequence[Shape | None] | None = None,
    ) -> list[Any]:
        """Send each command after ``ASKING`` to ``node``; return the commands' replies."""
        paired = [part for command in commands for part in (_ASKING, command)]
        paired_shapes = (
            None if shapes is None else [part for shape in shapes for part in (OK_REPLY, shape)]
        )
        return (await self.exchange(node, paired, name, shapes=paired_shapes))[1::2]

    def lock_releases(self) -> LockReleases:
        """Return the lease waiters' subscriber: on one primary, the next one at each reconnect.

        A release published on any node reaches every node (classic pub/sub).
        """
        turn = itertools.count()

        async def resolve() -> Endpoint:
            primaries = self.primaries()
            host, port = self._map.address(primaries[next(turn) % len(primaries)])
            return endpoint(self._config, host, port)

        return open_lock_releases(resolve, self._config)

    async def close(self) -> None:
        """Close every node's channels; the router sends nothing after.

        A refresh under way is given up to ``timeout`` to end (its questions
        fail as their channels close).
        """
        with self._lock:
            self._closed = True
            flight = self._refreshing
        channels = [*self._channels.values(), *self._readonly.values()]
        self._channels, self._readonly = {}, {}
        for channel in channels:
            await channel.close()
        if flight is not None and not flight.done():
            await runtime_async.finish(flight, self._timeout)

    # -- channels ----------------------------------------------------------------------

    def channel(self, node: str, *, readonly: bool = False) -> Channel:
        """Return the channel to ``node`` (``readonly``: its ``READONLY`` one); opens it if new."""
        return self._readonly_channel(node) if readonly else self._channel(node)

    def _channel(self, node: str) -> Channel:
        channel = self._channels.get(node)
        if channel is None:
            channel = self._open_channel(node, self._channels, readonly=False)
        return channel

    def _readonly_channel(self, node: str) -> Channel:
        channel = self._readonly.get(node)
        if channel is None:
            channel = self._open_channel(node, self._readonly, readonly=True)
        return channel

    def _open_channel(self, node: str, channels: dict[str, Channel], *, readonly: bool) -> Channel:
        if self._closed:
            raise RedisConnectionError("the Redis Cluster driver is not connected")
        host, port = self._map.address(node)
        plain = endpoint(self._config, host, port)
        fixed = replace(plain, handshake=(*plain.handshake, READONLY)) if readonly else plain

        async def resolve() -> Endpoint:
            return fixed

        # No retries in the channel: the router retries, after refreshing the map.
        config = self._config
        fresh = Channel(resolve, config.pool_size, 0, large_read_rate=config.large_read_rate)
        return channels.setdefault(node, fresh)


def _unsent(exc: BaseException) -> bool:
    """Whether a channel's error says the command cannot have reached the server."""
    return bool(
        getattr(exc, "pevensie_not_sent", False)
        or getattr(exc.__cause__, "pevensie_not_sent", False)
    )


async def open_cluster(config: RedisConfig) -> ClusterIO:
    """Discover the cluster from the configured node and check every primary answers ``PING``.

    Raises the driver's errors (and closes everything) when it cannot.
    """
    io = ClusterIO(config)
    try:
        await io.discover()
        action = f"connecting to {config.display_url()}"
        for node in io.primaries():
            replies = await io._channel(node).pipeline([_PING], action, shapes=[PING_REPLY])
            if isinstance(replies[0], Exception):
                raise map_error(replies[0], f"{action} (PING {node})") from replies[0]
    except BaseException:
        await io.close()
        raise
    return io
