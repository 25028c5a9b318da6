"""Finding the primary through Redis Sentinel, for both faces of the driver.

With ``RedisConfig(sentinels=..., service_name=...)`` the driver asks the
sentinels where the primary of ``service_name`` is each time it opens a
connection. After a failover the next command on a connection to the old
primary fails (or gets ``READONLY``, the old primary being a replica now); the
driver retries on a new connection, which lands on the primary the sentinels
now name. While used, both faces also ask the sentinels about once a second
(:class:`~pevensie_redis.primary_check.PrimaryCheck`: the sync face's
:class:`~pevensie_redis.pool.SentinelCachePool`, the async face's channel), so
they leave a former primary that stays up (``SENTINEL FAILOVER``) within about
a second. So the same cache object follows a failover by itself; until the
sentinels have promoted a replica (about ``down-after-milliseconds`` + 1-2 s),
calls raise :class:`~pevensie_redis.RedisConnectionError`.

The sentinels are reached with the driver's timeouts (and TLS settings when
``tls`` is on) and their own credentials, ``sentinel_username`` and
``sentinel_password`` (``username``/``password`` are the data nodes'). Wrong
sentinel credentials are a :class:`~pevensie_redis.RedisAuthenticationError`
that says it was the sentinels.

With ``read_from_replicas``, the sentinels are also asked which replicas
there are (``SENTINEL REPLICAS``): only those they do not flag ``s_down``,
``o_down`` or ``disconnected`` and whose ``master-link-status`` is ``ok`` are
read from (:func:`replicas_of`).

- :func:`primary_of` and :func:`replicas_of` read one sentinel's answer (the
  same for both faces);
- the sync face uses redis-py's ``Sentinel`` (:class:`ClearSentinel`,
  :func:`sentinel_pool`);
- the async face asks with its own pipes (:func:`find_primary`,
  :func:`find_replicas`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import TimeoutError as RedisPyTimeoutError
from redis.retry import Retry
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from pevensie_redis import wire
from pevensie_redis.config import RedisConfig, sentinel_service
from pevensie_redis.pipe import Endpoint, open_pipe
from pevensie_redis.pool import SentinelCachePool, pool_options

__all__ = [
    "ClearSentinel",
    "find_primary",
    "find_replicas",
    "primary_of",
    "replicas_of",
    "sentinel_options",
    "sentinel_pool",
]

_DOWN = frozenset({"s_down", "o_down", "disconnected"})


def primary_of(state: Mapping[str, Any] | None, service_name: str) -> tuple[str, int] | str:
    """Read one sentinel's state of ``service_name``: the primary's address, or what is wrong."""
    if not state:
        return f"does not monitor {service_name!r}"
    flags = set(_text(state.get("flags", "")).split(","))
    if "master" not in flags or flags & _DOWN:
        return "reports the primary down"
    return _text(state["ip"]), int(state["port"])


def replicas_of(reply: Any) -> list[tuple[str, int]]:
    """Read one sentinel's ``SENTINEL REPLICAS`` reply: the replicas fit to read from.

    A replica flagged ``s_down``, ``o_down`` or ``disconnected``, or whose link
    to the primary is not ``ok`` (cut, or still syncing), is left out.
    """
    found: list[tuple[str, int]] = []
    for item in reply or ():
        state = _pairs(item)
        flags = set(state.get("flags", "").split(","))
        if flags & _DOWN or state.get("master-link-status") != "ok":
            continue
        if state.get("ip") and state.get("port", "").isdigit():
            found.append((state["ip"], int(state["port"])))
    return found


def _no_replica_list(service_name: str, problems: Sequence[str]) -> Exception:
    return RedisPyConnectionError(
        f"no sentinel listed the replicas of {service_name!r} ({'; '.join(problems)})"
    )


def _no_primary(service_name: str, problems: Sequence[str], refused: int) -> Exception:
    """Return the error when no sentinel named a primary (the credentials, when all refused)."""
    if refused and refused == len(problems):
        return AuthenticationError(
            "every sentinel refused the sentinel credentials (sentinel_username / "
            "sentinel_password; the data nodes' username / password are separate)"
        )
    return MasterNotFoundError(
        f"no sentinel names a primary for {service_name!r} ({'; '.join(problems)})"
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- the sync face: redis-py's Sentinel ---------------------------------------------------


class ClearSentinel(Sentinel):
    """redis-py's ``Sentinel`` whose "no primary" error says briefly why, without client reprs.

    redis-py's own message embeds the full ``repr`` of every sentinel client;
    this one names each sentinel by address with what went wrong, and keeps
    the last connection error as ``__cause__`` (a TLS verification failure is
    then reported as such).
    """

    def discover_master(self, service_name: str) -> tuple[str, int]:
        """Return the primary's address that the first healthy sentinel reports."""
        problems: list[str] = []
        refused = 0
        last_error: BaseException | None = None
        for index, sentinel in enumerate(self.sentinels):
            kwargs = sentinel.connection_pool.connection_kwargs
            where = f"{kwargs.get('host')}:{kwargs.get('port')}"
            try:
                masters: Any = sentinel.sentinel_masters()  # {name: state} with RESP2
            except AuthenticationError:
                problems.append(f"{where}: refused the sentinel credentials")
                refused += 1
                continue
            except (RedisPyConnectionError, RedisPyTimeoutError) as exc:
                problems.append(f"{where}: {exc}")
                last_error = exc
                continue
            found = primary_of(masters.get(service_name), service_name)
            if isinstance(found, str):
                problems.append(f"{where}: {found}")
                continue
            # Ask the sentinel that answered first next time.
            self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
            return found
        raise _no_primary(service_name, problems, refused) from last_error

    def replicas(self, service_name: str) -> list[tuple[str, int]]:
        """Return the replicas of ``service_name`` fit to read from, as the first sentinel says.

        Raises redis-py's ``ConnectionError`` when no sentinel answers.
        """
        problems: list[str] = []
        for sentinel in self.sentinels:
            kwargs = sentinel.connection_pool.connection_kwargs
            try:
                reply = sentinel.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL REPLICAS", service_name
                )
            except RedisError as exc:
                problems.append(f"{kwargs.get('host')}:{kwargs.get('port')}: {exc}")
                continue
            return replicas_of(reply)
        raise _no_replica_list(service_name, problems)

    def close(self) -> None:
        """Close the connections to every sentinel."""
        for client in self.sentinels:
            client.close()


def sentinel_options(config: RedisConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(pool options, sentinel connection options)`` for ``config``.

    The pool options are the single-server driver's, without a fixed host and
    port and with Sentinel-managed connections.
    """
    options = pool_options(config)
    options.pop("host", None)
    options.pop("port", None)
    options["connection_class"] = (
        SentinelManagedSSLConnection if config.tls else SentinelManagedConnection
    )
    options["is_master"] = True
    seconds = config.timeout_seconds
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": seconds,
        "socket_connect_timeout": seconds,
        "socket_keepalive": True,
        "client_name": config.client_name,
        "username": config.sentinel_username,
        "password": config.sentinel_password,
        # One attempt per sentinel: a dead one is skipped for the next, and the
        # driver's own retries cover the whole lookup.
        "retry": Retry(NoBackoff(), 0),
    }
    if config.tls:
        sentinel_kwargs.update(
            ssl=True,
            ssl_ca_certs=config.tls_ca_file,
            ssl_certfile=config.tls_cert_file,
            ssl_keyfile=config.tls_key_file,
            ssl_cert_reqs="required" if config.tls_verify else "none",
            ssl_check_hostname=config.tls_verify,
        )
    return options, sentinel_kwargs


def sentinel_pool(config: RedisConfig) -> tuple[SentinelCachePool, ClearSentinel]:
    """Return a pool whose connections go to the primary the sentinels name, and the sentinels."""
    service = sentinel_service(config)
    options, sentinel_kwargs = sentinel_options(config)
    sentinel = ClearSentinel(list(config.sentinels), sentinel_kwargs=sentinel_kwargs)
    return SentinelCachePool(service, sentinel, **options), sentinel  # type: ignore[no-untyped-call]


# -- the async face: ask with pipes ------------------------------------------------------


async def find_primary(sentinels: list[Endpoint], service_name: str) -> tuple[str, int]:
    """Return the primary's address that the first healthy sentinel of ``sentinels`` reports.

    The sentinel that answered is moved to the front of ``sentinels``, to be
    asked first next time. Raises redis-py's ``MasterNotFoundError`` (a
    ``ConnectionError``) naming each sentinel's problem.
    """
    problems: list[str] = []
    refused = 0
    last_error: BaseException | None = None
    for index, endpoint in enumerate(sentinels):
        try:
            pipe = await open_pipe(endpoint)
            try:
                reply = await pipe.send(wire.pack(["SENTINEL", "MASTER", service_name]))
            finally:
                pipe.close()
        except AuthenticationError:
            problems.append(f"{endpoint.label}: refused the sentinel credentials")
            refused += 1
            continue
        except (RedisPyConnectionError, RedisPyTimeoutError) as exc:
            problems.append(f"{endpoint.label}: {exc}")
            last_error = exc
            continue
        if isinstance(reply, AuthenticationError):
            problems.append(f"{endpoint.label}: refused the sentinel credentials")
            refused += 1
            continue
        state = None if isinstance(reply, Exception) else _pairs(reply)
        found = primary_of(state, service_name)
        if isinstance(found, str):
            problems.append(f"{endpoint.label}: {found}")
            continue
        sentinels[0], sentinels[index] = endpoint, sentinels[0]
        return found
    raise _no_primary(service_name, problems, refused) from last_error


async def find_replicas(sentinels: list[Endpoint], service_name: str) -> list[tuple[str, int]]:
    """Return the replicas of ``service_name`` fit to read from, as the first sentinel says.

    Raises redis-py's ``ConnectionError`` when no sentinel answers.
    """
    problems: list[str] = []
    for endpoint in sentinels:
        try:
            pipe = await open_pipe(endpoint)
            try:
                reply = await pipe.send(wire.pack(["SENTINEL", "REPLICAS", service_name]))
            finally:
                pipe.close()
        except RedisError as exc:
            problems.append(f"{endpoint.label}: {exc}")
            continue
        if isinstance(reply, Exception):
            problems.append(f"{endpoint.label}: {reply}")
            continue
        return replicas_of(reply)
    raise _no_replica_list(service_name, problems)


def _pairs(reply: Any) -> dict[str, Any]:
    """Read one instance's state: a flat list of names and values (RESP2), or a map (RESP3)."""
    if isinstance(reply, Mapping):
        return {_text(name): _flat(value) for name, value in reply.items()}
    items = [_text(item) for item in reply or ()]
    return dict(zip(items[::2], items[1::2], strict=False))


def _flat(value: Any) -> str:
    if isinstance(value, (set, frozenset, list, tuple)):
        return ",".join(sorted(_text(item) for item in value))
    return _text(value)
