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
  and the known nodes, read (never written) to route a key to its node (all
  lines).
- ``ConnectionPool._checkpid()`` / ``pool`` / ``pid``: the pool's fork check
  and its LIFO queue of slots, used by :class:`~pevensie_redis.pool.CachePool`
  (all lines).
- ``redis._parsers.base.BaseParser.parse_error``: turns an error reply into
  the redis-py exception its code names (``NOSCRIPT`` -> ``NoScriptError``),
  for the async face's own reply reader (all lines).
- ``Connection.host``/``port``/``path`` and ``Connection._sock``: where the near
  cache's listener is connected, and its socket, shut down to stop it from
  another thread (all lines).

Attributes this module stores on redis-py objects carry a ``_pevensie_`` prefix.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from redis._parsers.base import BaseParser
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

__all__ = [
    "async_cluster_retries",
    "close_async_cluster",
    "connect_once",
    "epoch",
    "is_connected",
    "learn_node",
    "node_named",
    "node_of_slot",
    "parse_error",
    "server_of",
    "set_epoch",
    "should_reconnect",
    "shutdown",
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


def parse_error(message: str) -> Exception:
    """Return the redis-py exception for an error reply (``NOSCRIPT ...`` -> ``NoScriptError``)."""
    error: Exception = BaseParser.parse_error(message)  # type: ignore[no-untyped-call]
    return error


def server_of(connection: Any) -> str:
    """Return the server ``connection`` talks to: ``host:port`` or the Unix socket's path.

    ``Connection.host``/``port`` (``UnixDomainSocketConnection.path``); for a
    Sentinel-managed connection, the primary it connected to (all lines).
    """
    path = getattr(connection, "path", None)
    return str(path) if path else f"{connection.host}:{connection.port}"


def shutdown(connection: Any) -> None:
    """Shut ``connection``'s socket down (``Connection._sock``) from any thread.

    The thread reading it sees the connection closed and fails; unlike
    ``disconnect()``, the connection is not reset under that thread's feet.
    """
    sock = connection._sock
    if sock is not None:
        with contextlib.suppress(OSError):  # closed already
            # The plain socket's method, also for TLS: the reader gets an EOF it reports.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def async_cluster_retries(retries: int) -> dict[str, Any]:
    """Return the retry settings of redis-py's async ``RedisCluster`` for ``retries``.

    Every line takes ``retry`` (a ``redis.asyncio.retry.Retry``); the
    attempts after a cluster error (a redirect, ``CLUSTERDOWN``) keep their
    default, which redis-py bounds.
    """
    from redis.asyncio.retry import Retry as AsyncRetry

    return {"retry": AsyncRetry(ExponentialBackoff(), retries)}


async def close_async_cluster(client: Any) -> None:
    """Close redis-py's async ``RedisCluster`` (``aclose`` where the line has it, or ``close``)."""
    closer = getattr(client, "aclose", None) or client.close
    await closer()


def learn_node(client: Any, host: str, port: int) -> Any:
    """Return the node RedisCluster knows as ``host:port``, adding it as a primary if it is new.

    RedisCluster follows ``MOVED`` to a node it has not met, but not ``ASK``:
    while the first slot moves to a primary just added, that primary is in no
    slot map yet. The next slot-map refresh drops it again until it serves a slot.
    """
    from redis.cluster import PRIMARY, ClusterNode, get_node_name

    manager = client.nodes_manager
    name = get_node_name(host, port)
    with getattr(manager, "_lock", None) or contextlib.nullcontext():
        node = manager.nodes_cache.get(name)
        if node is None:
            node = ClusterNode(host, port, PRIMARY)  # type: ignore[no-untyped-call]
            manager.nodes_cache[name] = node
    return node
