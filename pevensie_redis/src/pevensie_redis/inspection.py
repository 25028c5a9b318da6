"""The Redis driver's inspector: TTLs, key listings and server facts for operator tools.

Registered with the driver (see :mod:`pevensie_redis.plugin`) and found by
``cache.inspector(c)``; the ``pevensie-cache`` command line uses it for
``ttl``, ``keys``, ``stats``, ``check`` and ``bench --compare``. It talks to
the server through the driver's own connections (a connection lent by the
driver's ``connection_pool`` for a single server or Sentinel primary; on a
Cluster, the driver's router, :attr:`~pevensie_redis.RedisClusterDriver.router`),
so it needs the driver connected, and on the sync face. Key listings use
``SCAN`` pages with the resource type's glob characters escaped: never
``KEYS``, so the server is never blocked. The ``bench --compare`` baseline is
a redis-py client of its own to the same server.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pevensie_cache import NotConnected, UnsupportedOperation
from pevensie_cache.errors import raised_by_signal_handler
from pevensie_cache.inspection import KeySample, KeyTtl, ServerInfo, resource_type_of
from pevensie_redis.errors import RedisConnectionError, RedisDriverError, map_error
from pevensie_redis.protocol.commands import decode_text, pack
from pevensie_redis.protocol.keys import escape_glob
from pevensie_redis.protocol.keys import prefix as key_prefix
from pevensie_redis.protocol.slots import key_slot

__all__ = ["RedisBaseline", "RedisInspector", "inspector_for_driver"]


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
        replies = self._each_node("INFO", _info_of)
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
        router = self._cluster()
        try:
            if router is not None:
                data = full.encode()
                reply = router.execute(key_slot(data), pack([b"PTTL", data]), "PTTL")
                if isinstance(reply, Exception):
                    raise reply
                millis = int(reply)
            else:
                millis = int(self._ask("PTTL", full))
        except RedisDriverError:
            raise
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
        """redis-py on the driver's server; ``None`` for a Cluster (its client routes itself)."""
        if self._cluster() is not None:
            return None
        pool = self._pool()
        import redis

        config = self._driver.config
        where = pool.endpoint()
        options: dict[str, Any] = {
            "db": config.db,
            "username": config.username,
            "password": config.password,
            "socket_timeout": config.timeout_seconds,
            "socket_connect_timeout": config.timeout_seconds,
            "protocol": 2,
        }
        if where.path is not None:
            options["unix_socket_path"] = where.path
        else:
            options.update(host=where.host, port=where.port)
        if config.tls:
            options.update(
                ssl=True,
                ssl_ca_certs=config.tls_ca_file,
                ssl_certfile=config.tls_cert_file,
                ssl_keyfile=config.tls_key_file,
                ssl_cert_reqs="required" if config.tls_verify else "none",
                ssl_check_hostname=config.tls_verify,
            )
        return RedisBaseline(redis.Redis(**options))

    # -- helpers -----------------------------------------------------------------------

    def _cluster(self) -> Any:
        """Return the Cluster driver's router, or ``None`` for a driver of another mode."""
        from pevensie_redis.cluster import RedisClusterDriver

        if isinstance(self._driver, RedisClusterDriver):
            router = self._driver.router
            if router is None:
                raise NotConnected("the cache is not connected")
            return router
        return None

    def _pool(self) -> Any:
        if not hasattr(self._driver, "connection_pool"):
            raise UnsupportedOperation(f"cannot inspect a {type(self._driver).__name__}")
        pool = self._driver.connection_pool
        if pool is None:
            # Never connected, disconnected, or (fail_open) its connect found no server.
            raise NotConnected("the cache is not connected to its server")
        if not hasattr(pool, "endpoint"):
            raise UnsupportedOperation(
                "the Redis inspector needs a connected cache on the sync face "
                "(cache.from_url(...), not cache.from_url_async(...))"
            )
        return pool

    def _ask(self, *args: str | bytes | int) -> Any:
        """Send one command over a connection lent by the driver; return its reply."""
        pool = self._pool()
        connection = pool.get_connection()
        try:
            connection.send_command(*args)
            return connection.read_response()
        finally:
            pool.release(connection)

    def _prefix(self, resource_type: str) -> str:
        of_driver = getattr(self._driver, "prefix", None)
        return str(of_driver(resource_type)) if callable(of_driver) else key_prefix(resource_type)

    def _each_node(self, action: str, ask: Any) -> list[dict[str, Any]]:
        """Ask every primary (one, unless a Cluster) and return the replies."""
        router = self._cluster()
        try:
            if router is None:
                return [ask(self)]
            return [_node_info(router, node) for node in router.primaries()]
        except RedisDriverError:
            raise
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the server's: the caller's own, unchanged
            raise map_error(exc, action) from exc

    def _scan(self, pattern: str | None, count: int) -> Iterator[list[str]]:
        router = self._cluster()
        try:
            if router is not None:
                page: list[str] = []
                for node in router.primaries():
                    for name in _scan_node(router, node, pattern, count):
                        page.append(decode_text(name))
                        if len(page) >= count:
                            yield page
                            page = []
                if page:
                    yield page
                return
            cursor = b"0"
            while True:
                args: list[str | bytes | int] = ["SCAN", cursor]
                if pattern is not None:
                    args += ["MATCH", pattern]
                cursor, names = self._ask(*args, "COUNT", count)
                if names:
                    yield [decode_text(name) for name in names]
                if cursor == b"0":
                    return
        except (RedisDriverError, NotConnected):
            raise
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


def _info_of(inspector: RedisInspector) -> dict[str, Any]:
    """``INFO server``, ``memory``, ``stats`` and ``DBSIZE`` over the driver's lent connections."""
    info: dict[str, Any] = {}
    for section in ("server", "memory", "stats"):
        info.update(_parse_info(inspector._ask("INFO", section)))
    info["dbsize"] = int(inspector._ask("DBSIZE"))
    return info


def _parse_info(reply: bytes) -> dict[str, Any]:
    """Read an ``INFO`` reply: ``name:value`` lines (integers as ``int``), comments skipped."""
    info: dict[str, Any] = {}
    for line in decode_text(reply).splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(":")
        info[name] = int(value) if value.lstrip("-").isdigit() else value
    return info


_INFO = [pack([b"INFO", section]) for section in (b"server", b"memory", b"stats")]
_DBSIZE = pack([b"DBSIZE"])


def _node_info(router: Any, node: str) -> dict[str, Any]:
    """``INFO server``, ``memory`` and ``stats`` and ``DBSIZE`` of one Cluster node."""
    replies = router.exchange(node, [*_INFO, _DBSIZE], "INFO")
    if len(replies) != len(_INFO) + 1:
        raise RedisConnectionError(f"INFO: {node} did not answer")
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    info: dict[str, Any] = {}
    for text in replies[:-1]:
        info.update(_parse_info(text))
    info["dbsize"] = int(replies[-1])
    return info


def _scan_node(router: Any, node: str, pattern: str | None, count: int) -> Iterator[bytes]:
    """Every key name ``SCAN`` lists on one Cluster node."""
    cursor = b"0"
    while True:
        command = [b"SCAN", cursor, *([b"MATCH", pattern.encode()] if pattern is not None else [])]
        replies = router.exchange(node, [pack([*command, b"COUNT", b"%d" % count])], "SCAN")
        if not replies:
            raise RedisConnectionError(f"SCAN: {node} did not answer")
        if isinstance(replies[0], Exception):
            raise replies[0]
        cursor, names = replies[0]
        yield from names
        if cursor == b"0":
            return


def _total(replies: list[dict[str, Any]], name: str) -> int | None:
    values = [reply.get(name) for reply in replies]
    if any(not isinstance(value, int) for value in values):
        return None
    return sum(int(value) for value in values if value is not None)


def _resource_type_of(name: str) -> str | None:
    """Return the resource type of a stored name, hash-tagged or not (``None``: foreign)."""
    if name.startswith("{"):  # a Cluster hash tag: {<resource_type>}:<key>
        close = name.find("}")
        if close > 0 and name[close + 1 : close + 2] == ":":
            name = name[1:close] + name[close + 1 :]  # a namespace's ':' may be inside
    return resource_type_of(name)
