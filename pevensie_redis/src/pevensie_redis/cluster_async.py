"""The Redis Cluster mode of the driver (``RedisConfig(cluster=True)``), async face.

This module is the source of the sync face too: ``cluster.py``
(:class:`~pevensie_redis.RedisClusterDriver`) is generated from it by
``.ci/unasync.py``, each sending through the router of its face
(:mod:`~pevensie_redis.cluster_io_async` here, :mod:`~pevensie_redis.cluster_io`
there). Edit this file, then run ``nox -s generate``.

The router keeps the topology: it discovers every node from the one
configured, keeps the slot map (from ``CLUSTER SLOTS``) and follows
``MOVED``, ``ASK``, ``TRYAGAIN`` and ``CLUSTERDOWN``, refreshing the map after
a failover (its module docstring has the rules and their bounds). This driver
adds:

- single-key operations: the key's slot picks the node from the slot map and
  the command, packed once, goes straight to that node's channel; anything
  unusual is the router's to follow, within its bounds.
- batch operations that never meet ``CROSSSLOT``: keys are grouped by slot,
  each slot group becomes one ``MGET``/``MSET``/``UNLINK`` (or one ``EVALSHA``
  of the ``SET ... EX`` script for ``set_many`` with a TTL), and the groups of
  each node are pipelined, every node at once. What a pass leaves undone is
  sent again in the next pass: after ``MOVED`` to the slot's new owner, after
  ``CLUSTERDOWN`` or a node that did not answer once the slot map has been
  read again (the router's bounds apply to the batch as a whole); the replies
  of the other groups stand.
- batches that ride through resharding: while a slot is being migrated, a
  multi-key command whose keys are split between the two nodes is refused
  (``ASK``, or ``TRYAGAIN`` until the last key has moved). Such a slot group
  is sent again key by key, pipelined: to the slot's owner, then
  (``ASKING``) to the node each missing key moved to. So a batch whose keys
  are half migrated still reads and writes exactly the stored values, in two
  more round trips. ``ASK`` is followed to a primary that serves no slot yet
  too (one just added, receiving its first slot).
- ``clear`` on every primary: ``SCAN`` pages, each page's keys deleted by slot
  (``UNLINK`` per slot group, pipelined with the next ``SCAN``).
- the ``cluster_hash_tag`` option: keys become ``{resource_type}:key``, so
  every key of a resource type lives in one slot and a batch is one command.
- the ``read_from_replicas`` option: ``get`` and each slot group of
  ``get_many`` go to a replica of the slot's primary (in turn, over
  ``READONLY`` connections, now and then with a ``ROLE`` check in the same
  round trip, :mod:`~pevensie_redis.replica_choice`); a read that fails there,
  or meets a replica whose link to its primary is down, goes to the primary
  at once by the usual path. Writes never go to a replica. The read path is
  bound when the driver is built, so without the option nothing is chosen
  per call. Which replicas each slot has comes with the slot map, read again
  every :data:`~pevensie_redis.replica_choice.REFRESH_INTERVAL` seconds.
- the ``near_cache`` option: :class:`AsyncNearRedisClusterDriver` answers
  reads from a local store kept coherent by one invalidation listener per
  primary (:mod:`~pevensie_redis.cluster_near_async`).

Each node gets up to ``pool_size`` connections with the driver's timeouts,
credentials and TLS settings. A call to a node that does not answer fails
with :class:`~pevensie_redis.RedisTimeoutError` after ``retries + 1``
attempts, each bounded by ``timeout`` (see the router). While a dead
primary's replica is being promoted (about ``cluster-node-timeout`` + 1-2 s),
calls for its slots raise :class:`~pevensie_redis.RedisConnectionError`; the
first call after the promotion reads the new slot map and succeeds. A call
that meets ``CLUSTERDOWN`` or ``TRYAGAIN`` (a node that has not caught up
with a failover yet) is sent again until the cluster serves it or the call's
``timeout`` is spent, then raises :class:`~pevensie_redis.RedisServerError`
with the cluster's reply.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from pevensie_cache.driver import Progress
from pevensie_redis.cluster_attempts import Attempts
from pevensie_redis.cluster_batch import (
    Batch,
    Outcome,
    ScriptsRefused,
    Unit,
    always,
    one_by_one,
    settle_replica,
    slot_key_groups,
    unlinks,
)
from pevensie_redis.cluster_io_async import MAX_REDIRECTS, ClusterIO, open_cluster
from pevensie_redis.cluster_near_async import ClusterListeners
from pevensie_redis.config import RedisConfig
from pevensie_redis.errors import (
    RedisConnectionError,
    RedisDriverError,
    counter_error,
    decode_value,
    map_error,
    refuses_scripting,
)
from pevensie_redis.lock_releases_async import LockReleases, LockWatch
from pevensie_redis.near import MISS, NearStats, NearStore, Ticket
from pevensie_redis.protocol.commands import (
    EXTEND_LOCK_SCRIPT,
    GET_REPLY,
    INCR_EX_SCRIPT,
    INTEGER_REPLY,
    LOCK_RELEASED_CHANNEL,
    RELEASE_LOCK_SCRIPT,
    ROLE,
    ROLE_REPLY,
    SCAN_REPLY,
    SCRIPT_LOAD_REPLY,
    SET_EX_SCRIPT,
    SET_NX_REPLY,
    SET_REPLY,
    Shape,
    chunks,
    encode_envelope,
    mget_reply,
    pack,
    pack_delete,
    pack_get,
    pack_scan,
    pack_set,
    pack_set_ex,
    pack_set_many_ex,
    pack_set_nx,
    replica_in_sync,
)
from pevensie_redis.protocol.keys import key_maker, lock_key, scan_pattern
from pevensie_redis.protocol.keys import prefix as key_prefix
from pevensie_redis.protocol.slots import (
    ASK,
    CLUSTERDOWN,
    MOVED,
    TRYAGAIN,
    cluster_error,
    key_slot,
    redirect_of,
)
from pevensie_redis.replica_choice import ReplicaChoice
from pevensie_redis.tls_check import check_tls_async

__all__ = ["AsyncNearRedisClusterDriver", "AsyncRedisClusterDriver"]


class AsyncRedisClusterDriver:
    """A Pevensie Cache driver for a Redis Cluster; see :class:`RedisConfig` ``cluster``.

    Safe for any number of concurrent callers, like the single-server driver.
    ``config.host``/``config.port`` name any node; the others are discovered
    at ``connect()``.
    """

    stores_envelopes = True
    """The cache's envelopes are stored with their mark as the byte ``0xFF`` (as on one server)."""

    def __init__(self, config: RedisConfig) -> None:
        """Prepare a driver for ``config`` (with ``cluster=True``); nothing connects yet."""
        if not isinstance(config, RedisConfig):
            raise TypeError(f"config must be a RedisConfig, not {type(config).__name__}")
        if not config.cluster:
            raise ValueError(f"{type(self).__name__} needs a RedisConfig with cluster=True")
        self.config = config
        self._io: ClusterIO | None = None
        self._releases: LockReleases | None = None
        self._hash_tag = config.cluster_hash_tag
        self._full = key_maker(hash_tag=config.cluster_hash_tag)
        """The stored key of ``(resource_type, key)`` (hash-tagged with ``cluster_hash_tag``)."""
        self._scripting = True
        self._choice = ReplicaChoice() if config.read_from_replicas else None
        """How a read's replica is chosen, with ``read_from_replicas``."""
        self._read: Callable[[bytes, bytes, str], Awaitable[Any]] = (
            self._get if self._choice is None else self._get_from_replica
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.display_url()!r})"

    @property
    def router(self) -> ClusterIO | None:
        """The router while connected (slot map, nodes, redirects followed), else ``None``.

        For tools that talk to the nodes themselves (the inspector, tests):
        :meth:`~pevensie_redis.cluster_io_async.ClusterIO.primaries`,
        :meth:`~pevensie_redis.cluster_io_async.ClusterIO.execute` (one
        command, routed by slot) and
        :meth:`~pevensie_redis.cluster_io_async.ClusterIO.exchange` (commands
        to one node).
        """
        return self._io

    @property
    def replica_choice(self) -> ReplicaChoice | None:
        """How reads choose a replica, with ``read_from_replicas`` (else ``None``)."""
        return self._choice

    def prefix(self, resource_type: str) -> str:
        """Return what every stored key of ``resource_type`` starts with.

        ``<resource_type>:``, or ``{<resource_type>}:`` with ``cluster_hash_tag``.
        """
        return key_prefix(resource_type, hash_tag=self._hash_tag)

    # -- lifecycle -------------------------------------------------------------------

    async def connect(self) -> None:
        """Discover the cluster from the configured node and check every primary answers.

        Raises :class:`RedisConnectionError`, :class:`RedisTimeoutError` or
        :class:`RedisAuthenticationError` (and closes everything) when it cannot;
        :class:`~pevensie_redis.RedisProtocolError` at once for a TLS configuration
        whose node speaks plain Redis.
        """
        await check_tls_async(self.config)
        io = await open_cluster(self.config)
        if self._choice is not None:
            try:
                await self._check_replicas(io)
            except BaseException:
                await io.close()
                raise
        self._scripting = True
        self._io = io
        self._releases = io.lock_releases()

    async def disconnect(self) -> None:
        """Close the connections to every node."""
        io, self._io = self._io, None
        releases, self._releases = self._releases, None
        try:  # the connections close even when stopping the subscriber was interrupted
            if releases is not None:
                await releases.stop()
        finally:
            if io is not None:
                await io.close()

    # -- single operations -----------------------------------------------------------

    async def get(self, resource_type: str, key: str) -> str | None:
        """``GET`` on the key's node; ``None`` when absent or expired."""
        full = self._full(resource_type, key)
        value = await self._read(full, pack_get(full), "GET")
        return None if value is None else decode_value(value, "GET")

    async def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """One atomic ``SET`` (with ``EX`` for a TTL) on the key's node."""
        full = self._full(resource_type, key)
        try:
            data = value.encode()
        except UnicodeEncodeError:
            data = encode_envelope(value)
        if ttl_seconds is None:
            packed = pack_set(full, data)
        else:
            packed = pack_set_ex(full, data, ttl_seconds)
        await self._single(key_slot(full), packed, "SET", SET_REPLY)

    async def delete(self, resource_type: str, key: str) -> bool:
        """``UNLINK`` on the key's node; whether it removed a key (an absent one is fine)."""
        full = self._full(resource_type, key)
        return bool(await self._single(key_slot(full), pack_delete(full), "UNLINK", INTEGER_REPLY))

    # -- atomic operations and clear -------------------------------------------------

    async def add(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> bool:
        """``SET ... NX [EX ttl]`` on the key's node: store only if absent."""
        full = self._full(resource_type, key)
        packed = pack_set_nx(full, value.encode(), ttl_seconds)
        reply = await self._single(key_slot(full), packed, "SET NX", SET_NX_REPLY, once=True)
        return reply is not None

    async def incr(self, resource_type: str, key: str, delta: int, ttl_seconds: int | None) -> int:
        """``INCRBY`` on the key's node; with a TTL, ``SET key 0 NX EX ttl`` first.

        With a TTL both run in one ``EVAL`` of
        :data:`~pevensie_redis.protocol.commands.INCR_EX_SCRIPT`, where the server's
        clock stands still: as two commands, a key that expired between them was
        recreated by ``INCRBY`` without a TTL. A server that refuses scripts gets
        the two commands.
        """
        full = self._full(resource_type, key)
        slot = key_slot(full)
        if ttl_seconds is not None and self._scripting:
            script = [INCR_EX_SCRIPT, b"1", full, b"%d" % delta, b"%d" % ttl_seconds]
            try:
                counted: int = await self._single(
                    slot, pack([b"EVAL", *script]), "EVAL", INTEGER_REPLY, raw=True, once=True
                )
                return counted
            except RedisError as exc:
                if not refuses_scripting(exc):
                    raise counter_error(exc, "INCRBY") from exc
                self._scripting = False
        try:
            if ttl_seconds is not None:
                created = pack_set_nx(full, b"0", ttl_seconds)
                await self._single(slot, created, "SET NX", SET_NX_REPLY, raw=True, once=True)
            packed = pack([b"INCRBY", full, b"%d" % delta])
            result: int = await self._single(
                slot, packed, "INCRBY", INTEGER_REPLY, raw=True, once=True
            )
        except RedisError as exc:
            raise counter_error(exc, "INCRBY") from exc
        return result

    async def touch(self, resource_type: str, key: str, ttl_seconds: int | None) -> bool:
        """``EXPIRE`` on the key's node, or without a TTL ``EXISTS`` then ``PERSIST``."""
        full = self._full(resource_type, key)
        slot = key_slot(full)
        if ttl_seconds is not None:
            packed = pack([b"EXPIRE", full, b"%d" % ttl_seconds])
            return bool(await self._single(slot, packed, "EXPIRE", INTEGER_REPLY) == 1)
        exists = await self._single(slot, pack([b"EXISTS", full]), "EXISTS", INTEGER_REPLY)
        await self._single(slot, pack([b"PERSIST", full]), "PERSIST", INTEGER_REPLY)
        return bool(exists == 1)

    async def exists(self, resource_type: str, key: str) -> bool:
        """``EXISTS`` on the key's node."""
        full = self._full(resource_type, key)
        packed = pack([b"EXISTS", full])
        return bool(await self._single(key_slot(full), packed, "EXISTS", INTEGER_REPLY) == 1)

    async def ttl_ms(self, resource_type: str, key: str) -> int:
        """``PTTL`` on the key's node: -2 when absent, -1 without expiry, else ms left."""
        full = self._full(resource_type, key)
        packed = pack([b"PTTL", full])
        left: int = await self._single(key_slot(full), packed, "PTTL", INTEGER_REPLY)
        return left

    async def clear(self, resource_type: str, on_progress: Progress | None = None) -> int:
        """Delete every ``<resource_type>:*`` key on every primary, page by page.

        The resource type's glob characters are escaped, so only its own keys
        match; each page's keys are deleted per slot (``UNLINK``), pipelined
        with the next ``SCAN``, and a key that moved meanwhile is deleted
        where it is now.
        """
        io = self._live()
        pattern = scan_pattern(resource_type, hash_tag=self._hash_tag)
        deleted = 0
        failure: BaseException | None = None
        for node in io.primaries():
            cursor = b"0"
            pending: list[bytes] = []
            while True:
                commands = [pack_scan(cursor, pattern), *unlinks(pending)]
                shapes = [SCAN_REPLY, *[INTEGER_REPLY] * (len(commands) - 1)]
                replies = await io.exchange(node, commands, "SCAN", shapes=shapes)
                if not replies or isinstance(replies[0], Exception):
                    # This primary failed: delete what it listed elsewhere, go on with the
                    # others, and say so at the end (its other keys are not cleared).
                    deleted += await self._unlink_routed(pending)
                    failure = failure or (
                        replies[0] if replies else RedisConnectionError(f"{node} did not answer")
                    )
                    break
                deleted += await self._count_unlinked(pending, replies[1:])
                if on_progress is not None and pending:
                    on_progress(deleted)
                cursor, pending = replies[0]
                if cursor == b"0":
                    if pending:
                        deleted += await self._count_unlinked(
                            pending, await self._unlink_on(io, node, pending)
                        )
                        if on_progress is not None:
                            on_progress(deleted)
                    break
        if failure is not None:
            if isinstance(failure, RedisDriverError):
                raise failure
            raise map_error(failure, f"clear ({deleted} keys deleted on the other primaries)")
        return deleted

    async def acquire_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """``SET :lock:<prefix><key> token NX PX lease_ms`` on the lock key's node."""
        lock = self._lock_key(resource_type, key)
        packed = pack([b"SET", lock, token.encode(), b"NX", b"PX", b"%d" % lease_ms])
        reply = await self._single(key_slot(lock), packed, "SET NX PX", SET_NX_REPLY, once=True)
        return reply is not None

    async def release_lock(self, resource_type: str, key: str, token: str) -> None:
        """Delete the lock only if ``token`` still holds it (``EVAL`` of the release script).

        The script then publishes the release, which wakes the waiters.
        """
        lock = self._lock_key(resource_type, key)
        slot = key_slot(lock)
        if self._scripting:
            packed = pack(
                [b"EVAL", RELEASE_LOCK_SCRIPT, b"1", lock, token.encode(), LOCK_RELEASED_CHANNEL]
            )
            try:
                await self._single(slot, packed, "EVAL", INTEGER_REPLY, raw=True)
                return
            except RedisError as exc:
                if not refuses_scripting(exc):
                    raise map_error(exc, "EVAL") from exc
                self._scripting = False
        held = await self._single(slot, pack_get(lock), "GET", GET_REPLY)
        if held == token.encode():
            await self._single(slot, pack_delete(lock), "UNLINK", INTEGER_REPLY)
            publish = pack([b"PUBLISH", LOCK_RELEASED_CHANNEL, lock])
            # It only wakes the waiters: refused (an ACL), they poll.
            with contextlib.suppress(RedisDriverError):
                await self._single(slot, publish, "PUBLISH", INTEGER_REPLY)

    async def watch_lock(self, resource_type: str, key: str) -> LockWatch | None:
        """Watch the key's lease: its release wakes ``wait``; ``None`` while releases can't reach.

        One subscriber connection per driver, on one primary (a release
        published on any node reaches them all); waiters poll while it is down.
        """
        releases = self._releases
        if releases is None:
            return None
        return await releases.watch(self._lock_key(resource_type, key), self.config.timeout_seconds)

    async def extend_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """Give the lock a new lease if ``token`` holds it (``EVAL`` of the script)."""
        lock = self._lock_key(resource_type, key)
        slot = key_slot(lock)
        if self._scripting:
            script = [EXTEND_LOCK_SCRIPT, b"1", lock, token.encode(), b"%d" % lease_ms]
            try:
                reply = await self._single(
                    slot, pack([b"EVAL", *script]), "EVAL", INTEGER_REPLY, raw=True
                )
                return bool(reply == 1)
            except RedisError as exc:
                if not refuses_scripting(exc):
                    raise map_error(exc, "EVAL") from exc
                self._scripting = False
        held = await self._single(slot, pack_get(lock), "GET", GET_REPLY)
        if held != token.encode():
            return False
        expire = pack([b"PEXPIRE", lock, b"%d" % lease_ms])
        return bool(await self._single(slot, expire, "PEXPIRE", INTEGER_REPLY) == 1)

    # -- batch operations ------------------------------------------------------------

    async def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """One ``MGET`` per slot, the slots of each node pipelined; misses are absent."""
        unique = list(dict.fromkeys(keys))
        full = self._full
        fulls = [full(resource_type, key) for key in unique]
        found: dict[str, str] = {}

        def collect(indexes: list[int], values: list[Any]) -> None:
            for index, value in zip(indexes, values, strict=True):
                if value is not None:
                    found[unique[index]] = decode_value(value, "MGET")

        await self._scatter(
            Batch(
                "MGET",
                fulls,
                together=lambda part: pack([b"MGET", *(fulls[i] for i in part)]),
                alone=lambda i: pack_get(fulls[i]),
                shapes=(mget_reply, GET_REPLY),
                collect=collect,
                read=True,
            )
        )
        return found

    async def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        """One ``MSET`` per slot; with a TTL one ``EVALSHA`` of the ``SET ... EX`` script per slot.

        On a cluster that refuses scripts, a pipeline of ``SET ... EX`` per node instead.
        """
        full = self._full
        fulls = [full(resource_type, key) for key in items]
        values = [value.encode() for value in items.values()]

        if ttl_seconds is None:
            await self._scatter(
                Batch(
                    "MSET",
                    fulls,
                    together=lambda part: pack(
                        [b"MSET", *(item for i in part for item in (fulls[i], values[i]))]
                    ),
                    alone=lambda i: pack_set(fulls[i], values[i]),
                    shapes=(always(SET_REPLY), SET_REPLY),
                )
            )
            return

        def alone(i: int) -> bytes:
            return pack_set_ex(fulls[i], values[i], ttl_seconds)

        if self._scripting:

            def script(part: list[int]) -> bytes:
                return pack_set_many_ex(
                    [fulls[i] for i in part], [values[i] for i in part], ttl_seconds
                )

            try:
                shapes = (always(INTEGER_REPLY), SET_REPLY)
                await self._scatter(
                    Batch("EVALSHA", fulls, script, alone, shapes=shapes, scripted=True)
                )
                return
            except ScriptsRefused:
                self._scripting = False
        await self._scatter(Batch("SET EX", fulls, None, alone, shapes=(None, SET_REPLY)))

    async def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """One ``UNLINK`` per slot, the slots of each node pipelined; absent keys are fine."""
        full = self._full
        fulls = list(dict.fromkeys(full(resource_type, key) for key in keys))
        await self._scatter(
            Batch(
                "UNLINK",
                fulls,
                together=lambda part: pack([b"UNLINK", *(fulls[i] for i in part)]),
                alone=lambda i: pack_delete(fulls[i]),
                shapes=(always(INTEGER_REPLY), INTEGER_REPLY),
            )
        )

    # -- the command paths -----------------------------------------------------------

    def _live(self) -> ClusterIO:
        io = self._io
        if io is None:
            raise RedisConnectionError("the Redis Cluster driver is not connected")
        return io

    def _lock_key(self, resource_type: str, key: str) -> bytes:
        """Return the lease lock's key: ``:lock:`` before the key (hash-tagged like it)."""
        return lock_key(resource_type, key, hash_tag=self._hash_tag)

    async def _single(
        self,
        slot: int,
        packed: bytes,
        command: str,
        shape: Shape,
        *,
        raw: bool = False,
        once: bool = False,
    ) -> Any:
        """Send ``packed`` to the node serving ``slot``, following the cluster; return the reply.

        An error reply is raised mapped, or as redis-py's with ``raw`` (for
        the caller to read). A command that must run ``once`` is sent again
        only when it cannot have run (a redirect, a connection never made).
        A reply without ``shape`` raises :class:`~pevensie_redis.RedisProtocolError`.
        """
        reply = await self._live().execute(slot, packed, command, once=once, shape=shape)
        if isinstance(reply, Exception):
            if raw:
                raise reply
            raise map_error(reply, command) from reply
        return reply

    async def _get(self, full: bytes, packed: bytes, command: str) -> Any:
        """Read ``full`` from the primary serving it."""
        return await self._single(key_slot(full), packed, command, GET_REPLY)

    async def _get_from_replica(self, full: bytes, packed: bytes, command: str) -> Any:
        """Read ``full`` from a replica of its primary; on any trouble, at once from the primary.

        The replica's answer is used only if it came without an error (and,
        when this read carries the replica's ``ROLE`` check, with its link to
        the primary up); else the replica is avoided for a while.
        """
        io = self._live()
        choice = self._choice
        if choice is None:  # replica reads are off: the primary answers
            return await self._get(full, packed, command)
        if choice.refresh_due():
            await io.refresh()
        slot = key_slot(full)
        node = choice.pick(io.replicas_of(slot))
        if node is not None:
            check = choice.check_due(node)
            try:
                replies = await io.exchange(
                    node,
                    [ROLE, packed] if check else [packed],
                    command,
                    readonly=True,
                    shapes=[ROLE_REPLY, GET_REPLY] if check else [GET_REPLY],
                )
            except RedisDriverError:
                replies = []
            if check:
                replies = replies[1:] if replies and replica_in_sync(replies[0]) else []
            if replies and not isinstance(replies[0], Exception):
                return replies[0]
            choice.avoid(node)
        return await self._single(slot, packed, command, GET_REPLY)

    async def _check_replicas(self, io: ClusterIO) -> None:
        """Check that each replica accepts this client's reads.

        A replica that refuses the credentials, ``READONLY`` or ``ROLE`` raises
        the driver's error (the user or its ACL is missing there); one that
        does not answer is read from once it does.
        """
        if self._choice is not None:
            self._choice.refresh_due()  # the map was read now: the next time is an interval away
        replicas = dict.fromkeys(name for names in io.slot_map.replicas for name in names)
        for node in replicas:
            replies = await io.exchange(node, [ROLE], "ROLE", readonly=True, shapes=[ROLE_REPLY])
            if replies and isinstance(replies[0], Exception):
                raise map_error(replies[0], f"ROLE on the replica {node}") from replies[0]

    async def _count_unlinked(self, keys: list[bytes], replies: list[Any]) -> int:
        """Add up the ``UNLINK`` replies of ``keys``' slot groups; send again what failed."""
        groups = slot_key_groups(keys)
        deleted = 0
        for position, group in enumerate(groups):
            reply = replies[position] if position < len(replies) else None
            if isinstance(reply, int):
                deleted += reply
            else:
                deleted += await self._unlink_routed(group)
        return deleted

    async def _unlink_routed(self, keys: list[bytes]) -> int:
        deleted = 0
        for key in keys:
            reply = await self._single(key_slot(key), pack_delete(key), "UNLINK", INTEGER_REPLY)
            deleted += int(reply)
        return deleted

    async def _unlink_on(self, io: ClusterIO, node: str, keys: list[bytes]) -> list[Any]:
        """``UNLINK`` ``keys`` on ``node``, one command per slot group; return the replies."""
        commands = unlinks(keys)
        return await io.exchange(node, commands, "UNLINK", shapes=[INTEGER_REPLY] * len(commands))

    async def _scatter(self, batch: Batch) -> None:
        """Run ``batch``: each node's commands pipelined, every node at once, pass after pass.

        A pass sends every command left to the node the slot map names (with
        ``read_from_replicas``, the first pass of a read to replicas). What it
        leaves undone goes into the next pass: a slot group that met ``ASK``
        or ``TRYAGAIN`` (its slot is being migrated) key by key; a key that met
        ``ASK`` after ``ASKING`` to the node it moved to, in the same pass; a
        command that met ``MOVED`` to the slot's new owner; one whose node did
        not answer, or that met ``CLUSTERDOWN`` (or a single-key ``TRYAGAIN``),
        once the slot map has been read again, after a back-off. The router's
        bounds hold for the batch as a whole
        (:class:`~pevensie_redis.cluster_attempts.Attempts`, from the batch's
        start): :data:`~pevensie_redis.cluster_io_async.MAX_REDIRECTS` passes
        after redirects; passes whose commands were all refused before they
        ran while the timeout has time left; ``retries`` passes after a node
        did not answer (then the failure is raised).
        """
        io = self._live()
        units = [unit for indexes in batch.slot_groups() for unit in batch.units(indexes)]
        started = time.monotonic()
        attempts: Attempts | None = None  # made at the first failed pass (see Attempts)
        redirects = 0
        replicas = batch.read
        while units:
            seen = io.generation
            outcome = await self._pass(batch, units, replicas=replicas)
            replicas = False
            asked, outcome.asked = outcome.asked, {}
            for node, sent in asked.items():
                answers = await io.ask(
                    node,
                    [batch.pack(unit) for unit in sent],
                    batch.name,
                    [batch.shape(unit) for unit in sent],
                )
                outcome.add(self._settle(batch, node, sent, answers))
            # An ASK after ASKING: the next pass starts again from the slot's owner.
            outcome.moved += [unit for again in outcome.asked.values() for unit in again]
            units = [
                *outcome.moved,
                *outcome.failed,
                *(single for unit in outcome.split for single in one_by_one(unit)),
            ]
            if outcome.moved or asked:
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise RedisConnectionError(
                        f"{batch.name}: the cluster kept redirecting the commands "
                        f"({redirects - 1} passes)"
                    )
            if outcome.failed:
                # A pass is refused when every command left was refused before it ran.
                attempts = attempts or io.attempts(started)
                again = attempts.failed() if outcome.unreachable else attempts.refused()
                if not again:
                    if not outcome.unreachable:
                        io.gave_up()
                    error = outcome.error or RedisConnectionError("the cluster did not answer")
                    if isinstance(error, RedisDriverError):
                        raise error
                    raise map_error(error, attempts.spent(batch.name)) from error
                await io.refresh(seen, avoid=outcome.avoid)
                await io.pause(attempts)

    async def _pass(self, batch: Batch, units: list[Unit], *, replicas: bool = False) -> Outcome:
        """Send ``units`` to the nodes the slot map names; deliver the replies; return the rest.

        ``replicas`` (a read, with ``read_from_replicas``): each slot's commands
        go to a replica of its primary where there is one to use; what a
        replica does not answer well goes to the primaries at once, in a
        second pass.
        """
        io = self._live()
        choice = self._choice if replicas else None
        if choice is not None and choice.refresh_due():
            await io.refresh()
        slot_of = batch.slot_of
        primaries = io.slot_map.primaries
        by_node: dict[str, list[Unit]] = {}
        readonly: set[str] = set()
        outcome = Outcome()
        for unit in units:
            slot = slot_of[unit[0][0]]
            node = None if choice is None else choice.pick(io.replicas_of(slot))
            if node is not None:
                readonly.add(node)
            else:
                node = primaries[slot]
            if node is not None:
                by_node.setdefault(node, []).append(unit)
            else:
                outcome.fail(
                    [unit], RedisConnectionError(f"{batch.name}: no node serves slot {slot}"), None
                )
        checked = set() if choice is None else {n for n in readonly if choice.check_due(n)}
        packed = {
            node: ([ROLE] if node in checked else []) + [batch.pack(unit) for unit in units]
            for node, units in by_node.items()
        }
        shapes = {
            node: ([ROLE_REPLY] if node in checked else []) + [batch.shape(unit) for unit in units]
            for node, units in by_node.items()
        }
        answers = await io.exchange_many(packed, batch.name, readonly=readonly, shapes=shapes)
        again: list[Unit] = []
        for node, node_units in by_node.items():
            replies = answers[node]
            if node in readonly:
                failed = settle_replica(batch, node_units, replies, checked=node in checked)
                if failed and choice is not None:
                    choice.avoid(node)
                    again += failed
            elif isinstance(replies, RedisDriverError):
                outcome.fail(node_units, replies, node)
            else:
                outcome.add(await self._settle_node(batch, node, node_units, replies))
        if again:
            outcome.add(await self._pass(batch, again))
        return outcome

    async def _settle_node(
        self, batch: Batch, node: str, units: list[Unit], replies: list[Any]
    ) -> Outcome:
        """Deliver a node's replies; first load the script where the node lacked it."""
        if batch.scripted:
            missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                # First use on this node, or its script cache was flushed: load it, resend.
                io = self._live()
                load = pack([b"SCRIPT", b"LOAD", SET_EX_SCRIPT])
                resend = [batch.pack(units[n]) for n in missing]
                shapes = [SCRIPT_LOAD_REPLY, *(batch.shape(units[n]) for n in missing)]
                again = await io.exchange(node, [load, *resend], batch.name, shapes=shapes)
                if again and isinstance(again[0], Exception):
                    if refuses_scripting(again[0]):
                        raise ScriptsRefused from again[0]
                    raise map_error(again[0], "SCRIPT LOAD") from again[0]
                for n, reply in zip(missing, again[1:], strict=False):
                    replies[n] = reply
        return self._settle(batch, node, units, replies)

    def _settle(self, batch: Batch, node: str, units: list[Unit], replies: list[Any]) -> Outcome:
        """Deliver ``node``'s good replies; return what must be sent again.

        Raises the first error reply that no other attempt can fix, mapped.
        """
        io = self._live()
        outcome = Outcome()
        failure: Exception | None = None
        collect = batch.collect
        for position, unit in enumerate(units):
            if position >= len(replies):  # never answered: the node did not answer
                outcome.fail([unit], RedisConnectionError(f"{node} did not answer"), node)
                continue
            reply = replies[position]
            if not isinstance(reply, Exception):
                if collect is not None:
                    collect(unit[0], reply if unit[1] else [reply])
                continue
            kind = cluster_error(reply)
            redirect = redirect_of(reply) if kind in (MOVED, ASK) else None
            if unit[1] and kind in (TRYAGAIN, ASK):
                outcome.split.append(unit)  # its keys are split between two nodes
            elif redirect is not None and redirect.ask:
                outcome.asked.setdefault(io.asked(redirect, node), []).append(unit)
            elif redirect is not None:
                io.moved(redirect, node)
                outcome.moved.append(unit)
            elif kind in (TRYAGAIN, CLUSTERDOWN) or isinstance(reply, NoScriptError):
                outcome.fail([unit], reply, None)
            elif failure is None:
                failure = reply
        if failure is not None:
            if batch.scripted and refuses_scripting(failure):
                raise ScriptsRefused from failure
            raise map_error(failure, batch.name) from failure
        return outcome


class AsyncNearRedisClusterDriver(AsyncRedisClusterDriver):
    """The Cluster driver with a near cache (``cluster=True, near_cache=True``).

    Reads (``get``, ``get_many``) are answered from a local store of recent
    reads, filled from the primaries and kept coherent by one invalidation
    listener per primary (:mod:`~pevensie_redis.cluster_near_async`, which
    lists what failovers, slot migrations and added or removed nodes do to
    it). A read that misses locally sends ``GET`` and ``PTTL`` (``get_many``:
    one ``MGET`` per slot and a ``PTTL`` per key, each node's pipelined, every
    node at once) straight to the node the slot map names; it is kept only if
    that node answered it and was listened to all along. A read redirected,
    or whose node is not listened to now, goes the usual way (with
    ``read_from_replicas``: to a replica) and is not kept. This process's own
    writes drop their keys as they complete (read-your-writes).
    """

    def __init__(self, config: RedisConfig) -> None:
        """Prepare a driver for ``config`` (with ``cluster`` and ``near_cache``)."""
        super().__init__(config)
        if not config.near_cache:
            raise ValueError(f"{type(self).__name__} needs a RedisConfig with near_cache=True")
        self._near: NearStore | None = None
        self._listeners: ClusterListeners | None = None

    @property
    def cluster_listeners(self) -> ClusterListeners | None:
        """The near cache's listeners (one per primary) while connected, else ``None``."""
        return self._listeners

    async def connect(self) -> None:
        """Connect as the Cluster driver does, then listen to every primary.

        Raises a :class:`~pevensie_cache.ConfigError` when a node refuses key
        tracking (see :func:`~pevensie_redis.errors.near_cache_refused`), and
        the driver's errors when a primary cannot be listened to.
        """
        await super().connect()
        near = NearStore(self.config.near_cache_size, self.config.near_cache_max_bytes)
        listeners = ClusterListeners(self._live(), self.config, near)
        # Held before they start: an exception raised into this call once they run (a
        # signal handler's, a cancellation) leaves nothing disconnect() cannot stop.
        self._near, self._listeners = near, listeners
        try:
            await listeners.start()
        except BaseException as exc:
            await self.disconnect()
            if isinstance(exc, RedisError | OSError):
                raise map_error(exc, f"connecting to {self.config.display_url()}") from exc
            raise

    async def disconnect(self) -> None:
        """Stop listening, then close the connections to every node."""
        listeners, self._listeners = self._listeners, None
        self._near = None
        try:  # the connections close even when stopping the listeners was interrupted
            if listeners is not None:
                await listeners.stop()
        finally:
            await super().disconnect()

    def near_cache_stats(self) -> NearStats | None:
        """Return the near cache's counters (hits, misses, invalidations, ...), while connected."""
        near = self._near
        return None if near is None else near.stats()

    # -- reads -------------------------------------------------------------------------

    async def get(self, resource_type: str, key: str) -> str | None:
        """Return the local entry when there is one; else ``GET`` and ``PTTL`` on the key's node."""
        full = self._full(resource_type, key)
        near = self._store()
        held = near.lookup(full)
        if held is not None:
            return None if held is MISS else held
        io = self._live()
        node = io.node_of(key_slot(full))
        ticket = None if node is None else near.begin((full,), node)
        if node is None or ticket is None:  # not kept: the usual way (replicas, redirects)
            value = await self._read(full, pack_get(full), "GET")
            return None if value is None else decode_value(value, "GET")
        try:
            replies = await io.exchange(
                node,
                [pack_get(full), pack([b"PTTL", full])],
                "GET",
                shapes=[GET_REPLY, INTEGER_REPLY],
            )
            kept = len(replies) == 2 and not _any_error(replies)
            text = None
            if kept and replies[0] is not None:
                text = decode_value(replies[0], "GET")
        except BaseException:
            near.abandon(ticket, (full,))
            raise
        if kept:
            near.finish(ticket, ((full, text, replies[1]),), node)
            return text
        near.abandon(ticket, (full,))
        self._learn(io, node, replies)
        value = await self._get(full, pack_get(full), "GET")  # redirected, failed: not kept
        return None if value is None else decode_value(value, "GET")

    async def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """Return local entries where there are some; read the others from their nodes at once.

        Each node gets one ``MGET`` per slot and a ``PTTL`` per key, in one
        write; a node whose replies are not all good (a slot that moved, a
        node that did not answer) has its keys read again the usual way, not kept.
        """
        near = self._store()
        found: dict[str, str] = {}
        wanted: dict[bytes, str] = {}
        full = self._full
        for key in keys:
            name = full(resource_type, key)
            held = near.lookup(name)
            if held is None:
                wanted[name] = key
            elif held is not MISS:
                found[key] = held
        if not wanted:
            return found
        io = self._live()
        by_node: dict[str, dict[int, list[bytes]]] = {}
        rest: list[str] = []
        for name in wanted:
            slot = key_slot(name)
            node = io.node_of(slot)
            if node is None:
                rest.append(wanted[name])
            else:
                by_node.setdefault(node, {}).setdefault(slot, []).append(name)
        tickets: dict[str, tuple[Ticket, list[Sequence[bytes]]]] = {}
        try:
            for node, slots in by_node.items():
                parts = [part for names in slots.values() for part in chunks(names)]
                ticket = near.begin([name for part in parts for name in part], node)
                if ticket is None:
                    rest += [wanted[name] for part in parts for name in part]
                else:
                    tickets[node] = (ticket, parts)
            packed: dict[str, list[bytes]] = {}
            shapes: dict[str, list[Shape | None]] = {}
            for node, (_, parts) in tickets.items():
                names = [name for part in parts for name in part]
                packed[node] = [pack([b"MGET", *part]) for part in parts]
                packed[node] += [pack([b"PTTL", name]) for name in names]
                shapes[node] = [mget_reply(len(part)) for part in parts]
                shapes[node] += [INTEGER_REPLY] * len(names)
            answers = await io.exchange_many(packed, "MGET", shapes=shapes) if packed else {}
            for node in list(tickets):
                ticket, parts = tickets.pop(node)
                names = [name for part in parts for name in part]
                replies = answers.get(node)
                if (
                    not isinstance(replies, list)
                    or len(replies) != len(parts) + len(names)
                    or _any_error(replies)
                ):
                    near.abandon(ticket, names)
                    self._learn(io, node, replies if isinstance(replies, list) else [])
                    rest += [wanted[name] for name in names]
                    continue
                try:
                    values = [value for values in replies[: len(parts)] for value in values]
                    texts = [None if v is None else decode_value(v, "MGET") for v in values]
                except BaseException:
                    near.abandon(ticket, names)
                    raise
                near.finish(ticket, zip(names, texts, replies[len(parts) :], strict=True), node)
                for name, text in zip(names, texts, strict=True):
                    if text is not None:
                        found[wanted[name]] = text
        except BaseException:
            for ticket, parts in tickets.values():
                near.abandon(ticket, [name for part in parts for name in part])
            raise
        if rest:  # redirected, failed or not listened to: the usual way, not kept
            found.update(await super().get_many(resource_type, rest))
        return found

    # -- writes: each drops its keys from the local store as it completes ------------------

    async def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """``SET``, then drop the key locally (read-your-writes)."""
        try:
            await super().set(resource_type, key, value, ttl_seconds)
        finally:
            self._forget(resource_type, (key,))

    async def delete(self, resource_type: str, key: str) -> bool:
        """``UNLINK``, then drop the key locally."""
        try:
            return await super().delete(resource_type, key)
        finally:
            self._forget(resource_type, (key,))

    async def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        """Write the batch, then drop its keys locally."""
        try:
            await super().set_many(resource_type, items, ttl_seconds)
        finally:
            self._forget(resource_type, items)

    async def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """Delete the batch, then drop its keys locally."""
        keys = list(keys)
        try:
            await super().delete_many(resource_type, keys)
        finally:
            self._forget(resource_type, keys)

    async def add(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> bool:
        """``SET NX``, then drop the key locally."""
        try:
            return await super().add(resource_type, key, value, ttl_seconds)
        finally:
            self._forget(resource_type, (key,))

    async def incr(self, resource_type: str, key: str, delta: int, ttl_seconds: int | None) -> int:
        """``INCRBY``, then drop the key locally."""
        try:
            return await super().incr(resource_type, key, delta, ttl_seconds)
        finally:
            self._forget(resource_type, (key,))

    async def touch(self, resource_type: str, key: str, ttl_seconds: int | None) -> bool:
        """``EXPIRE``/``PERSIST``, then drop the key locally (its TTL changed)."""
        try:
            return await super().touch(resource_type, key, ttl_seconds)
        finally:
            self._forget(resource_type, (key,))

    async def clear(self, resource_type: str, on_progress: Progress | None = None) -> int:
        """Clear on every primary, then drop the resource type's keys locally."""
        try:
            return await super().clear(resource_type, on_progress)
        finally:
            near = self._near
            if near is not None:
                near.forget_prefix(self.prefix(resource_type).encode())

    def _store(self) -> NearStore:
        near, listeners = self._near, self._listeners
        if near is None or listeners is None:
            raise RedisConnectionError("the Redis Cluster driver is not connected")
        listeners.ensure_running()  # after a fork: the child listens on its own
        return near

    def _forget(self, resource_type: str, keys: Iterable[str]) -> None:
        near = self._near
        if near is not None:
            full = self._full
            near.forget([full(resource_type, key) for key in keys])

    @staticmethod
    def _learn(io: ClusterIO, node: str, replies: Sequence[Any]) -> None:
        """Tell the router of a ``MOVED`` among ``replies`` (the map follows at once)."""
        for reply in replies:
            if isinstance(reply, Exception) and cluster_error(reply) == MOVED:
                redirect = redirect_of(reply)
                if redirect is not None:
                    io.moved(redirect, node)
                return


def _any_error(replies: Sequence[Any]) -> bool:
    return any(isinstance(reply, Exception) for reply in replies)
