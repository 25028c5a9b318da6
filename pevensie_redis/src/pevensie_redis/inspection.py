"""The Redis driver's inspector: TTLs, key listings and server facts for operator tools.

Registered with the driver (see :mod:`pevensie_redis.plugin`) and found by
``cache.inspector(c)``; the ``pevensie-cache`` command line uses it for
``ttl``, ``keys``, ``stats``, ``check`` and ``bench --compare``. It talks to
the server through a redis-py client on the driver's own connections (the
pool of a single server or Sentinel primary, or the ``RedisCluster`` client),
so it needs the driver connected, and on the sync face. Key listings use
``SCAN`` pages with the resource type's glob characters escaped: never
``KEYS``, so the server is never blocked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pevensie_cache import NotConnected, UnsupportedOperation
from pevensie_cache.errors import raised_by_signal_handler
from pevensie_cache.inspection import KeySample, KeyTtl, ServerInfo
from pevensie_redis.errors import map_error
from pevensie_redis.wire import decode_text, escape_glob

__all__ = ["RedisBaseline", "RedisInspector", "inspector_for_driver"]

_LOCKS = ":lock"
"""The resource type lease locks (``:lock:<resource_type>:<key>``) are counted under."""


def inspector_for_driver(driver: object) -> RedisInspector | None:
    """Return an inspector for a driver of this package, or ``None`` for any other driver.

    Imports nothing of redis-py unless ``driver`` is ours (then it is loaded already).
    """
    if not type(driver).__module__.startswith("pevensie_redis."):
        return None
    return RedisInspector(driver)


class RedisInspector:
    """Inspects the server behind a Redis driver (single server, Sentinel primary or Cluster)."""

    def __init__(self, driver: Any) -> None:
        """Inspect ``driver``; every question needs it connected, on the sync face."""
        self._driver = driver

    def server_info(self) -> ServerInfo:
        """``INFO server``, ``memory`` and ``stats`` and ``DBSIZE``; summed over a Cluster."""
        replies = self._each_node("INFO", lambda client: _info_of(client))
        first = replies[0]
        name = "valkey" if "valkey_version" in first else str(first.get("server_name", "redis"))
        version = first.get("valkey_version") or first.get("redis_version")
        return ServerInfo(
            server=name,
            version=None if version is None else str(version),
            used_memory=_total(replies, "used_memory"),
            max_memory=_total(replies, "maxmemory"),
            keys=_total(replies, "dbsize"),
            hits=_total(replies, "keyspace_hits"),
            misses=_total(replies, "keyspace_misses"),
            nodes=len(replies),
        )

    def ttl(self, resource_type: str, key: str) -> KeyTtl:
        """``PTTL`` of the stored key: absent, without expiry, or the seconds left."""
        full = self._prefix(resource_type) + key
        client = self._client()
        try:
            millis = int(client.pttl(full))
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the server's: the caller's own, unchanged
            raise map_error(exc, "PTTL") from exc
        if millis == -2:
            return KeyTtl(exists=False)
        if millis == -1:
            return KeyTtl(exists=True)
        return KeyTtl(exists=True, seconds=millis / 1000)

    def keys(self, resource_type: str, page_size: int) -> Iterator[list[str]]:
        """``SCAN ... MATCH <escaped resource type>:* COUNT page_size``, one page at a time."""
        prefix = self._prefix(resource_type)
        pattern = escape_glob(prefix) + "*"
        for page in self._scan(pattern, page_size):
            yield [name[len(prefix) :] for name in page]

    def sample(self, limit: int) -> KeySample:
        """Count the resource types of at most ``limit`` keys from ``SCAN`` pages (no ``MATCH``)."""
        counts: dict[str, int] = {}
        foreign = 0
        sampled = 0
        for page in self._scan(None, min(1000, max(limit, 1))):
            for name in page:
                if sampled >= limit:
                    break
                sampled += 1
                resource_type = _resource_type_of(name)
                if resource_type is None:
                    foreign += 1
                else:
                    counts[resource_type] = counts.get(resource_type, 0) + 1
            if sampled >= limit:
                break
        total = self.server_info().keys
        return KeySample(sampled=sampled, total=total, by_resource_type=counts, foreign=foreign)

    def baseline(self) -> RedisBaseline | None:
        """redis-py on the driver's own pool; ``None`` for a Cluster (its client routes itself)."""
        if self._cluster() is not None:
            return None
        return RedisBaseline(self._client())

    # -- helpers -----------------------------------------------------------------------

    def _cluster(self) -> Any:
        from pevensie_redis.cluster import RedisClusterDriver

        if isinstance(self._driver, RedisClusterDriver):
            client = self._driver.client
            if client is None:
                raise NotConnected("the cache is not connected")
            return client
        return None

    def _client(self) -> Any:
        cluster = self._cluster()
        if cluster is not None:
            return cluster
        if not hasattr(self._driver, "connection_pool"):
            raise UnsupportedOperation(f"cannot inspect a {type(self._driver).__name__}")
        pool = self._driver.connection_pool
        if pool is None:
            raise UnsupportedOperation(
                "the Redis inspector needs a connected cache on the sync face "
                "(cache.from_url(...), not cache.from_url_async(...))"
            )
        import redis

        return redis.Redis(connection_pool=pool)

    def _prefix(self, resource_type: str) -> str:
        prefix = getattr(self._driver, "prefix", None)
        return str(prefix(resource_type)) if callable(prefix) else f"{resource_type}:"

    def _each_node(self, action: str, ask: Any) -> list[dict[str, Any]]:
        """Ask every primary (one, unless a Cluster) and return the replies."""
        cluster = self._cluster()
        try:
            if cluster is None:
                return [ask(self._client())]
            return [
                ask(cluster.get_redis_connection(node))
                for node in cluster.get_primaries()  # no stubs in redis-py
            ]
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the server's: the caller's own, unchanged
            raise map_error(exc, action) from exc

    def _scan(self, pattern: str | None, count: int) -> Iterator[list[str]]:
        cluster = self._cluster()
        try:
            if cluster is not None:
                page: list[str] = []
                for name in cluster.scan_iter(match=pattern, count=count):
                    page.append(decode_text(name))
                    if len(page) >= count:
                        yield page
                        page = []
                if page:
                    yield page
                return
            client = self._client()
            cursor: int = 0
            while True:
                cursor, names = client.scan(cursor=cursor, match=pattern, count=count)
                if names:
                    yield [decode_text(name) for name in names]
                if int(cursor) == 0:
                    return
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the server's: the caller's own, unchanged
            raise map_error(exc, "SCAN") from exc


class RedisBaseline:
    """redis-py itself, for ``bench --compare``: ``SET EX``, ``GET``, a pipeline, ``MGET``."""

    name = "redis-py"

    def __init__(self, client: Any) -> None:
        """Drive ``client`` (a ``redis.Redis`` on the driver's pool)."""
        self._client = client

    def set(self, key: str, value: str, ttl_seconds: int) -> None:
        """``SET key value EX ttl``."""
        self._client.set(key, value, ex=ttl_seconds)

    def get(self, key: str) -> str | None:
        """``GET key``, decoded."""
        value = self._client.get(key)
        return None if value is None else decode_text(value)

    def set_many(self, items: Mapping[str, str], ttl_seconds: int) -> None:
        """Send a non-transactional pipeline of ``SET ... EX``."""
        pipe = self._client.pipeline(transaction=False)
        for key, value in items.items():
            pipe.set(key, value, ex=ttl_seconds)
        pipe.execute()

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """``MGET``, decoded."""
        return [None if value is None else decode_text(value) for value in self._client.mget(keys)]


def _info_of(client: Any) -> dict[str, Any]:
    info: dict[str, Any] = {}
    for section in ("server", "memory", "stats"):
        info.update(client.info(section))
    info["dbsize"] = int(client.dbsize())
    return info


def _total(replies: list[dict[str, Any]], name: str) -> int | None:
    values = [reply.get(name) for reply in replies]
    if any(not isinstance(value, int) for value in values):
        return None
    return sum(int(value) for value in values if value is not None)


def _resource_type_of(name: str) -> str | None:
    """Return the resource type of a stored name (``":lock"``: a lease lock; ``None``: foreign)."""
    if name.startswith(":lock:"):
        return _LOCKS
    head, sep, _ = name.partition(":")
    if not sep or not head:
        return None
    if head.startswith("{") and head.endswith("}") and len(head) > 2:
        return head[1:-1]  # a Cluster hash tag: {<resource_type>}:<key>
    return head
