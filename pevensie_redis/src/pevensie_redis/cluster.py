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
  each node are pipelined on one connection, every node at once. A node that
  answers with a redirect or fails has its groups resent through
  ``RedisCluster``, one slot group at a time.
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
from typing import Any

from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import TimeoutError as RedisPyTimeoutError

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

_Group = tuple[int, list[int]]  # (slot, indexes of the keys in that slot, in input order)


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

        def command(slot_keys: list[int]) -> tuple[Any, ...]:
            return ("MGET", *(fulls[i] for i in slot_keys))

        def collect(slot_keys: list[int], reply: Any) -> None:
            for index, value in zip(slot_keys, reply, strict=True):
                if value is not None:
                    found[unique[index]] = decode_value(value, "MGET")

        self._scatter(fulls, command, collect, "MGET")
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

            def command(slot_keys: list[int]) -> tuple[Any, ...]:
                return ("MSET", *(part for i in slot_keys for part in (fulls[i], values[i])))

            self._scatter(fulls, command, _ignore_reply, "MSET")
            return
        ttl = b"%d" % ttl_seconds
        if self._scripting:

            def script(slot_keys: list[int]) -> tuple[Any, ...]:
                if len(slot_keys) == 1:  # the same, and cheaper, as a plain SET ... EX
                    return ("SET", fulls[slot_keys[0]], values[slot_keys[0]], "EX", ttl)
                keys = [fulls[i] for i in slot_keys]
                return (
                    "EVALSHA",
                    SET_EX_SCRIPT_SHA,
                    len(keys),
                    *keys,
                    ttl,
                    *(values[i] for i in slot_keys),
                )

            try:
                self._scatter(fulls, script, _ignore_reply, "EVALSHA", scripted=True)
                return
            except _ScriptsRefused:
                self._scripting = False

        def each(slot_keys: list[int]) -> list[tuple[Any, ...]]:
            return [("SET", fulls[i], values[i], "EX", ttl) for i in slot_keys]

        self._scatter(fulls, each, _ignore_reply, "SET EX", one_per_key=True)

    def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """One ``UNLINK`` per slot, the slots of each node pipelined; absent keys are fine."""
        prefix = self.prefix(resource_type)
        fulls = list(dict.fromkeys((prefix + key).encode() for key in keys))

        def command(slot_keys: list[int]) -> tuple[Any, ...]:
            return ("UNLINK", *(fulls[i] for i in slot_keys))

        self._scatter(fulls, command, _ignore_reply, "UNLINK")

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
                try:
                    connection.send_packed_command((packed,))
                    return connection.read_response()
                except _REROUTE as exc:
                    if isinstance(exc, _BROKEN):
                        connection.disconnect()
                except _FAILURES as exc:
                    if isinstance(exc, _BROKEN):
                        connection.disconnect()
                    raise map_error(exc, command) from exc
                finally:
                    pool.release(connection)
        return self._routed(client, args, command)

    def _routed(self, client: RedisCluster, args: tuple[Any, ...], command: str) -> Any:
        """Run one command through RedisCluster: redirects, slot map refresh and retries."""
        try:
            return client.execute_command(*args)  # type: ignore[no-untyped-call]
        except _FAILURES as exc:
            raise _map(exc, command) from exc

    def _scatter(
        self,
        fulls: list[bytes],
        command: Callable[[list[int]], Any],
        collect: Callable[[list[int], Any], None],
        name: str,
        *,
        scripted: bool = False,
        one_per_key: bool = False,
    ) -> None:
        """Run ``command(slot_keys)`` for every slot group, pipelined per node, all nodes at once.

        ``collect(slot_keys, reply)`` receives each reply. Groups on a node that
        failed or redirected are resent through RedisCluster one by one.
        """
        client = self._live()
        by_node: dict[str, list[_Group]] = {}
        unrouted: list[_Group] = []
        for slot, slot_keys in _slot_groups(fulls):
            node = compat.node_of_slot(client, slot)
            if node is not None:
                by_node.setdefault(node.name, []).append((slot, slot_keys))
            else:
                unrouted.append((slot, slot_keys))
        # Connections are taken in one global order (node name), so threads that
        # each hold some never wait on each other in a cycle.
        taken: list[tuple[str, Any, Any, list[bytes]]] = []
        settled: set[str] = set()  # nodes whose replies were all read (or never sent)
        try:
            for node_name in sorted(by_node):
                node = compat.node_named(client, node_name)
                if node is None:
                    unrouted.extend(by_node[node_name])
                    continue
                pool = client.get_redis_connection(node).connection_pool
                try:
                    connection = pool.get_connection()
                except _FAILURES as exc:
                    _raise_if_pool_exhausted(exc, name)
                    unrouted.extend(by_node[node_name])
                    continue
                packed = [
                    pack(_encode(args))
                    for _, slot_keys in by_node[node_name]
                    for args in _commands(command, slot_keys, one_per_key)
                ]
                taken.append((node_name, pool, connection, packed))
            # Send to every node first, then read: one round trip for the whole batch.
            sent: list[tuple[str, Any, list[bytes]]] = []
            for node_name, _, connection, packed in taken:
                try:
                    connection.send_packed_command((b"".join(packed),))
                    sent.append((node_name, connection, packed))
                except _BROKEN:
                    connection.disconnect()
                    settled.add(node_name)
                    unrouted.extend(by_node[node_name])
            for node_name, connection, packed in sent:
                retry = self._read_node(
                    connection, by_node[node_name], packed, collect, name, scripted
                )
                settled.add(node_name)
                if retry:
                    unrouted.extend(by_node[node_name])
        finally:
            for node_name, pool, connection, _ in taken:
                if node_name not in settled:
                    connection.disconnect()  # replies left unread: never reuse it as is
                pool.release(connection)
        for _slot, slot_keys in unrouted:
            self._routed_group(client, command, collect, slot_keys, name, scripted, one_per_key)

    def _read_node(
        self,
        connection: Any,
        groups: list[_Group],
        packed: list[bytes],
        collect: Callable[[list[int], Any], None],
        name: str,
        scripted: bool,
    ) -> bool:
        """Read a node's replies; return whether its groups must go through RedisCluster."""
        replies: list[Any] = []
        error: BaseException | None = None
        for _ in packed:
            try:
                replies.append(connection.read_response())
            except ResponseError as exc:
                error = error or exc
                replies.append(None)
            except _BROKEN:
                connection.disconnect()
                return True
        if isinstance(error, NoScriptError) and scripted:
            # First use on this node, or its script cache was flushed: load it, resend.
            try:
                connection.send_command("SCRIPT", "LOAD", SET_EX_SCRIPT)
                connection.read_response()
            except ResponseError as exc:
                if refuses_scripting(exc):
                    raise _ScriptsRefused from exc
                raise map_error(exc, "SCRIPT LOAD") from exc
            except _BROKEN:
                connection.disconnect()
                return True
            return self._resend(connection, groups, packed, collect)
        if error is not None:
            if isinstance(error, _REROUTE):
                return True
            if scripted and isinstance(error, ResponseError) and refuses_scripting(error):
                raise _ScriptsRefused from error
            raise map_error(error, name) from error
        _deliver(groups, replies, collect)
        return False

    def _resend(
        self,
        connection: Any,
        groups: list[_Group],
        packed: list[bytes],
        collect: Callable[[list[int], Any], None],
    ) -> bool:
        try:
            connection.send_packed_command((b"".join(packed),))
            replies = [connection.read_response() for _ in packed]
        except _REROUTE:
            connection.disconnect()  # replies may be left unread: start afresh
            return True
        except ResponseError as exc:
            connection.disconnect()
            raise map_error(exc, "EVALSHA") from exc
        _deliver(groups, replies, collect)
        return False

    def _routed_group(
        self,
        client: RedisCluster,
        command: Callable[[list[int]], Any],
        collect: Callable[[list[int], Any], None],
        slot_keys: list[int],
        name: str,
        scripted: bool,
        one_per_key: bool,
    ) -> None:
        """Send one slot group through RedisCluster, which follows the slot wherever it is."""
        for part in _chunk_list(slot_keys):
            for args in _commands(command, part, one_per_key):
                if args[0] == "EVALSHA":
                    # EVAL carries the script itself: no NOSCRIPT on a node met for the first time.
                    _, _, count, *rest = args
                    args = ("EVAL", SET_EX_SCRIPT, count, *rest)
                try:
                    reply = client.execute_command(*args)  # type: ignore[no-untyped-call]
                except ResponseError as exc:
                    if scripted and refuses_scripting(exc):
                        raise _ScriptsRefused from exc
                    raise _map(exc, name) from exc
                except _FAILURES as exc:
                    raise _map(exc, name) from exc
                if not one_per_key:
                    collect(part, reply)


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
    # The URL form makes RedisCluster build each node's pool from connection_pool_class;
    # the options so far are the node pools' own.
    options["connection_pool_class"] = compat.node_pool_factory(ClusterNodePool, options)
    options["url"] = f"{scheme}://{host}:{config.port}"
    options["startup_nodes"] = [ClusterNode(config.host, config.port)]  # type: ignore[no-untyped-call]
    options.update(compat.cluster_retry(config.retries))
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


def _commands(
    command: Callable[[list[int]], Any], slot_keys: list[int], one_per_key: bool
) -> list[tuple[Any, ...]]:
    if one_per_key:
        return list(command(slot_keys))
    return [command(part) for part in _chunk_list(slot_keys)]


def _deliver(
    groups: list[_Group], replies: list[Any], collect: Callable[[list[int], Any], None]
) -> None:
    """Hand each chunk's reply to ``collect``; with one command per key, there is nothing to do."""
    if collect is _ignore_reply:
        return
    position = 0
    for _, slot_keys in groups:
        for part in _chunk_list(slot_keys):
            collect(part, replies[position])
            position += 1


def _encode(args: tuple[Any, ...]) -> list[bytes]:
    return [arg if isinstance(arg, bytes) else str(arg).encode() for arg in args]


def _ignore_reply(slot_keys: list[int], reply: Any) -> None:
    """Discard a reply whose content does not matter (``OK``, a count)."""
