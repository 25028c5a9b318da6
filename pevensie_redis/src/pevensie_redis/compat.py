"""Every use of redis-py's internals, in one place, with what each relies on.

What is left here serves the Cluster driver alone (the sync face's node pools,
:mod:`~pevensie_redis.pool`, and redis-py's ``RedisCluster``): the single-server
and Sentinel drivers have connections of their own on both faces and use
nothing of redis-py but its exception classes. It goes with the Cluster
driver's own slot map and router.

The Cluster driver builds on redis-py's public classes (connections, pools,
``Retry``, ``RedisCluster``) and reaches past their public API only here.
The supported range is redis-py 5.0 to 8.x (``redis>=5.0,<9``). Each entry
below names what it relies on and where releases differ; every entry was
checked against 5.0.0, 5.3.1, 6.0.0, 6.4.0, 7.0.0, 7.4.1, 8.0.0 and 8.1.0,
each with and without hiredis, by ``nox -s compat`` (which runs the driver's
single-server, Cluster, Sentinel, TLS, Unix-socket and reliability tests on
each of them).

Connections:

- ``Connection._sock``: the socket, ``None`` while disconnected (all releases).
- ``Connection.retry``: the connection's own ``Retry``. :func:`connect_once`
  swaps it for one connect attempt; :func:`connect` runs the attempts under
  it (all releases). Releases differ in what their ``connect()`` retries:
  before 7.2 only a TCP connect that timed out (a refused one raises a raw
  ``OSError``, which is not among the retried errors, and a failed handshake
  is not retried), while 7.2 and newer retry connect and handshake together.
  :func:`connect` gives every release the newer behaviour.
- ``Connection.on_connect()``, ``health_check_interval``,
  ``next_health_check``: redis-py 5's handshake sends ``CLIENT SETINFO``,
  ``CLIENT SETNAME`` and ``SELECT`` with a health check, which PINGs a
  connection whose check is due (a new one always is); when the PING fails,
  the health check's retry reconnects inside the PING and so handshakes and
  health-checks again: against a stalled server that recursion never ends.
  From 6.0 on, a reconnection made inside a command handshakes without health
  checks, which ends it. :func:`connection_class` gives redis-py 5 a
  handshake without health checks (its ``on_connect`` with
  ``health_check_interval`` at 0, then the next check scheduled as a
  handshake reply would, on 5's clock, ``time.time()``).
- ``Connection.should_reconnect()``: the mark RedisCluster (7.2 and newer)
  sets on connections that must reconnect after a topology change (the method
  exists from 7.0; before, nothing marks connections).

Pools (:class:`~pevensie_redis.pool.CachePool` is a ``BlockingConnectionPool``):

- ``ConnectionPool._checkpid()``, ``pid`` and ``reset()``: the fork check,
  which calls ``reset()`` in a child process; ``reset()`` also runs from
  ``__init__`` (all releases).
- ``BlockingConnectionPool.pool``: its LIFO queue of ``max_connections``
  slots, each a connection or ``None`` for one not made yet, rebuilt by
  ``reset()`` (all releases; 8.1's ``reset()`` and ``__del__`` read its
  ``queue`` too).
- ``disconnect(inuse_connections=...)``: how redis-py asks a pool to drop its
  connections: RedisCluster's ``disconnect_free_connections()`` after a
  topology change (7.2 and newer).

Cluster:

- ``RedisCluster.nodes_manager.slots_cache`` / ``nodes_cache``: the slot map
  and the known nodes, read (never written) to route a key to its node (all
  releases).
- ``redis.cluster.REDIS_ALLOWED_KEYS``: the options RedisCluster passes on to
  each node's ``connection_pool_class`` (which it calls with them); it drops
  the others. Before 7.0 it drops ``timeout`` (the wait for a free pooled
  connection, then 20 s), before 6.1 ``ssl_check_hostname``:
  :func:`node_pool_factory` hands them to the node pools itself.
- ``RedisCluster.nodes_manager.nodes_cache`` written, ``_lock`` (where the
  release has it), ``redis.cluster.get_node_name`` and ``PRIMARY``: a primary
  just added, met through ``ASK`` before it is in any slot map, is added to
  the known nodes (:func:`learn_node`).
- redis-py's async ``RedisCluster``: ``retry`` (a ``redis.asyncio.retry.Retry``)
  and ``aclose()`` where the release has it, else ``close()``
  (:func:`async_cluster_retries`, :func:`close_async_cluster`).
- ``RedisCluster(retry=...)`` / ``cluster_error_retry_attempts``: from 6.0 on
  (``retry`` in ``redis.cluster.KWARGS_DISABLED_KEYS``), ``retry`` sets how
  often RedisCluster retries a command and node connections never retry on
  their own; redis-py 5 gives ``retry`` to every node connection instead and
  retries ``cluster_error_retry_attempts`` times (3 by default).
  :func:`cluster_retry` asks each release for the same thing.

Attributes this module stores on redis-py objects carry a ``_pevensie_`` prefix.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from typing import Any

import redis.cluster
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import Connection
from redis.retry import Retry

__all__ = [
    "async_cluster_retries",
    "check_fork",
    "close_async_cluster",
    "cluster_retry",
    "connect",
    "connect_once",
    "connection_class",
    "epoch",
    "give_back",
    "idle_connections",
    "is_connected",
    "learn_node",
    "node_named",
    "node_of_slot",
    "node_pool_factory",
    "set_epoch",
    "should_reconnect",
    "take_free",
]

_ONE_ATTEMPT = Retry(NoBackoff(), 0)

# redis-py 6.0 added on_connect_check_health() (a handshake without health checks).
_HANDSHAKE_CHECKS_HEALTH = not hasattr(Connection, "on_connect_check_health")


# -- connections ---------------------------------------------------------------------


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


def connect(connection: Any) -> None:
    """Open ``connection`` if it is not open, retrying connect and handshake as its ``retry`` says.

    What redis-py 7.2 and newer do in ``connect()``, on every release: each
    attempt is :func:`connect_once`, and a failed one (refused, timed out,
    broken handshake) is retried with the connection's backoff.
    """
    if connection._sock is not None:
        return
    connection.retry.call_with_retry(
        lambda: connect_once(connection), lambda _error: connection.disconnect()
    )


class _HandshakeWithoutHealthCheck:
    """Mixin for redis-py 5's connection classes: the handshake sends no health-check PING."""

    health_check_interval: int
    next_health_check: float

    def on_connect(self) -> None:
        interval = self.health_check_interval
        self.health_check_interval = 0
        try:
            super().on_connect()  # type: ignore[misc]
        finally:
            self.health_check_interval = interval
        if interval:
            self.next_health_check = time.time() + interval


@functools.cache
def _without_handshake_health_check(cls: type) -> type:
    # Same name, so redis-py's reprs and messages read as before.
    return type(cls.__name__, (_HandshakeWithoutHealthCheck, cls), {"__module__": cls.__module__})


def connection_class(cls: Any) -> Any:
    """Return the connection class a pool should make for ``cls``.

    ``cls`` itself on redis-py 6.0 and newer; on redis-py 5, a subclass whose
    handshake does not health-check (see the module docstring).
    """
    if not _HANDSHAKE_CHECKS_HEALTH or issubclass(cls, _HandshakeWithoutHealthCheck):
        return cls
    return _without_handshake_health_check(cls)


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


# -- pools ---------------------------------------------------------------------------


def check_fork(pool: Any) -> None:
    """Reset ``pool`` if this process is a fork of the one that made it (``_checkpid``)."""
    pool._checkpid()


def take_free(pool: Any) -> Any:
    """Take a free slot of ``pool`` without waiting: a connection, or ``None`` for one not made.

    Raises ``queue.Empty`` when every slot is taken.
    """
    return pool.pool.get_nowait()


def give_back(pool: Any, connection: Any) -> None:
    """Put a slot (a connection, or ``None``) back into ``pool``; ``queue.Full`` if it is full."""
    pool.pool.put_nowait(connection)


def idle_connections(pool: Any) -> list[Any]:
    """Return the connections sitting idle in ``pool`` (a snapshot; slots stay where they are)."""
    return [connection for connection in pool.pool.queue if connection is not None]


# -- cluster -------------------------------------------------------------------------


def node_of_slot(client: Any, slot: int) -> Any:
    """Return the primary node RedisCluster's slot map names for ``slot``, or ``None``."""
    nodes = client.nodes_manager.slots_cache.get(slot)
    return nodes[0] if nodes else None


def node_named(client: Any, name: str) -> Any:
    """Return the node RedisCluster knows as ``host:port``, or ``None``."""
    return client.nodes_manager.nodes_cache.get(name)


def node_pool_factory(
    pool_class: Callable[..., Any], options: dict[str, Any]
) -> Callable[..., Any]:
    """Return RedisCluster's ``connection_pool_class`` for node pools with all of ``options``.

    ``options`` are the node pools' keyword arguments; those this release of
    RedisCluster would drop are bound to ``pool_class`` here.
    """
    dropped = {
        name: value
        for name, value in options.items()
        if name not in redis.cluster.REDIS_ALLOWED_KEYS
    }
    return functools.partial(pool_class, **dropped) if dropped else pool_class


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


def async_cluster_retries(retries: int) -> dict[str, Any]:
    """Return the retry settings of redis-py's async ``RedisCluster`` for ``retries``.

    Every release takes ``retry`` (a ``redis.asyncio.retry.Retry``); the
    attempts after a cluster error (a redirect, ``CLUSTERDOWN``) keep their
    default, which redis-py bounds.
    """
    from redis.asyncio.retry import Retry as AsyncRetry

    return {"retry": AsyncRetry(ExponentialBackoff(), retries)}


async def close_async_cluster(client: Any) -> None:
    """Close redis-py's async ``RedisCluster`` (``aclose()``, or ``close()`` before it existed)."""
    closer = getattr(client, "aclose", None) or client.close
    await closer()


def cluster_retry(retries: int) -> dict[str, Any]:
    """Return RedisCluster's keyword arguments for ``retries`` retries of a failed command.

    Node connections do not retry on their own, on every release.
    """
    if "retry" in getattr(redis.cluster, "KWARGS_DISABLED_KEYS", ()):  # redis-py 6.0 and newer
        return {"retry": Retry(ExponentialBackoff(), retries)}
    return {"cluster_error_retry_attempts": retries}
