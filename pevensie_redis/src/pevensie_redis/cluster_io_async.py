"""The async Cluster driver's I/O: commands to one node, to many at once, or via RedisCluster.

The twin of :mod:`~pevensie_redis.cluster_io` (read it for the contract).
redis-py's :class:`redis.asyncio.cluster.RedisCluster` keeps the topology (the
slot map, following ``MOVED``, refreshing after a failover) and carries the
commands the driver reroutes; the thin path sends to each node over that
node's own multiplexed pipes (:class:`~pevensie_redis.channel_async.Channel`),
so concurrent tasks share writes, and a cancelled task never desynchronises
a connection. Reads to a replica (``read_from_replicas``) go over pipes of
their own whose handshake ends with ``READONLY``. RedisCluster's own refresh
of its slot map never closes a connection another task is using
(:class:`SharedCluster`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Collection, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import MaxConnectionsError, RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisPyTimeoutError

from pevensie_redis import compat
from pevensie_redis.channel_async import Channel, endpoint
from pevensie_redis.config import RedisConfig
from pevensie_redis.endpoint import Endpoint
from pevensie_redis.errors import RedisConnectionError, RedisDriverError, RedisTimeoutError
from pevensie_redis.lock_releases_async import LockReleases, open_lock_releases
from pevensie_redis.protocol.commands import READONLY, pack

__all__ = ["BROKEN", "FAILURES", "ClusterIO", "SharedCluster", "cluster_options", "open_cluster"]

BROKEN = (RedisPyConnectionError, RedisPyTimeoutError, OSError, ValueError)
"""A connection broke (the sync twin's definition, for the shared logic)."""

FAILURES = (RedisError, RedisClusterException, OSError, ValueError)
"""Everything the cluster's I/O raises."""

_ASKING = pack([b"ASKING"])
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError)


class SharedCluster(RedisCluster):
    """redis-py's async RedisCluster, shared by many tasks: its refresh closes no connection.

    To refresh its slot map after ``CLUSTERDOWN`` and after every few
    ``MOVED`` (``reinitialize_steps``), RedisCluster calls its own
    ``aclose()``, which disconnects every connection of every node, those
    that other tasks are in the middle of using too: their calls then fail
    with "Connection closed by server", or with an ``AttributeError`` when
    one was connecting (seen while resharding under 32 tasks). Here that call
    only asks for the refresh; the refresh (``initialize()``) recycles the
    connections lazily, each as its user gives it back. :meth:`shut` closes.
    """

    async def aclose(self) -> None:
        """Refresh the slot map before the next command; close nothing (see the class)."""
        self._initialize = True

    async def close(self) -> None:
        """Do what :meth:`aclose` does (redis-py 5.0.0 calls ``close()``)."""
        self._initialize = True

    async def shut(self) -> None:
        """Close every connection of every node, for good."""
        self._initialize = False  # a refresh still pending is moot: the base class closes then
        await compat.close_async_cluster(super())


class ClusterIO:
    """Commands to the nodes of one Redis Cluster, for the tasks of one event loop."""

    def __init__(self, client: SharedCluster, config: RedisConfig) -> None:
        """Send through pipes to each node; ``client`` keeps the topology."""
        self.client = client
        self._config = config
        self._channels: dict[str, Channel] = {}
        self._readonly: dict[str, Channel] = {}

    def node_of(self, slot: int) -> str | None:
        """Return the name (``host:port``) of the primary that serves ``slot``, if known."""
        node = compat.node_of_slot(self.client, slot)
        return None if node is None else str(node.name)

    def primaries(self) -> list[str]:
        """Return the names of the primaries, as the slot map knows them."""
        return [str(node.name) for node in self.client.get_primaries()]

    async def exchange(
        self,
        node: str,
        commands: Sequence[bytes],
        name: str,
        *,
        idempotent: bool = True,
        readonly: bool = False,
    ) -> list[Any]:
        """Send ``commands`` to ``node`` over its pipes; return the replies (none if unreachable).

        Commands that are not ``idempotent`` are never left to go another way
        once they may have been sent: the connection error is raised.
        ``readonly``: over ``READONLY`` pipes (reads from a replica).
        """
        channel = self._readonly_channel(node) if readonly else self._channel(node)
        try:
            return await channel.pipeline(commands, name, idempotent=idempotent)
        except _UNREACHABLE:
            if not idempotent:
                raise
            return []  # the driver goes another way

    async def exchange_many(
        self, by_node: dict[str, list[bytes]], name: str, *, readonly: Collection[str] = ()
    ) -> dict[str, list[Any]]:
        """Send each node its commands, every node at once; return each node's replies.

        The nodes in ``readonly`` (replicas) are sent to over ``READONLY``
        pipes; one that fails in any way answers nothing.
        """
        nodes = list(by_node)
        replies = await asyncio.gather(
            *(
                self._from_replica(n, by_node[n], name)
                if n in readonly
                else self.exchange(n, by_node[n], name)
                for n in nodes
            )
        )
        return dict(zip(nodes, replies, strict=True))

    async def _from_replica(self, node: str, commands: list[bytes], name: str) -> list[Any]:
        try:
            return await self.exchange(node, commands, name, readonly=True)
        except RedisDriverError:
            return []  # the driver asks the primary instead

    async def ask(self, host: str, port: int, commands: Sequence[bytes], name: str) -> list[Any]:
        """Send each command after ``ASKING`` to ``host:port``; return the commands' replies."""
        paired = [part for command in commands for part in (_ASKING, command)]
        return (await self.exchange(_name(host, port), paired, name))[1::2]

    async def routed(self, args: tuple[Any, ...]) -> Any:
        """Run one command through RedisCluster (redirects, slot-map refresh, retries).

        redis-py's async ``RedisCluster`` fails at once (``MaxConnectionsError``)
        when every connection it may open to the node is busy, where the sync
        face's pool waits for one: wait here too, polling with a growing pause,
        until ``timeout`` has passed; then the error stands (``RedisPoolExhausted``).
        """
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._config.timeout / 1000
        pause = 0.001
        while True:
            try:
                return await self.client.execute_command(*args)
            except MaxConnectionsError:
                if loop.time() + pause > give_up:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)

    def lock_releases(self) -> LockReleases:
        """Return the lease waiters' subscriber: on one primary, the next one at each reconnect.

        A release published on any node reaches every node (classic pub/sub).
        """
        turn = itertools.count()

        async def resolve() -> Endpoint:
            primaries = self.primaries()
            host, _, port = primaries[next(turn) % len(primaries)].rpartition(":")
            return endpoint(self._config, host.strip("[]"), int(port))

        return open_lock_releases(resolve, self._config)

    async def close(self) -> None:
        """Close every node's pipes and RedisCluster's own connections."""
        channels = [*self._channels.values(), *self._readonly.values()]
        self._channels, self._readonly = {}, {}
        for channel in channels:
            await channel.close()
        await self.client.shut()

    def _channel(self, node: str) -> Channel:
        channel = self._channels.get(node)
        if channel is None:
            host, _, port = node.rpartition(":")
            fixed = endpoint(self._config, host.strip("[]"), int(port))

            async def resolve() -> Endpoint:
                return fixed

            # No retries here: a node that fails is the driver's cue to reroute.
            channel = self._channels[node] = Channel(resolve, self._config.pool_size, 0)
        return channel

    def _readonly_channel(self, node: str) -> Channel:
        channel = self._readonly.get(node)
        if channel is None:
            host, _, port = node.rpartition(":")
            plain = endpoint(self._config, host.strip("[]"), int(port))
            fixed = dataclasses.replace(plain, handshake=(*plain.handshake, READONLY))

            async def resolve() -> Endpoint:
                return fixed

            channel = self._readonly[node] = Channel(resolve, self._config.pool_size, 0)
        return channel


def _name(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def cluster_options(config: RedisConfig) -> dict[str, Any]:
    """Return the keyword arguments of redis-py's async ``RedisCluster`` for ``config``."""
    seconds = config.timeout_seconds
    options: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "username": config.username,
        "password": config.password,
        "client_name": config.client_name,
        "socket_timeout": seconds,
        "socket_connect_timeout": seconds,
        "socket_keepalive": True,
        "max_connections": config.pool_size,
        "require_full_coverage": False,
        "decode_responses": False,
        "protocol": 2,
    }
    if config.tls:
        options.update(
            ssl=True,
            ssl_ca_certs=config.tls_ca_file,
            ssl_certfile=config.tls_cert_file,
            ssl_keyfile=config.tls_key_file,
            ssl_cert_reqs="required" if config.tls_verify else "none",
            ssl_check_hostname=config.tls_verify,
        )
    options.update(compat.async_cluster_retries(config.retries))
    return options


async def open_cluster(config: RedisConfig) -> ClusterIO:
    """Discover the cluster from the configured node and check every primary answers PING.

    Raises redis-py's exceptions (and closes everything) when it cannot.
    """
    client = SharedCluster(**cluster_options(config))
    io = ClusterIO(client, config)
    try:
        await client.initialize()
        ping = pack([b"PING"])
        for node in io.primaries():
            replies = await io._channel(node).pipeline([ping], "PING")
            if replies and isinstance(replies[0], Exception):
                raise replies[0]
    except BaseException:
        await io.close()
        raise
    return io
