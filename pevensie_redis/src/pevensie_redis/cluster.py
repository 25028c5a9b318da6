"""The Redis Cluster mode of the driver: ``RedisConfig(cluster=True)``.

redis-py's :class:`~redis.cluster.RedisCluster` owns the topology: it discovers
every node from the one configured, keeps the slot map, and follows ``MOVED``
and ``ASK`` redirects, refreshing the map after a failover. This driver adds:

- a thin path for single ``get``/``set``/``delete``: the key's slot picks the
  node from redis-py's slot map, and a pre-packed command goes straight to a
  connection of that node's pool. Anything unusual (a redirect, a broken
  connection, a node that is gone, ``CLUSTERDOWN``) hands the command to
  ``RedisCluster.execute_command``, which redirects, refreshes the slot map
  and retries; so the thin path keeps every guarantee of the full one.
- batch operations that never meet ``CROSSSLOT``: keys are grouped by slot,
  each slot group becomes one ``MGET``/``MSET``/``UNLINK`` (or one ``EVALSHA``
  of the ``SET ... EX`` script for ``set_many`` with a TTL), and the groups of
  each node are pipelined on one connection, every node at once. A slot group
  whose command meets a redirect, ``CLUSTERDOWN`` or a broken connection is
  resent through ``RedisCluster``; the replies of the other groups stand.
- batches that ride through resharding: while a slot is being migrated, a
  multi-key command whose keys are split between the two nodes is refused
  (``ASK``, then ``TRYAGAIN`` until the last key has moved, which can take
  longer than RedisCluster's retries last). Such a slot group is sent again
  key by key, pipelined: to the slot's owner, then (``ASKING``) to the node
  each missing key moved to. So a batch whose keys are half migrated still
  reads and writes exactly the stored values, in two more round trips.
- ``ASK`` followed here, for single keys: RedisCluster cannot follow an
  ``ASK`` to a primary that serves no slot yet (one just added, receiving its
  first slot), so the driver sends ``ASKING`` and the command itself, and
  makes the new node known to RedisCluster.
- the ``cluster_hash_tag`` option: keys become ``{resource_type}:key``, so
  every key of a resource type lives in one slot and a batch is one command.

Every node gets a pool of ``pool_size`` connections with the driver's
timeouts, credentials and TLS settings. A call to a node that does not answer
fails with :class:`~pevensie_redis.RedisTimeoutError` after at most
``(retries + 2) * timeout`` (the thin path's attempt, then RedisCluster's).
While a dead primary's replica is being promoted (about
``cluster-node-timeout`` + 1-2 s), calls for its slots raise
:class:`~pevensie_redis.RedisConnectionError`; the first call after the
promotion refreshes the slot map and succeeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeGuard

from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import TimeoutError as RedisPyTimeoutError
from redis.retry import Retry

from pevensie_redis import compat
from pevensie_redis.config import RedisConfig
from pevensie_redis.errors import (
    RedisConnectionError,
    RedisDriverError,
    RedisPoolExhausted,
    decode_value,
    map_error,
    refuses_scripting,
)
from pevensie_redis.pool import ClusterNodePool, pool_options
from pevensie_redis.wire import (
    BATCH_SIZE,
    SET_EX_SCRIPT,
    SET_EX_SCRIPT_SHA,
    pack,
    pack_delete,
    pack_get,
    pack_set,
    pack_set_ex,
)

__all__ = ["RedisClusterDriver", "cluster_options"]

# The connection broke; ValueError is a socket closed under a read ("I/O operation on closed
# file"), as after a topology refresh in another thread.
_BROKEN = (RedisPyConnectionError, RedisPyTimeoutError, OSError, ValueError)
# A node answered for a slot it no longer serves (MOVED is an AskError), or is gone:
# RedisCluster knows what to do.
_REROUTE = (AskError, TryAgainError, ClusterDownError, *_BROKEN)
_FAILURES = (RedisError, RedisClusterException, OSError, ValueError)
_ASKING = b"*1\r\n$6\r\nASKING\r\n"

_Group = tuple[int, list[int]]  # (slot, indexes of the keys in that slot, in input order)
# One command of a batch: the indexes of the keys it carries (in input order), and whether
# it is one multi-key command for all of them (else the single-key command of its one key).
_Unit = tuple[list[int], bool]


class RedisClusterDriver:
    """A Pevensie Cache driver for a Redis Cluster; see :class:`RedisConfig` ``cluster``.

    Thread-safe, like the single-server driver. ``config.host``/``config.port``
    name any node; the others are discovered at ``connect()``.
    """

    def __init__(self, config: RedisConfig) -> None:
        """Prepare a driver for ``config`` (with ``cluster=True``); nothing connects yet."""
        if not isinstance(config, RedisConfig):
            raise TypeError(f"config must be a RedisConfig, not {type(config).__name__}")
        if not config.cluster:
            raise ValueError("RedisClusterDriver needs a RedisConfig with cluster=True")
        self.config = config
        self._client: RedisCluster | None = None
        self._hash_tag = config.cluster_hash_tag
        self._scripting = True

    def __repr__(self) -> str:
        return f"RedisClusterDriver({self.config.display_url()!r})"

    @property
    def client(self) -> RedisCluster | None:
        """The live redis-py ``RedisCluster`` while connected, else ``None``."""
        return self._client

    def prefix(self, resource_type: str) -> str:
        """Return what every stored key of ``resource_type`` starts with.

        ``<resource_type>:``, or ``{<resource_type>}:`` with ``cluster_hash_tag``.
        """
        return f"{{{resource_type}}}:" if self._hash_tag else f"{resource_type}:"

    # -- lifecycle -------------------------------------------------------------------

    def connect(self) -> None:
        """Discover the cluster from the configured node and check every primary answers.

        Raises :class:`RedisConnectionError`, :class:`RedisTimeoutError` or
        :class:`RedisAuthenticationError` (and closes everything) when it cannot.
        """
        action = f"connecting to {self.config.display_url()}"
        client: RedisCluster | None = None
        try:
            client = RedisCluster(**cluster_options(self.config))
            for node in client.get_primaries():  # type: ignore[no-untyped-call]
                client.get_redis_connection(node).ping()
        except _FAILURES as exc:
            if client is not None:
                client.close()
            raise _map(exc, action) from exc
        self._scripting = True
        self._client = client

    def disconnect(self) -> None:
        """Close the connections to every node."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- single operations -----------------------------------------------------------

    def get(self, resource_type: str, key: str) -> str | None:
        """``GET`` on the key's node; ``None`` when absent or expired."""
        full = (self.prefix(resource_type) + key).encode()
        value = self._single(full, pack_get(full), ("GET", full), "GET")
        return None if value is None else decode_value(value, "GET")

    def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """One atomic ``SET`` (with ``EX`` for a TTL) on the key's node."""
        full = (self.prefix(resource_type) + key).encode()
        data = value.encode()
        if ttl_seconds is None:
            self._single(full, pack_set(full, data), ("SET", full, data), "SET")
        else:
            packed = pack_set_ex(full, data, ttl_seconds)
            self._single(full, packed, ("SET", full, data, "EX", ttl_seconds), "SET")

    def delete(self, resource_type: str, key: str) -> None:
        """``UNLINK`` on the key's node; an absent key is fine."""
        full = (self.prefix(resource_type) + key).encode()
        self._single(full, pack_delete(full), ("UNLINK", full), "UNLINK")

    # -- batch operations ------------------------------------------------------------

    def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """One ``MGET`` per slot, the slots of each node pipelined; misses are absent."""
        unique = list(dict.fromkeys(keys))
        prefix = self.prefix(resource_type)
        fulls = [(prefix + key).encode() for key in unique]
        found: dict[str, str] = {}

        def collect(indexes: list[int], values: list[Any]) -> None:
            for index, value in zip(indexes, values, strict=True):
                if value is not None:
                    found[unique[index]] = decode_value(value, "MGET")

        self._scatter(
            _Batch(
                "MGET",
                fulls,
                together=lambda part: ("MGET", *(fulls[i] for i in part)),
                alone=lambda i: ("GET", fulls[i]),
                collect=collect,
            )
        )
        return found

    def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        """One ``MSET`` per slot; with a TTL one ``EVALSHA`` of the ``SET ... EX`` script per slot.

        On a cluster that refuses scripts, a pipeline of ``SET ... EX`` per node instead.
        """
        prefix = self.prefix(resource_type)
        fulls = [(prefix + key).encode() for key in items]
        values = [value.encode() for value in items.values()]

        if ttl_seconds is None:
            self._scatter(
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
                    SET_EX_SCRIPT_SHA,
                    len(part),
                    *(fulls[i] for i in part),
                    ttl,
                    *(values[i] for i in part),
                )

            try:
                self._scatter(_Batch("EVALSHA", fulls, script, alone, scripted=True))
                return
            except _ScriptsRefused:
                self._scripting = False
        self._scatter(_Batch("SET EX", fulls, None, alone))

    def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """One ``UNLINK`` per slot, the slots of each node pipelined; absent keys are fine."""
        prefix = self.prefix(resource_type)
        fulls = list(dict.fromkeys((prefix + key).encode() for key in keys))
        self._scatter(
            _Batch(
                "UNLINK",
                fulls,
                together=lambda part: ("UNLINK", *(fulls[i] for i in part)),
                alone=lambda i: ("UNLINK", fulls[i]),
            )
        )

    # -- the command paths -----------------------------------------------------------

    def _live(self) -> RedisCluster:
        client = self._client
        if client is None:
            raise RedisConnectionError("the Redis Cluster driver is not connected")
        return client

    def _single(self, full: bytes, packed: bytes, args: tuple[Any, ...], command: str) -> Any:
        """Send ``packed`` to the node serving ``full``; on trouble, let RedisCluster do it."""
        client = self._live()
        node = compat.node_of_slot(client, key_slot(full))
        if node is not None:
            pool = client.get_redis_connection(node).connection_pool
            connection: Any
            try:
                connection = pool.get_connection()
            except _FAILURES as exc:
                _raise_if_pool_exhausted(exc, command)
                connection = None  # the node is unreachable: RedisCluster will sort it out
            if connection is not None:
                redirect = None
                try:
                    connection.send_packed_command((packed,))
                    return connection.read_response()
                except _REROUTE as exc:
                    if isinstance(exc, _BROKEN):
                        connection.disconnect()
                    elif _asks(exc):
                        redirect = exc
                except _FAILURES as exc:
                    if isinstance(exc, _BROKEN):
                        connection.disconnect()
                    raise map_error(exc, command) from exc
                finally:
                    pool.release(connection)
                if redirect is not None:
                    # The key's slot is being migrated and the key is not here (yet).
                    answers = self._ask(client, redirect, [packed], command)
                    if answers and not isinstance(answers[0], ResponseError):
                        return answers[0]
                    if answers and not isinstance(answers[0], _REROUTE):
                        raise map_error(answers[0], command) from answers[0]
        return self._routed(client, args, command)

    def _routed(self, client: RedisCluster, args: tuple[Any, ...], command: str) -> Any:
        """Run one command through RedisCluster: redirects, slot map refresh and retries."""
        try:
            return client.execute_command(*args)  # type: ignore[no-untyped-call]
        except _FAILURES as exc:
            raise _map(exc, command) from exc

    def _ask(
        self, client: RedisCluster, redirect: AskError, packed: list[bytes], command: str
    ) -> list[Any]:
        """Send each packed command after ``ASKING`` to the node ``redirect`` names.

        Returns the replies, error replies in place; fewer (or none) when that
        node could not be reached or the connection broke. RedisCluster follows
        ``ASK`` itself, but not to a primary so new that it serves no slot yet.
        """
        node = compat.learn_node(client, redirect.host, redirect.port)
        pool = client.get_redis_connection(node).connection_pool
        connection: Any
        try:
            connection = pool.get_connection()
        except _FAILURES as exc:
            _raise_if_pool_exhausted(exc, command)
            return []
        try:
            connection.send_packed_command((b"".join(_ASKING + one for one in packed),))
            # Each command's reply follows ASKING's OK.
            return _read_replies(connection, 2 * len(packed))[1::2]
        except _BROKEN:
            connection.disconnect()
            return []
        except BaseException:
            connection.disconnect()  # replies may be left unread: never reuse it as is
            raise
        finally:
            pool.release(connection)

    def _scatter(self, batch: _Batch) -> None:
        """Run ``batch``: each node's commands pipelined on one connection, every node at once.

        A slot group that meets ``ASK`` or ``TRYAGAIN`` (its slot is being
        migrated) is sent again key by key, each key that is not on the slot's
        owner any more after ``ASKING`` to the node it moved to. A command that
        meets ``MOVED``, ``CLUSTERDOWN``, a broken connection or a node that is
        gone is resent through RedisCluster (:meth:`_reroute`). The replies of
        the others stand.
        """
        client = self._live()
        groups = [(slot, batch.units(indexes)) for slot, indexes in _slot_groups(batch.fulls)]
        outcome = self._pass(client, batch, groups)
        if outcome.split:
            alone = [
                (key_slot(batch.fulls[unit[0][0]]), _one_by_one(unit)) for unit in outcome.split
            ]
            outcome.split = []
            outcome.add(self._pass(client, batch, alone))
        for redirect, units in outcome.asked.values():
            answers = self._ask(
                client, redirect, [batch.pack([unit]) for unit in units], batch.name
            )
            outcome.rerouted.extend(_settle(batch, units, answers).unsettled())
        for unit in outcome.rerouted:
            self._reroute(client, batch, unit)

    def _pass(
        self, client: RedisCluster, batch: _Batch, groups: list[tuple[int, list[_Unit]]]
    ) -> _Outcome:
        """Send ``groups`` (slot, commands) to the nodes the slot map names; deliver the replies."""
        by_node: dict[str, list[_Unit]] = {}
        outcome = _Outcome()
        for slot, units in groups:
            node = compat.node_of_slot(client, slot)
            if node is not None:
                by_node.setdefault(node.name, []).extend(units)
            else:
                outcome.rerouted.extend(units)
        # Connections are taken in one global order (node name), so threads that
        # each hold some never wait on each other in a cycle.
        taken: list[_Node] = []
        try:
            for node_name in sorted(by_node):
                units = by_node[node_name]
                node = compat.node_named(client, node_name)
                if node is None:
                    outcome.rerouted.extend(units)
                    continue
                pool = client.get_redis_connection(node).connection_pool
                try:
                    connection = pool.get_connection()
                except _FAILURES as exc:
                    _raise_if_pool_exhausted(exc, batch.name)
                    outcome.rerouted.extend(units)
                    continue
                taken.append(_Node(pool, connection, units))
            # Send to every node first, then read: one round trip for the whole batch.
            for node_io in taken:
                try:
                    node_io.connection.send_packed_command((batch.pack(node_io.units),))
                    node_io.unread = True
                except _BROKEN:
                    node_io.connection.disconnect()
                    outcome.rerouted.extend(node_io.units)
            for node_io in taken:
                if node_io.unread:
                    outcome.add(self._read_node(node_io, batch))
        finally:
            for node_io in taken:
                if node_io.unread:
                    node_io.connection.disconnect()  # replies left unread: never reuse it as is
                node_io.pool.release(node_io.connection)
        return outcome

    def _read_node(self, node_io: _Node, batch: _Batch) -> _Outcome:
        """Read a node's replies and deliver them; return what must be sent another way."""
        connection, units = node_io.connection, node_io.units
        replies = _read_replies(connection, len(units))
        if batch.scripted and len(replies) == len(units):
            missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                # First use on this node, or its script cache was flushed: load it, resend.
                again = self._load_and_resend(connection, batch, [units[n] for n in missing])
                for n, reply in zip(missing, again, strict=False):
                    replies[n] = reply
                if len(again) < len(missing):  # the connection broke: the rest goes around
                    replies = replies[: missing[len(again)]]
        node_io.unread = False
        return _settle(batch, units, replies)

    def _load_and_resend(self, connection: Any, batch: _Batch, units: list[_Unit]) -> list[Any]:
        try:
            connection.send_command("SCRIPT", "LOAD", SET_EX_SCRIPT)
            connection.read_response()
            connection.send_packed_command((batch.pack(units),))
        except ResponseError as exc:
            if refuses_scripting(exc):
                raise _ScriptsRefused from exc
            raise map_error(exc, "SCRIPT LOAD") from exc
        except _BROKEN:
            connection.disconnect()
            return []
        return _read_replies(connection, len(units))

    def _reroute(self, client: RedisCluster, batch: _Batch, unit: _Unit) -> None:
        """Send one command through RedisCluster, which follows its slot wherever it is.

        Should RedisCluster run out of retries on ``TRYAGAIN`` (the slot began
        moving meanwhile), the keys go one by one: a single key is always served.
        """
        together, (indexes, is_together) = batch.together, unit
        if together is not None and is_together:
            args = together(indexes)
            if args[0] == "EVALSHA":
                # EVAL carries the script itself: no NOSCRIPT on a node met for the first time.
                args = ("EVAL", SET_EX_SCRIPT, *args[2:])
            try:
                reply = client.execute_command(*args)  # type: ignore[no-untyped-call]
            except _FAILURES as exc:
                if not _gave_up_migrating(exc):
                    if batch.scripted and isinstance(exc, ResponseError) and refuses_scripting(exc):
                        raise _ScriptsRefused from exc
                    raise _map(exc, batch.name) from exc
            else:
                batch.deliver(unit, reply)
                return
        for single in _one_by_one(unit):
            reply = self._routed(client, batch.args(single), batch.name)
            batch.deliver(single, reply)


class _Batch:
    """One batch operation: its keys, and how to ask for them together or one at a time."""

    __slots__ = ("alone", "collect", "fulls", "name", "scripted", "together")

    def __init__(
        self,
        name: str,
        fulls: list[bytes],
        together: Callable[[list[int]], tuple[Any, ...]] | None,
        alone: Callable[[int], tuple[Any, ...]],
        collect: Callable[[list[int], list[Any]], None] | None = None,
        *,
        scripted: bool = False,
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

    def units(self, indexes: list[int]) -> list[_Unit]:
        """Return the commands for the keys of one slot: together in chunks, or a lone key's."""
        if self.together is None or len(indexes) == 1:
            return [([index], False) for index in indexes]
        return [(part, True) for part in _chunk_list(indexes)]

    def pack(self, units: list[_Unit]) -> bytes:
        """Pack ``units`` for one pipelined write."""
        together, alone = self.together, self.alone
        if together is None:
            return b"".join(pack(_encode(alone(indexes[0]))) for indexes, _ in units)
        return b"".join(
            pack(_encode(together(indexes) if is_together else alone(indexes[0])))
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


class _Node:
    """A node's share of a batch, on a connection taken from its pool."""

    __slots__ = ("connection", "pool", "units", "unread")

    def __init__(self, pool: Any, connection: Any, units: list[_Unit]) -> None:
        self.pool = pool
        self.connection = connection
        self.units = units
        self.unread = False
        """Commands were sent whose replies are not all read: close the connection."""


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


def _migrating(reply: ResponseError) -> bool:
    """Whether ``reply`` says the slot is being migrated: ``ASK``, or ``TRYAGAIN``.

    A multi-key command then fails while its keys are split between the two
    nodes; each key alone is always served.
    """
    return isinstance(reply, TryAgainError) or _asks(reply)


def _gave_up_migrating(exc: BaseException) -> bool:
    """Whether RedisCluster gave up on a command after ``TRYAGAIN`` replies (``TTL exhausted``)."""
    return isinstance(exc, (TryAgainError, ClusterError)) and not isinstance(exc, ClusterDownError)


def _read_replies(connection: Any, count: int) -> list[Any]:
    """Read ``count`` replies, error replies in place; fewer when the connection broke.

    A broken connection is closed; the commands whose replies are missing must
    be sent another way.
    """
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(connection.read_response())
        except ResponseError as exc:
            replies.append(exc)
        except _BROKEN:
            connection.disconnect()
            break
    return replies


def _settle(batch: _Batch, units: list[_Unit], replies: list[Any]) -> _Outcome:
    """Deliver the good replies; return what must be sent another way.

    Raises the first error reply that no other way can fix, mapped.
    """
    outcome = _Outcome()
    failure: ResponseError | None = None
    collect = batch.collect
    for position, unit in enumerate(units):
        if position >= len(replies):  # never answered: the connection broke
            outcome.rerouted.append(unit)
            continue
        reply = replies[position]
        if not isinstance(reply, ResponseError):
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


def cluster_options(config: RedisConfig) -> dict[str, Any]:
    """Return the keyword arguments of redis-py's ``RedisCluster`` for ``config``.

    Each node's pool is a :class:`ClusterNodePool` of ``pool_size``
    connections with the driver's timeouts, credentials and TLS settings;
    retries of a failed command (after refreshing the slot map) are ``retries``.
    """
    options = pool_options(config)
    for name in ("db", "retry", "retry_on_error", "health_check_interval", "host", "port"):
        options.pop(name, None)
    host = f"[{config.host}]" if ":" in config.host else config.host
    scheme = "rediss" if config.tls else "redis"
    # The URL form makes RedisCluster build each node's pool from connection_pool_class.
    options["url"] = f"{scheme}://{host}:{config.port}"
    options["connection_pool_class"] = ClusterNodePool
    options["startup_nodes"] = [ClusterNode(config.host, config.port)]  # type: ignore[no-untyped-call]
    options["retry"] = Retry(ExponentialBackoff(), config.retries)
    # A cache serves the slots it can reach rather than refusing everything.
    options["require_full_coverage"] = False
    return options


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


def _raise_if_pool_exhausted(exc: BaseException, action: str) -> None:
    """Raise at once when no pooled connection came free: retrying elsewhere cannot help."""
    mapped = map_error(exc, action)
    if isinstance(mapped, RedisPoolExhausted):
        raise mapped from exc


def _slot_groups(fulls: list[bytes]) -> list[_Group]:
    groups: dict[int, list[int]] = {}
    for index, full in enumerate(fulls):
        groups.setdefault(key_slot(full), []).append(index)
    return list(groups.items())


def _chunk_list(indexes: list[int]) -> list[list[int]]:
    if len(indexes) <= BATCH_SIZE:  # nearly always: a slot group is small
        return [indexes]
    return [indexes[start : start + BATCH_SIZE] for start in range(0, len(indexes), BATCH_SIZE)]


def _encode(args: tuple[Any, ...]) -> list[bytes]:
    return [arg if isinstance(arg, bytes) else str(arg).encode() for arg in args]
