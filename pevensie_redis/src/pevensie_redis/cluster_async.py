"""The Redis Cluster mode of the driver (``RedisConfig(cluster=True)``), async face.

This module is the source of the sync face too: ``cluster.py``
(:class:`~pevensie_redis.RedisClusterDriver`) is generated from it by
``.ci/unasync.py``; only the I/O differs (:mod:`~pevensie_redis.cluster_io`,
redis-py connection pools, or :mod:`~pevensie_redis.cluster_io_async`,
multiplexed pipes). Edit this file, then run ``nox -s generate``.

redis-py's ``RedisCluster`` owns the topology: it discovers every node from
the one configured, keeps the slot map, and follows ``MOVED`` and ``ASK``
redirects, refreshing the map after a failover. This driver adds:

- a thin path for single-key operations: the key's slot picks the node from
  the slot map, and a pre-packed command goes straight to that node. Anything
  unusual (a redirect, a broken connection, a node that is gone,
  ``CLUSTERDOWN``) hands the command to ``RedisCluster``, which redirects,
  refreshes the slot map and retries; so the thin path keeps every guarantee
  of the full one.
- batch operations that never meet ``CROSSSLOT``: keys are grouped by slot,
  each slot group becomes one ``MGET``/``MSET``/``UNLINK`` (or one ``EVALSHA``
  of the ``SET ... EX`` script for ``set_many`` with a TTL), and the groups of
  each node are pipelined, every node at once. A slot group whose command
  meets a redirect, ``CLUSTERDOWN`` or a broken connection is resent through
  ``RedisCluster``; the replies of the other groups stand.
- batches that ride through resharding: while a slot is being migrated, a
  multi-key command whose keys are split between the two nodes is refused
  (``ASK``, then ``TRYAGAIN`` until the last key has moved, which can take
  longer than RedisCluster's retries last). Such a slot group is sent again
  key by key, pipelined: to the slot's owner, then (``ASKING``) to the node
  each missing key moved to. So a batch whose keys are half migrated still
  reads and writes exactly the stored values, in two more round trips.
- ``ASK`` followed here for single keys, also to a primary that serves no
  slot yet (one just added, receiving its first slot), which RedisCluster
  cannot follow itself.
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
  per call.

Every node gets ``pool_size`` connections with the driver's timeouts,
credentials and TLS settings. A call to a node that does not answer fails
with :class:`~pevensie_redis.RedisTimeoutError` after at most
``(retries + 2) * timeout`` (the thin path's attempt, then RedisCluster's).
While a dead primary's replica is being promoted (about
``cluster-node-timeout`` + 1-2 s), calls for its slots raise
:class:`~pevensie_redis.RedisConnectionError`; the first call after the
promotion refreshes the slot map and succeeds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeGuard

from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)

from pevensie_cache import PevensieCacheError
from pevensie_cache.driver import Progress
from pevensie_redis import wire
from pevensie_redis.cluster_io_async import BROKEN, FAILURES, ClusterIO, open_cluster
from pevensie_redis.config import RedisConfig
from pevensie_redis.errors import (
    RedisConnectionError,
    RedisDriverError,
    counter_error,
    decode_value,
    map_error,
    refuses_scripting,
)
from pevensie_redis.replica_choice import ReplicaChoice

__all__ = ["AsyncRedisClusterDriver"]

# A node answered for a slot it no longer serves (MOVED is an AskError), or is gone:
# RedisCluster knows what to do.
_REROUTE = (AskError, TryAgainError, ClusterDownError, *BROKEN)

_Group = tuple[int, list[int]]  # (slot, indexes of the keys in that slot, in input order)
# One command of a batch: the indexes of the keys it carries (in input order), and whether
# it is one multi-key command for all of them (else the single-key command of its one key).
# A plain tuple, not a NamedTuple: on a 100-key batch the attribute access cost about 10%.
_Unit = tuple[list[int], bool]


class AsyncRedisClusterDriver:
    """A Pevensie Cache driver for a Redis Cluster; see :class:`RedisConfig` ``cluster``.

    Safe for any number of concurrent callers, like the single-server driver.
    ``config.host``/``config.port`` name any node; the others are discovered
    at ``connect()``.
    """

    def __init__(self, config: RedisConfig) -> None:
        """Prepare a driver for ``config`` (with ``cluster=True``); nothing connects yet."""
        if not isinstance(config, RedisConfig):
            raise TypeError(f"config must be a RedisConfig, not {type(config).__name__}")
        if not config.cluster:
            raise ValueError(f"{type(self).__name__} needs a RedisConfig with cluster=True")
        self.config = config
        self._io: ClusterIO | None = None
        self._hash_tag = config.cluster_hash_tag
        self._scripting = True
        self._choice = ReplicaChoice() if config.read_from_replicas else None
        """How a read's replica is chosen, with ``read_from_replicas``."""
        self._replicas = wire.replicas_by_slot(None)
        """For each slot, the replicas of its primary (``CLUSTER SLOTS``, asked now and then)."""
        self._read: Callable[[bytes, bytes, tuple[Any, ...], str], Awaitable[Any]] = (
            self._single if self._choice is None else self._single_from_replica
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.display_url()!r})"

    @property
    def client(self) -> Any:
        """The live redis-py ``RedisCluster`` while connected, else ``None``."""
        return None if self._io is None else self._io.client

    @property
    def replica_choice(self) -> ReplicaChoice | None:
        """How reads choose a replica, with ``read_from_replicas`` (else ``None``)."""
        return self._choice

    def prefix(self, resource_type: str) -> str:
        """Return what every stored key of ``resource_type`` starts with.

        ``<resource_type>:``, or ``{<resource_type>}:`` with ``cluster_hash_tag``.
        """
        return f"{{{resource_type}}}:" if self._hash_tag else f"{resource_type}:"

    # -- lifecycle -------------------------------------------------------------------

    async def connect(self) -> None:
        """Discover the cluster from the configured node and check every primary answers.

        Raises :class:`RedisConnectionError`, :class:`RedisTimeoutError` or
        :class:`RedisAuthenticationError` (and closes everything) when it cannot.
        """
        try:
            io = await open_cluster(self.config)
        except PevensieCacheError:
            raise
        except FAILURES as exc:
            raise _map(exc, f"connecting to {self.config.display_url()}") from exc
        if self._choice is not None:
            try:
                await self._check_replicas(io)
            except BaseException:
                await io.close()
                raise
        self._scripting = True
        self._io = io

    async def disconnect(self) -> None:
        """Close the connections to every node."""
        io, self._io = self._io, None
        if io is not None:
            await io.close()

    # -- single operations -----------------------------------------------------------

    async def get(self, resource_type: str, key: str) -> str | None:
        """``GET`` on the key's node; ``None`` when absent or expired."""
        full = (self.prefix(resource_type) + key).encode()
        value = await self._read(full, wire.pack_get(full), ("GET", full), "GET")
        return None if value is None else decode_value(value, "GET")

    async def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """One atomic ``SET`` (with ``EX`` for a TTL) on the key's node."""
        full = (self.prefix(resource_type) + key).encode()
        data = value.encode()
        if ttl_seconds is None:
            await self._single(full, wire.pack_set(full, data), ("SET", full, data), "SET")
        else:
            packed = wire.pack_set_ex(full, data, ttl_seconds)
            await self._single(full, packed, ("SET", full, data, "EX", ttl_seconds), "SET")

    async def delete(self, resource_type: str, key: str) -> None:
        """``UNLINK`` on the key's node; an absent key is fine."""
        full = (self.prefix(resource_type) + key).encode()
        await self._single(full, wire.pack_delete(full), ("UNLINK", full), "UNLINK")

    # -- atomic operations and clear -------------------------------------------------

    async def add(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> bool:
        """``SET ... NX [EX ttl]`` on the key's node: store only if absent."""
        full = (self.prefix(resource_type) + key).encode()
        args: tuple[Any, ...] = ("SET", full, value.encode(), "NX")
        if ttl_seconds is not None:
            args += ("EX", ttl_seconds)
        reply = await self._single(full, wire.pack(_encode(args)), args, "SET NX", once=True)
        return reply is not None

    async def incr(self, resource_type: str, key: str, delta: int, ttl_seconds: int | None) -> int:
        """``INCRBY`` on the key's node; with a TTL, ``SET key 0 NX EX ttl`` first.

        With a TTL both run in one ``EVAL`` of :data:`~pevensie_redis.wire.INCR_EX_SCRIPT`,
        where the server's clock stands still: as two commands, a key that expired
        between them was recreated by ``INCRBY`` without a TTL. A server that
        refuses scripts gets the two commands.
        """
        full = (self.prefix(resource_type) + key).encode()
        if ttl_seconds is not None and self._scripting:
            script = ("EVAL", wire.INCR_EX_SCRIPT, 1, full, delta, ttl_seconds)
            try:
                counted: int = await self._single(
                    full, wire.pack(_encode(script)), script, "EVAL", raw=True, once=True
                )
                return counted
            except RedisError as exc:
                if not refuses_scripting(exc):
                    raise counter_error(exc, "INCRBY") from exc
                self._scripting = False
        try:
            if ttl_seconds is not None:
                created = ("SET", full, b"0", "NX", "EX", ttl_seconds)
                await self._single(
                    full, wire.pack(_encode(created)), created, "SET NX", raw=True, once=True
                )
            args = ("INCRBY", full, delta)
            result: int = await self._single(
                full, wire.pack(_encode(args)), args, "INCRBY", raw=True, once=True
            )
        except RedisError as exc:
            raise counter_error(exc, "INCRBY") from exc
        return result

    async def touch(self, resource_type: str, key: str, ttl_seconds: int | None) -> bool:
        """``EXPIRE`` on the key's node, or without a TTL ``EXISTS`` then ``PERSIST``."""
        full = (self.prefix(resource_type) + key).encode()
        if ttl_seconds is not None:
            args: tuple[Any, ...] = ("EXPIRE", full, ttl_seconds)
            return bool(await self._single(full, wire.pack(_encode(args)), args, "EXPIRE") == 1)
        exists = await self._single(full, wire.pack([b"EXISTS", full]), ("EXISTS", full), "EXISTS")
        await self._single(full, wire.pack([b"PERSIST", full]), ("PERSIST", full), "PERSIST")
        return bool(exists == 1)

    async def clear(self, resource_type: str, on_progress: Progress | None = None) -> int:
        """Delete every ``<resource_type>:*`` key on every primary, page by page.

        The resource type's glob characters are escaped, so only its own keys
        match; each page's keys are deleted per slot (``UNLINK``), pipelined
        with the next ``SCAN``, and a key that moved meanwhile is deleted
        through RedisCluster.
        """
        io = self._live()
        pattern = wire.escape_glob(self.prefix(resource_type)) + "*"
        deleted = 0
        failure: BaseException | None = None
        for node in io.primaries():
            cursor = b"0"
            pending: list[bytes] = []
            while True:
                commands = [wire.pack_scan(cursor, pattern), *_unlinks(pending)]
                replies = await io.exchange(node, commands, "SCAN")
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
                            pending, await io.exchange(node, _unlinks(pending), "UNLINK")
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
        args = ("SET", lock, token, "NX", "PX", lease_ms)
        packed = wire.pack(_encode(args))
        return await self._single(lock, packed, args, "SET NX PX", once=True) is not None

    async def release_lock(self, resource_type: str, key: str, token: str) -> None:
        """Delete the lock only if ``token`` still holds it (``EVAL`` of the release script)."""
        lock = self._lock_key(resource_type, key)
        if self._scripting:
            args = ("EVAL", wire.RELEASE_LOCK_SCRIPT, 1, lock, token)
            try:
                await self._single(lock, wire.pack(_encode(args)), args, "EVAL", raw=True)
                return
            except RedisError as exc:
                if not refuses_scripting(exc):
                    raise _map(exc, "EVAL") from exc
                self._scripting = False
        held = await self._single(lock, wire.pack([b"GET", lock]), ("GET", lock), "GET")
        if held == token.encode():
            await self._single(lock, wire.pack_delete(lock), ("UNLINK", lock), "UNLINK")

    # -- batch operations ------------------------------------------------------------

    async def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """One ``MGET`` per slot, the slots of each node pipelined; misses are absent."""
        unique = list(dict.fromkeys(keys))
        prefix = self.prefix(resource_type)
        fulls = [(prefix + key).encode() for key in unique]
        found: dict[str, str] = {}

        def collect(indexes: list[int], values: list[Any]) -> None:
            for index, value in zip(indexes, values, strict=True):
                if value is not None:
                    found[unique[index]] = decode_value(value, "MGET")

        await self._scatter(
            _Batch(
                "MGET",
                fulls,
                together=lambda part: ("MGET", *(fulls[i] for i in part)),
                alone=lambda i: ("GET", fulls[i]),
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
        prefix = self.prefix(resource_type)
        fulls = [(prefix + key).encode() for key in items]
        values = [value.encode() for value in items.values()]

        if ttl_seconds is None:
            await self._scatter(
                _Batch(
                    "MSET",
                    fulls,
                    together=lambda part: (
                        "MSET",
                        *(item for i in part for item in (fulls[i], values[i])),
                    ),
                    alone=lambda i: ("SET", fulls[i], values[i]),
                )
            )
            return
        ttl = b"%d" % ttl_seconds

        def alone(i: int) -> tuple[Any, ...]:
            return ("SET", fulls[i], values[i], "EX", ttl)

        if self._scripting:

            def script(part: list[int]) -> tuple[Any, ...]:
                return (
                    "EVALSHA",
                    wire.SET_EX_SCRIPT_SHA,
                    len(part),
                    *(fulls[i] for i in part),
                    ttl,
                    *(values[i] for i in part),
                )

            try:
                await self._scatter(_Batch("EVALSHA", fulls, script, alone, scripted=True))
                return
            except _ScriptsRefused:
                self._scripting = False
        await self._scatter(_Batch("SET EX", fulls, None, alone))

    async def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """One ``UNLINK`` per slot, the slots of each node pipelined; absent keys are fine."""
        prefix = self.prefix(resource_type)
        fulls = list(dict.fromkeys((prefix + key).encode() for key in keys))
        await self._scatter(
            _Batch(
                "UNLINK",
                fulls,
                together=lambda part: ("UNLINK", *(fulls[i] for i in part)),
                alone=lambda i: ("UNLINK", fulls[i]),
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
        return b":lock:" + (self.prefix(resource_type) + key).encode()

    async def _single(
        self,
        full: bytes,
        packed: bytes,
        args: tuple[Any, ...],
        command: str,
        *,
        raw: bool = False,
        once: bool = False,
    ) -> Any:
        """Send ``packed`` to the node serving ``full``; on trouble, let RedisCluster do it.

        An error reply that no reroute can fix is raised mapped, or as
        redis-py's with ``raw`` (for the caller to read). A command that must
        run ``once`` (not idempotent) is rerouted only after a reply that says
        it did not run (a redirect); a connection that broke after the command
        was sent is an error.
        """
        io = self._live()
        node = io.node_of(key_slot(full))
        if node is not None:
            replies = await io.exchange(node, [packed], command, idempotent=not once)
            if replies:
                reply = replies[0]
                if not isinstance(reply, Exception):
                    return reply
                if _asks(reply):
                    # The key's slot is being migrated and the key is not here (yet).
                    answers = await io.ask(reply.host, reply.port, [packed], command)
                    if answers and not isinstance(answers[0], Exception):
                        return answers[0]
                    settled = answers and not isinstance(answers[0], _REROUTE)
                    reply = answers[0] if settled else None
                if reply is not None and not isinstance(reply, _REROUTE):
                    if raw:
                        raise reply
                    raise map_error(reply, command) from reply
        return await self._routed(args, command, raw=raw)

    async def _single_from_replica(
        self, full: bytes, packed: bytes, args: tuple[Any, ...], command: str
    ) -> Any:
        """Read ``full`` from a replica of its primary; on any trouble, at once as :meth:`_single`.

        The replica's answer is used only if it came without an error (and,
        when this read carries the replica's ``ROLE`` check, with its link to
        the primary up); else the replica is avoided for a while.
        """
        io = self._live()
        choice = self._choice
        if choice is None:  # replica reads are off: the primary answers
            return await self._single(full, packed, args, command)
        if choice.refresh_due():
            await self._refresh_replicas(io)
        node = choice.pick(self._replicas[key_slot(full)])
        if node is not None:
            check = choice.check_due(node)
            try:
                replies = await io.exchange(
                    node, [wire.ROLE, packed] if check else [packed], command, readonly=True
                )
            except RedisDriverError:
                replies = []
            if check:
                replies = replies[1:] if replies and wire.replica_in_sync(replies[0]) else []
            if replies and not isinstance(replies[0], Exception):
                return replies[0]
            choice.avoid(node)
        return await self._single(full, packed, args, command)

    async def _refresh_replicas(self, io: ClusterIO) -> None:
        """Ask a primary which replicas serve each slot; keep the old table if none answers.

        The server lists a replica once it has synced, and leaves out one it
        considers failed; RedisCluster's own slot map is refreshed only after
        a redirect, so it may not know of replicas that joined later.
        """
        for node in io.primaries():
            replies = await io.exchange(node, [wire.CLUSTER_SLOTS], "CLUSTER SLOTS")
            if replies and not isinstance(replies[0], Exception):
                self._replicas = wire.replicas_by_slot(replies[0])
                return

    async def _check_replicas(self, io: ClusterIO) -> None:
        """List the replicas, and check each accepts this client's reads.

        A replica that refuses the credentials, ``READONLY`` or ``ROLE`` raises
        the driver's error (the user or its ACL is missing there); one that
        does not answer is read from once it does.
        """
        if self._choice is None:  # replica reads are off: no replica to check
            return
        self._choice.refresh_due()  # asked now: the next time is an interval away
        await self._refresh_replicas(io)
        for node in dict.fromkeys(name for names in self._replicas for name in names):
            replies = await io.exchange(node, [wire.ROLE], "ROLE", readonly=True)
            if replies and isinstance(replies[0], Exception):
                raise map_error(replies[0], f"ROLE on the replica {node}") from replies[0]

    async def _routed(self, args: tuple[Any, ...], command: str, *, raw: bool = False) -> Any:
        """Run one command through RedisCluster: redirects, slot map refresh and retries."""
        try:
            return await self._live().routed(args)
        except FAILURES as exc:
            if raw and isinstance(exc, RedisError) and not isinstance(exc, BROKEN):
                raise
            raise _map(exc, command) from exc

    async def _count_unlinked(self, keys: list[bytes], replies: list[Any]) -> int:
        """Add up the ``UNLINK`` replies of ``keys``' slot groups; reroute what failed."""
        groups = _slot_key_groups(keys)
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
            deleted += int(await self._routed(("UNLINK", key), "UNLINK"))
        return deleted

    async def _scatter(self, batch: _Batch) -> None:
        """Run ``batch``: each node's commands pipelined, every node at once.

        A slot group that meets ``ASK`` or ``TRYAGAIN`` (its slot is being
        migrated) is sent again key by key, each key that is not on the slot's
        owner any more after ``ASKING`` to the node it moved to. A command that
        meets ``MOVED``, ``CLUSTERDOWN``, a broken connection or a node that is
        gone is resent through RedisCluster (:meth:`_reroute`). The replies of
        the others stand.
        """
        groups = [(slot, batch.units(indexes)) for slot, indexes in _slot_groups(batch.fulls)]
        outcome = await self._pass(batch, groups, replicas=batch.read)
        if outcome.split:
            alone = [
                (key_slot(batch.fulls[unit[0][0]]), _one_by_one(unit)) for unit in outcome.split
            ]
            outcome.split = []
            outcome.add(await self._pass(batch, alone))
        io = self._live()
        for redirect, units in outcome.asked.values():
            answers = await io.ask(
                redirect.host, redirect.port, [batch.pack([unit]) for unit in units], batch.name
            )
            outcome.rerouted.extend(_settle(batch, units, answers).unsettled())
        for unit in outcome.rerouted:
            await self._reroute(batch, unit)

    async def _pass(
        self, batch: _Batch, groups: list[tuple[int, list[_Unit]]], *, replicas: bool = False
    ) -> _Outcome:
        """Send ``groups`` (slot, commands) to the nodes the slot map names; deliver the replies.

        ``replicas`` (a read, with ``read_from_replicas``): each slot's commands
        go to a replica of its primary where there is one to use; what a
        replica does not answer well goes to the primaries at once, in a
        second pass.
        """
        io = self._live()
        choice = self._choice if replicas else None
        if choice is not None and choice.refresh_due():
            await self._refresh_replicas(io)
        by_node: dict[str, list[_Unit]] = {}
        readonly: set[str] = set()
        outcome = _Outcome()
        for slot, units in groups:
            node = None if choice is None else choice.pick(self._replicas[slot])
            if node is not None:
                readonly.add(node)
            else:
                node = io.node_of(slot)
            if node is not None:
                by_node.setdefault(node, []).extend(units)
            else:
                outcome.rerouted.extend(units)
        checked = set() if choice is None else {n for n in readonly if choice.check_due(n)}
        packed = {
            node: ([wire.ROLE] if node in checked else []) + [batch.pack([unit]) for unit in units]
            for node, units in by_node.items()
        }
        replies = await io.exchange_many(packed, batch.name, readonly=readonly)
        again: list[tuple[int, list[_Unit]]] = []
        for node, units in by_node.items():
            if choice is not None and node in readonly:  # readonly is empty without a choice
                failed = _settle_replica(batch, units, replies[node], checked=node in checked)
                if failed:
                    choice.avoid(node)
                    again += [(key_slot(batch.fulls[u[0][0]]), [u]) for u in failed]
            else:
                outcome.add(await self._settle_node(node, units, replies[node], batch))
        if again:
            outcome.add(await self._pass(batch, again))
        return outcome

    async def _settle_node(
        self, node: str, units: list[_Unit], replies: list[Any], batch: _Batch
    ) -> _Outcome:
        """Deliver a node's replies; first load the script where the node lacked it."""
        if batch.scripted and len(replies) == len(units):
            missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                # First use on this node, or its script cache was flushed: load it, resend.
                io = self._live()
                load = wire.pack([b"SCRIPT", b"LOAD", wire.SET_EX_SCRIPT])
                loaded = await io.exchange(node, [load], "SCRIPT LOAD")
                if loaded and isinstance(loaded[0], Exception):
                    if refuses_scripting(loaded[0]):
                        raise _ScriptsRefused from loaded[0]
                    raise map_error(loaded[0], "SCRIPT LOAD") from loaded[0]
                again: list[Any] = []
                if loaded:
                    resend = [batch.pack([units[n]]) for n in missing]
                    again = await io.exchange(node, resend, batch.name)
                for n, reply in zip(missing, again, strict=False):
                    replies[n] = reply
                if len(again) < len(missing):  # the connection broke: the rest goes around
                    replies = replies[: missing[len(again)]]
        return _settle(batch, units, replies)

    async def _reroute(self, batch: _Batch, unit: _Unit) -> None:
        """Send one command through RedisCluster, which follows its slot wherever it is.

        Should RedisCluster run out of retries on ``TRYAGAIN`` (the slot began
        moving meanwhile), the keys go one by one: a single key is always served.
        """
        together, (indexes, is_together) = batch.together, unit
        if together is not None and is_together:
            args = together(indexes)
            if args[0] == "EVALSHA":
                # EVAL carries the script itself: no NOSCRIPT on a node met for the first time.
                args = ("EVAL", wire.SET_EX_SCRIPT, *args[2:])
            try:
                reply = await self._live().routed(args)
            except FAILURES as exc:
                if not _gave_up_migrating(exc):
                    if batch.scripted and isinstance(exc, RedisError) and refuses_scripting(exc):
                        raise _ScriptsRefused from exc
                    raise _map(exc, batch.name) from exc
            else:
                batch.deliver(unit, reply)
                return
        for single in _one_by_one(unit):
            reply = await self._routed(batch.args(single), batch.name)
            batch.deliver(single, reply)


class _Batch:
    """One batch operation: its keys, and how to ask for them together or one at a time."""

    __slots__ = ("alone", "collect", "fulls", "name", "read", "scripted", "together")

    def __init__(
        self,
        name: str,
        fulls: list[bytes],
        together: Callable[[list[int]], tuple[Any, ...]] | None,
        alone: Callable[[int], tuple[Any, ...]],
        collect: Callable[[list[int], list[Any]], None] | None = None,
        *,
        scripted: bool = False,
        read: bool = False,
    ) -> None:
        self.name = name
        """What the batch sends, for error messages: ``MGET``, ``EVALSHA``, ..."""
        self.fulls = fulls
        """The full keys, each once."""
        self.together = together
        """One command for up to ``BATCH_SIZE`` keys of one slot; ``None``: key by key only."""
        self.alone = alone
        """The command for one key."""
        self.collect = collect
        """Takes the replies, one value per key (``indexes``, ``values``); ``None``: ignored."""
        self.scripted = scripted
        """``together`` is ``EVALSHA`` of the ``SET ... EX`` script."""
        self.read = read
        """Reads only: with ``read_from_replicas``, they may go to replicas."""

    def units(self, indexes: list[int]) -> list[_Unit]:
        """Return the commands for the keys of one slot: together in chunks, or a lone key's."""
        if self.together is None or len(indexes) == 1:
            return [([index], False) for index in indexes]
        return [(list(part), True) for part in wire.chunks(indexes)]

    def pack(self, units: list[_Unit]) -> bytes:
        """Pack ``units`` for one pipelined write."""
        together, alone = self.together, self.alone
        if together is None:
            return b"".join(wire.pack(_encode(alone(indexes[0]))) for indexes, _ in units)
        return b"".join(
            wire.pack(_encode(together(indexes) if is_together else alone(indexes[0])))
            for indexes, is_together in units
        )

    def args(self, unit: _Unit) -> tuple[Any, ...]:
        """Return the command of ``unit``."""
        indexes, is_together = unit
        if is_together and self.together is not None:
            return self.together(indexes)
        return self.alone(indexes[0])

    def deliver(self, unit: _Unit, reply: Any) -> None:
        """Hand the reply of ``unit`` to ``collect``, one value per key."""
        if self.collect is not None:
            indexes, is_together = unit
            self.collect(indexes, reply if is_together else [reply])


class _Outcome:
    """What a pass of a batch left to do: commands to send another way."""

    __slots__ = ("asked", "rerouted", "split")

    def __init__(self) -> None:
        self.rerouted: list[_Unit] = []
        """Through RedisCluster (MOVED, CLUSTERDOWN, a broken connection, a node gone)."""
        self.split: list[_Unit] = []
        """Multi-key commands for a slot being migrated: to send again key by key."""
        self.asked: dict[str, tuple[AskError, list[_Unit]]] = {}
        """Single-key commands an ``ASK`` sent elsewhere, by node: the redirect and the commands."""

    def add(self, other: _Outcome) -> None:
        """Take over what ``other`` left to do."""
        self.rerouted.extend(other.rerouted)
        self.split.extend(other.split)
        for name, (redirect, units) in other.asked.items():
            self.asked.setdefault(name, (redirect, []))[1].extend(units)

    def unsettled(self) -> list[_Unit]:
        """Every command left, as single-key commands where it was split."""
        return [
            *self.rerouted,
            *(single for unit in self.split for single in _one_by_one(unit)),
            *(unit for _, units in self.asked.values() for unit in units),
        ]


def _one_by_one(unit: _Unit) -> list[_Unit]:
    """Return the single-key commands that do what ``unit`` does."""
    indexes, is_together = unit
    if not is_together:
        return [unit]
    return [([index], False) for index in indexes]


def _asks(reply: BaseException) -> TypeGuard[AskError]:
    """Whether ``reply`` is an ``ASK`` redirect (``MOVED`` is an AskError too in redis-py)."""
    return isinstance(reply, AskError) and not isinstance(reply, MovedError)


def _migrating(reply: BaseException) -> bool:
    """Whether ``reply`` says the slot is being migrated: ``ASK``, or ``TRYAGAIN``.

    A multi-key command then fails while its keys are split between the two
    nodes; each key alone is always served.
    """
    return isinstance(reply, TryAgainError) or _asks(reply)


def _gave_up_migrating(exc: BaseException) -> bool:
    """Whether RedisCluster gave up on a command after ``TRYAGAIN`` replies (``TTL exhausted``)."""
    return isinstance(exc, (TryAgainError, ClusterError)) and not isinstance(exc, ClusterDownError)


def _settle_replica(
    batch: _Batch, units: list[_Unit], replies: list[Any], *, checked: bool
) -> list[_Unit]:
    """Deliver a replica's good replies; return the commands to send to the primaries.

    ``checked``: the first reply is the replica's ``ROLE``; a replica whose
    link to its primary is not up answered nothing that may be used.
    """
    if checked:
        if not replies or not wire.replica_in_sync(replies[0]):
            return units
        replies = replies[1:]
    failed: list[_Unit] = []
    for position, unit in enumerate(units):
        reply = replies[position] if position < len(replies) else None
        if position >= len(replies) or isinstance(reply, Exception):
            failed.append(unit)  # not answered (the connection broke), or an error reply
        else:
            batch.deliver(unit, reply)
    return failed


def _settle(batch: _Batch, units: list[_Unit], replies: list[Any]) -> _Outcome:
    """Deliver the good replies; return what must be sent another way.

    Raises the first error reply that no other way can fix, mapped.
    """
    outcome = _Outcome()
    failure: Exception | None = None
    collect = batch.collect
    for position, unit in enumerate(units):
        if position >= len(replies):  # never answered: the connection broke
            outcome.rerouted.append(unit)
            continue
        reply = replies[position]
        if not isinstance(reply, Exception):
            if collect is not None:
                collect(unit[0], reply if unit[1] else [reply])
        elif unit[1] and _migrating(reply):
            outcome.split.append(unit)
        elif _asks(reply):
            name = f"{reply.host}:{reply.port}"
            outcome.asked.setdefault(name, (reply, []))[1].append(unit)
        elif isinstance(reply, (*_REROUTE, NoScriptError)):
            outcome.rerouted.append(unit)  # MOVED, CLUSTERDOWN, NOSCRIPT: RedisCluster will do
        elif failure is None:
            failure = reply
    if failure is not None:
        if batch.scripted and refuses_scripting(failure):
            raise _ScriptsRefused from failure
        raise map_error(failure, batch.name) from failure
    return outcome


class _ScriptsRefused(Exception):
    """The cluster refuses scripts (ACL, renamed or disabled commands)."""


def _map(exc: BaseException, action: str) -> RedisDriverError:
    """Map redis-py errors, including RedisCluster's own, which is not a RedisError."""
    if isinstance(exc, RedisClusterException) and not isinstance(exc, RedisError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, (RedisError, OSError)):
            return map_error(cause, action)
        return RedisConnectionError(f"{action}: {exc}")
    if type(exc) is ClusterError:  # RedisCluster's "TTL exhausted": redirected too often
        return RedisConnectionError(f"{action}: the cluster kept redirecting the command ({exc})")
    return map_error(exc, action)


def _slot_groups(fulls: list[bytes]) -> list[_Group]:
    groups: dict[int, list[int]] = {}
    for index, full in enumerate(fulls):
        groups.setdefault(key_slot(full), []).append(index)
    return list(groups.items())


def _slot_key_groups(keys: list[bytes]) -> list[list[bytes]]:
    """Return ``keys`` grouped by slot, in a fixed order (one ``UNLINK`` per group)."""
    groups: dict[int, list[bytes]] = {}
    for key in keys:
        groups.setdefault(key_slot(key), []).append(key)
    return list(groups.values())


def _unlinks(keys: list[bytes]) -> list[bytes]:
    """Pack one ``UNLINK`` per slot group of ``keys`` (CROSSSLOT is refused even on one node)."""
    return [wire.pack([b"UNLINK", *group]) for group in _slot_key_groups(keys)]


def _encode(args: tuple[Any, ...]) -> list[bytes]:
    return [arg if isinstance(arg, bytes) else str(arg).encode() for arg in args]
