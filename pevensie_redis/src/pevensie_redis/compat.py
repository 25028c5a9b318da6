"""Every use of redis-py's internals, in one place, with what each relies on.

The driver builds on redis-py's public classes (connections, pools, ``Retry``,
``RedisCluster``, ``Sentinel``) and reaches past their public API only here.
Each function names the attribute or method it relies on. All of them were
checked against the oldest and newest release of every supported redis-py
line (5.0, 5.3, 6.0, 6.4, 7.0, 7.4, 8.0, 8.1), with and without hiredis, by
``nox -s compat``.

- ``Connection._sock``: the socket, ``None`` while disconnected (all lines).
- ``Connection.retry``: the connection's own ``Retry``, swapped for one
  connect attempt by :func:`connect_once` (all lines).
- ``Connection.should_reconnect()``: RedisCluster's mark that a connection
  must reconnect after a topology change (7.0 and newer; absent before, where
  nothing marks connections).
- ``RedisCluster.nodes_manager.slots_cache`` / ``nodes_cache``: the slot map
  and the known nodes, read to route a key to its node (all lines). One write:
  :func:`learn_node` adds a primary that an ``ASK`` redirect names but that
  serves no slot yet (a primary just added to the cluster), under
  ``nodes_manager._lock`` where the line has one, as redis-py's own ``MOVED``
  handling (``NodesManager.move_slot``) adds a node it meets for the first time.
- ``ConnectionPool._checkpid()`` / ``pool`` / ``pid``: the pool's fork check
  and its LIFO queue of slots, used by :class:`~pevensie_redis.pool.CachePool`
  (all lines).

Attributes this module stores on redis-py objects carry a ``_pevensie_`` prefix.
"""

from __future__ import annotations

import contextlib
from typing import Any

from redis.backoff import NoBackoff
from redis.cluster import PRIMARY, ClusterNode, get_node_name
from redis.retry import Retry

__all__ = [
    "connect_once",
    "epoch",
    "is_connected",
    "learn_node",
    "node_named",
    "node_of_slot",
    "set_epoch",
    "should_reconnect",
]

_ONE_ATTEMPT = Retry(NoBackoff(), 0)


def is_connected(connection: Any) -> bool:
    """Return whether ``connection`` has an open socket (``Connection._sock``)."""
    return connection._sock is not None


def connect_once(connection: Any) -> None:
    """Open ``connection`` with one connect attempt, if it is not open.

    The connection's own ``retry`` would retry the TCP connect inside each of
    the driver's retries, so one call could cost ``(retries + 1) ** 2``
    timeouts against a server that stops accepting. Only the calling thread
    holds the connection, so swapping its ``retry`` for the connect is safe.
    """
    if connection._sock is not None:
        return
    saved = connection.retry
    connection.retry = _ONE_ATTEMPT
    try:
        connection.connect()
    finally:
        connection.retry = saved


def should_reconnect(connection: Any) -> bool:
    """Return whether RedisCluster marked ``connection`` to reconnect (redis-py 7+; else False)."""
    marked = getattr(connection, "should_reconnect", None)
    return bool(marked()) if marked is not None else False


def epoch(connection: Any) -> int:
    """Return the pool epoch ``connection`` was connected in (see ``CachePool.disconnect``)."""
    return int(getattr(connection, "_pevensie_epoch", 0))


def set_epoch(connection: Any, value: int) -> None:
    """Record the pool epoch ``connection`` is connected in."""
    connection._pevensie_epoch = value


def node_of_slot(client: Any, slot: int) -> Any:
    """Return the primary node RedisCluster's slot map names for ``slot``, or ``None``."""
    nodes = client.nodes_manager.slots_cache.get(slot)
    return nodes[0] if nodes else None


def node_named(client: Any, name: str) -> Any:
    """Return the node RedisCluster knows as ``host:port``, or ``None``."""
    return client.nodes_manager.nodes_cache.get(name)


def learn_node(client: Any, host: str, port: int) -> Any:
    """Return the node RedisCluster knows as ``host:port``, adding it as a primary if it is new.

    RedisCluster follows ``MOVED`` to a node it has not met, but not ``ASK``:
    while the first slot moves to a primary just added, that primary is in no
    slot map yet. The next slot-map refresh drops it again until it serves a slot.
    """
    manager = client.nodes_manager
    name = get_node_name(host, port)
    with getattr(manager, "_lock", None) or contextlib.nullcontext():
        node = manager.nodes_cache.get(name)
        if node is None:
            node = ClusterNode(host, port, PRIMARY)  # type: ignore[no-untyped-call]
            manager.nodes_cache[name] = node
    return node
