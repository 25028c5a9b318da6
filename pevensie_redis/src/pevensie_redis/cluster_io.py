"""The sync Cluster driver's I/O: commands to one node, to many at once, or via RedisCluster.

The twin of :mod:`~pevensie_redis.cluster_io_async` (the same names, over
multiplexed pipes). The Cluster driver's logic (``cluster_async.py``, and
``cluster.py`` generated from it) sees only :func:`open_cluster` and a
:class:`ClusterIO`; it never touches a connection.

redis-py's :class:`~redis.cluster.RedisCluster` owns the topology (the slot
map, the known nodes, following ``MOVED`` and refreshing after a failover);
each node's connections come from a :class:`~pevensie_redis.pool.ClusterNodePool`.
Replies come back as values, error replies in place; a node that cannot be
reached, or a connection that breaks, leaves the replies it owes missing
(a shorter list): the driver then sends those commands another way.

With ``read_from_replicas``, reads to a replica travel on connections of the
driver's own (a :class:`~pevensie_redis.pool.ClusterNodePool` per replica,
one connect attempt) that send ``READONLY`` after the handshake, so a
replica serves its primary's slots; RedisCluster's connections, which carry
every rerouted command, never do.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Collection, Sequence
from typing import Any

from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisPyTimeoutError
from redis.retry import Retry

from pevensie_redis import compat
from pevensie_redis.config import RedisConfig
from pevensie_redis.endpoint import Endpoint, endpoint
from pevensie_redis.errors import (
    RedisAuthenticationError,
    RedisDriverError,
    RedisPoolExhausted,
    map_error,
)
from pevensie_redis.lock_releases import LockReleases, open_lock_releases
from pevensie_redis.pool import ClusterNodePool, pool_options
from pevensie_redis.protocol.commands import READONLY, pack

__all__ = ["BROKEN", "FAILURES", "ClusterIO", "cluster_options", "open_cluster"]

BROKEN = (RedisPyConnectionError, RedisPyTimeoutError, OSError, ValueError)
"""A connection broke; ValueError is a socket closed under a read ("I/O operation on closed
file"), as after a topology refresh in another thread."""

FAILURES = (RedisError, RedisClusterException, OSError, ValueError)
"""Everything the cluster's I/O raises."""

_ASKING = pack([b"ASKING"])


class ClusterIO:
    """Commands to the nodes of one Redis Cluster; thread-safe."""

    def __init__(self, client: RedisCluster, config: RedisConfig) -> None:
        """Send through ``client``'s node pools; ``client`` keeps the topology."""
        self.client = client
        self._config = config
        self._readonly: dict[str, ClusterNodePool] = {}
        self._readonly_lock = threading.Lock()

    def node_of(self, slot: int) -> str | None:
        """Return the name (``host:port``) of the primary that serves ``slot``, if known."""
        node = compat.node_of_slot(self.client, slot)
        return None if node is None else str(node.name)

    def primaries(self) -> list[str]:
        """Return the names of the primaries, as the slot map knows them."""
        return [str(node.name) for node in self.client.get_primaries()]  # type: ignore[no-untyped-call]

    def exchange(
        self,
        node: str,
        commands: Sequence[bytes],
        name: str,
        *,
        idempotent: bool = True,
        readonly: bool = False,
    ) -> list[Any]:
        """Send ``commands`` to ``node`` on one connection; return the replies read.

        Fewer replies than commands (none when the node is unknown or does not
        answer) means the rest must go another way. Commands that are not
        ``idempotent`` are never left to go another way once sent: a connection
        that breaks after sending them is an error. A pool with no free
        connection within the timeout raises
        :class:`~pevensie_redis.RedisPoolExhausted`, a node that refuses the
        credentials (or ``READONLY``) the driver's authentication error.
        ``readonly``: on a ``READONLY`` connection (reads from a replica).
        """
        taken = self._take(node, name, readonly)
        if taken is None:
            return []
        pool, connection = taken
        unread = True
        try:
            connection.send_packed_command((b"".join(commands),))
            replies = _read(connection, len(commands), raise_broken=not idempotent)
            unread = False
            return replies
        except BROKEN as exc:
            if not idempotent:
                raise map_error(exc, name) from exc
            return []
        finally:
            if unread:
                connection.disconnect()  # replies may be left unread: never reuse it as is
            pool.release(connection)

    def exchange_many(
        self, by_node: dict[str, list[bytes]], name: str, *, readonly: Collection[str] = ()
    ) -> dict[str, list[Any]]:
        """Send each node its commands, every node at once; return each node's replies read.

        The nodes in ``readonly`` (replicas) are sent to on ``READONLY``
        connections; one that fails in any way answers nothing.
        """
        taken: list[tuple[str, Any, Any]] = []
        replies: dict[str, list[Any]] = {}
        sent: set[str] = set()
        try:
            # Connections are taken in one global order (node name), so threads that
            # each hold some never wait on each other in a cycle.
            for node in sorted(by_node):
                if node in readonly:
                    try:
                        grip = self._take(node, name, True)
                    except RedisDriverError:
                        grip = None  # the driver asks the primary instead
                else:
                    grip = self._take(node, name)
                if grip is None:
                    replies[node] = []
                else:
                    taken.append((node, *grip))
            # Send to every node first, then read: one round trip for the whole batch.
            for node, _, connection in taken:
                try:
                    connection.send_packed_command((b"".join(by_node[node]),))
                    sent.add(node)
                except BROKEN:
                    connection.disconnect()
                    replies[node] = []
            for node, _, connection in taken:
                if node in sent:
                    replies[node] = _read(connection, len(by_node[node]))
                    sent.discard(node)
        finally:
            for node, pool, connection in taken:
                if node in sent:
                    connection.disconnect()  # replies left unread: never reuse it as is
                pool.release(connection)
        return replies

    def ask(self, host: str, port: int, commands: Sequence[bytes], name: str) -> list[Any]:
        """Send each command after ``ASKING`` to ``host:port``; return the commands' replies.

        RedisCluster follows ``ASK`` itself, but not to a primary so new that it
        serves no slot yet: that node is made known to it here.
        """
        node = compat.learn_node(self.client, host, port)
        paired = [part for command in commands for part in (_ASKING, command)]
        return self.exchange(str(node.name), paired, name)[1::2]

    def routed(self, args: tuple[Any, ...]) -> Any:
        """Run one command through RedisCluster (redirects, slot-map refresh, retries).

        Raises redis-py's exceptions as they are, for the driver to read.
        """
        return self.client.execute_command(*args)  # type: ignore[no-untyped-call]

    def lock_releases(self) -> LockReleases:
        """Return the lease waiters' subscriber: on one primary, the next one at each reconnect.

        A release published on any node reaches every node (classic pub/sub).
        """
        turn = itertools.count()

        def resolve() -> Endpoint:
            primaries = self.primaries()
            host, _, port = primaries[next(turn) % len(primaries)].rpartition(":")
            return endpoint(self._config, host.strip("[]"), int(port))

        return open_lock_releases(resolve, self._config)

    def close(self) -> None:
        """Close every node's connections (those in use as their call ends)."""
        with self._readonly_lock:
            pools, self._readonly = list(self._readonly.values()), {}
        for pool in pools:
            pool.disconnect()
        self.client.close()

    def _take(self, node: str, name: str, readonly: bool = False) -> tuple[Any, Any] | None:
        if readonly:
            pool: Any = self._readonly_pool(node)
        else:
            known = compat.node_named(self.client, node)
            if known is None:
                return None
            pool = self.client.get_redis_connection(known).connection_pool
        try:
            return pool, pool.get_connection()
        except FAILURES as exc:
            mapped = map_error(exc, name)
            if isinstance(mapped, RedisPoolExhausted) or (
                readonly and isinstance(mapped, RedisAuthenticationError)
            ):
                raise mapped from exc  # retrying elsewhere cannot help
            return None  # the node is unreachable: the driver goes another way

    def _readonly_pool(self, node: str) -> ClusterNodePool:
        """Return the pool of ``READONLY`` connections to ``node`` (made on first use)."""
        pool = self._readonly.get(node)
        if pool is None:
            with self._readonly_lock:
                pool = self._readonly.get(node)
                if pool is None:
                    host, _, port = node.rpartition(":")
                    options = pool_options(self._config)
                    options.update(
                        host=host.strip("[]"),
                        port=int(port),
                        retry=Retry(NoBackoff(), 0),
                        redis_connect_func=_readonly_on_connect,
                    )
                    pool = self._readonly[node] = ClusterNodePool(**options)
        return pool


def _readonly_on_connect(connection: Any) -> None:
    """Run the usual handshake on a new connection to a replica, then ``READONLY``."""
    connection.on_connect()
    connection.send_packed_command((READONLY,), check_health=False)
    reply = connection.read_response()
    if reply != b"OK":
        raise RedisPyConnectionError(f"READONLY was answered {reply!r}")


def _read(connection: Any, count: int, *, raise_broken: bool = False) -> list[Any]:
    """Read ``count`` replies, error replies in place; fewer when the connection broke."""
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(connection.read_response())
        except ResponseError as exc:
            replies.append(exc)
        except BROKEN:
            connection.disconnect()
            if raise_broken:
                raise
            break
    return replies


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


def open_cluster(config: RedisConfig) -> ClusterIO:
    """Discover the cluster from the configured node and check every primary answers PING.

    Raises redis-py's exceptions (and closes everything) when it cannot.
    """
    client = RedisCluster(**cluster_options(config))
    try:
        for node in client.get_primaries():  # type: ignore[no-untyped-call]
            client.get_redis_connection(node).ping()
    except BaseException:
        client.close()
        raise
    return ClusterIO(client, config)
