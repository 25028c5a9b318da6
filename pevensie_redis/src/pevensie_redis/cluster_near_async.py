"""The near cache over a Redis Cluster, async face: one invalidation listener per primary.

This module is the source of the sync face too: ``cluster_near.py`` is
generated from it by ``.ci/unasync.py`` (each listener, and the watch, is then
a daemon thread rather than a task). Edit this file, then run ``nox -s generate``.

A node of a cluster tells only of the keys written on it, so
:class:`ClusterListeners` keeps one
``InvalidationListener`` per primary,
each naming its node in the one :class:`~pevensie_redis.near.NearStore` they
feed: a read is kept only if it ran on the node its slot's owner was when it
began, and that node listened all along; a node's channel breaking drops
what that node fed. Every primary is listened to, those that serve no slot
yet too (``CLUSTER NODES``): while a slot migrates to a node, the keys absent
from the old one are written on it. The store keeps remembered misses only
while every primary listens (:meth:`~pevensie_redis.near.NearStore.expect`).

The topology is watched: every heartbeat (``min(1 s, timeout)``) the slot map
is read again and ``CLUSTER NODES`` asked for the slot-less primaries; a
primary that appeared gets a listener (until it listens, reads from it are
not kept, and no miss is), and one that is no longer a primary (failed over,
removed) loses its listener and what it fed. What each event does, and the
staleness it can leave:

=================================  ===================================================
event                              what the near cache does
=================================  ===================================================
a key written, deleted, expired,   its node's listener drops it (any node: a key
migrated (``MIGRATE`` deletes it   migrated is named by both)
on the old node)
a node's channel breaks (closed,   that node's entries are dropped at once, misses
killed, silent for 2 heartbeats)   everywhere; its reads are not kept until it
                                   listens again (it reconnects every 0.2 s)
a node refuses the channel (an     as a break; it is asked again after 0.2 s, then
ACL changed while running)         less and less often (doubling, up to every 5 s)
a primary killed and failed over   its channel breaks (above); the promoted replica
                                   is listened to from the next watch on
a primary demoted while alive      it still names the keys its new primary writes
(``CLUSTER FAILOVER``)             (replication); dropped with what it fed at the
                                   next watch
a node added, removed              listened to / dropped at the next watch
a read redirected (``MOVED``,      not kept (it ran elsewhere than its ticket
``ASK``)                           says); the map learns the move
=================================  ===================================================

So a value can be served stale only while a break is not yet noticed (a
silent one: up to two heartbeats, as on one server), and a remembered miss
only until the next watch after a primary appears.
"""

from __future__ import annotations

import logging
import threading
import time

from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisPyTimeoutError

from pevensie_cache import forks
from pevensie_redis import runtime_async
from pevensie_redis.cluster_io_async import ClusterIO
from pevensie_redis.config import RedisConfig
from pevensie_redis.endpoint import endpoint
from pevensie_redis.errors import RedisDriverError, near_cache_refused
from pevensie_redis.listener_async import InvalidationListener
from pevensie_redis.near import NearStore, heartbeat
from pevensie_redis.pipe_async import Pipe, open_pipe
from pevensie_redis.protocol.commands import CLUSTER_NODES, CLUSTER_NODES_REPLY
from pevensie_redis.protocol.slots import parse_cluster_nodes

__all__ = ["WATCH_NAME", "ClusterListeners"]

WATCH_NAME = "pevensie-near-cache-cluster-watch"
"""The name of the topology watch's thread (sync face) or task (async face)."""

logger = logging.getLogger("pevensie_redis.near_cache")


class ClusterListeners:
    """The listeners of a near cache on a cluster: one per primary, kept up with the topology."""

    def __init__(self, io: ClusterIO, config: RedisConfig, store: NearStore) -> None:
        """Listen to the primaries of ``io``'s cluster for ``store`` (nothing runs yet)."""
        self._io = io
        self._config = config
        self._store = store
        self._interval = heartbeat(config.timeout_seconds)
        self._listeners: dict[str, InvalidationListener] = {}
        self._lock = threading.Lock()
        self._watch: runtime_async.Flight[None] | None = None
        self._woken = runtime_async.Signal()
        self._stopping = False
        self._generation = 0
        """Counts the forks this object went through: an older watch stops."""
        forks.renew_after_fork(self)

    @property
    def nodes(self) -> list[str]:
        """The primaries listened to (or being connected to), by name."""
        return list(self._listeners)

    async def start(self) -> None:
        """Listen to every primary; return once each listens.

        Raises a :class:`~pevensie_cache.ConfigError` when a node refuses key
        tracking (or ``CLUSTER NODES``), else redis-py's or the driver's error
        when a node is not listened to within about twice the timeout; nothing
        is left running then.
        """
        try:
            await self._reconcile(await self._primaries(raising=True))
            wait = 2 * self._config.timeout_seconds + 1
            deadline = time.monotonic() + wait
            for listener in list(self._listeners.values()):
                if not await listener.start(wait=max(0.0, deadline - time.monotonic())):
                    failure = listener.failure or RedisPyTimeoutError(
                        "the invalidation channel did not start"
                    )
                    refused = near_cache_refused(failure)
                    if refused is not None:
                        raise refused from failure
                    raise failure
            self.ensure_running()
        except BaseException:
            await self.stop()
            raise

    def ensure_running(self) -> None:
        """Keep the watch and every listener running (again in a forked child).

        Called by every near-cache read: while the watch runs (it stops only
        with :meth:`stop`, or in a forked child) nothing else is looked at.
        """
        watch = self._watch
        if watch is not None and not watch.done():
            return
        with self._lock:
            watch = self._watch
            if (watch is None or watch.done()) and not self._stopping:
                self._watch = runtime_async.start(self._watching, WATCH_NAME)
        for listener in list(self._listeners.values()):
            listener.ensure_running()

    async def stop(self) -> None:
        """Stop the watch and every listener; the store is left empty and disabled."""
        self._stopping = True
        self._woken.set()
        watch, self._watch = self._watch, None
        if watch is not None:
            await runtime_async.finish(watch, 5)
        listeners, self._listeners = list(self._listeners.values()), {}
        for listener in listeners:
            await listener.stop()
        self._store.flush(disable=True)

    async def watch_once(self) -> None:
        """Read the topology now and follow it (the watch does this every heartbeat)."""
        await self._reconcile(await self._primaries(raising=False))

    async def _watching(self) -> None:
        born = self._generation  # a greenlet (gevent) goes on in a forked child: it stops
        while True:
            await self._woken.wait(self._interval)
            if self._generation != born:
                await runtime_async.park()  # forked: the parent's watch, gone on in the child
            if self._stopping:
                return
            try:
                await self.watch_once()
            except Exception as exc:  # the next round tries again; cancellation stops it
                logger.debug("near cache: reading the cluster's topology failed (%s)", exc)

    async def _primaries(self, *, raising: bool) -> set[str] | None:
        """Return every primary: the slot map's, and those ``CLUSTER NODES`` lists without slots.

        ``None`` when no node answered (``raising``: the error instead).
        """
        io = self._io
        if not raising:  # at connect, the map was read a moment ago
            await io.refresh()
        primaries = set(io.primaries())
        failure: BaseException | None = None
        for node in dict.fromkeys([*io.primaries(), *io.slot_map.node_names()]):
            try:
                replies = await io.exchange(
                    node, [CLUSTER_NODES], "CLUSTER NODES", shapes=[CLUSTER_NODES_REPLY]
                )
            except RedisDriverError as exc:
                failure = exc
                continue
            if not replies:
                continue
            reply = replies[0]
            if isinstance(reply, Exception):
                if raising:  # an ACL without it, or a server that does not know it
                    raise _nodes_refused(reply) from reply
                failure = reply
                continue
            try:
                slotless = parse_cluster_nodes(reply, io.slot_map.address(node)[0])
            except InvalidResponse as exc:
                failure = exc
                continue
            for candidate in slotless:
                if candidate in primaries or not await self._says_it_is_a_primary(candidate):
                    continue
                primaries.add(candidate)
            return primaries
        if raising:
            raise failure or RedisPyTimeoutError("no node of the cluster answered CLUSTER NODES")
        return None

    async def _says_it_is_a_primary(self, node: str) -> bool:
        """Whether ``node`` (a primary without slots in another node's view) agrees it is one.

        Gossip is slow to tell a replica's role (seconds on Redis 7.0), so another
        node may list a replica as a primary without slots; the node itself knows.
        One that does not answer is taken at its word: listened to (and misses
        not kept until it listens).
        """
        io = self._io
        try:
            replies = await io.exchange(
                node, [CLUSTER_NODES], "CLUSTER NODES", shapes=[CLUSTER_NODES_REPLY]
            )
            if not replies or isinstance(replies[0], Exception):
                return True
            return node in parse_cluster_nodes(replies[0], io.slot_map.address(node)[0])
        except (RedisDriverError, InvalidResponse):
            return True

    async def _reconcile(self, primaries: set[str] | None) -> None:
        """Listen to ``primaries`` and to no other node (``None``: the topology is unknown)."""
        if primaries is None or self._stopping:
            return
        gone = [node for node in self._listeners if node not in primaries]
        for node in gone:
            await self._listeners[node].stop()
            self._listeners.pop(node, None)
            self._store.flush(disable=True, node=node)  # whatever the listener got to
            logger.info("near cache: %s is no longer a primary; its entries are dropped", node)
        # Misses stop being kept before a new primary's listener starts (it may have
        # taken writes already); they are kept again once every primary listens.
        self._store.expect(primaries)
        for node in sorted(primaries - self._listeners.keys()):
            if self._stopped():  # stop() ran meanwhile (a thread of its own, on the sync face)
                return
            listener = self._listeners[node] = self._listener(node)
            listener.ensure_running()

    def _stopped(self) -> bool:
        return self._stopping

    def _listener(self, node: str) -> InvalidationListener:
        host, port = self._io.slot_map.address(node)
        fixed = endpoint(self._config, host, port)

        async def connect() -> Pipe:
            return await open_pipe(fixed)

        return InvalidationListener(connect, self._store, heartbeat=self._interval, node=node)

    def _forked(self) -> None:
        """In a child process: nothing runs; the next near-cache read starts the watch here."""
        self._lock = threading.Lock()
        self._woken = runtime_async.Signal()
        self._watch = None
        self._generation += 1


def _nodes_refused(reply: Exception) -> Exception:
    from pevensie_cache import ConfigError

    return ConfigError(
        "near_cache on a Redis Cluster asks each node CLUSTER NODES (to listen to every "
        f"primary, those without slots too), and the server refused it (it said: {reply}): "
        "grant it (pevensie_redis.acl.acl_rule(resource_types, config) gives a rule with "
        "every command the driver sends), or drop near_cache"
    )
