"""The Sentinel mode of the driver: ``RedisConfig(sentinels=..., service_name=...)``.

The driver is the single-server :class:`~pevensie_redis.driver.RedisDriver`
(same thin command path, retries, timeouts, batch operations) over a
different pool: its connections are redis-py's Sentinel-managed connections,
which ask the sentinels for the primary of ``service_name`` each time they
(re)connect. After a failover the next command on a connection to the old
primary fails, the driver's retry reconnects it, and the reconnection lands on
the primary the sentinels now name. A connection still open to a demoted
primary gets ``READONLY`` on a write, which redis-py turns into a reconnection
too, and the pool asks the sentinels again about once a second
(:class:`~pevensie_redis.pool.SentinelCachePool`), so it leaves a former primary
that stays up. So the same cache object follows a failover by itself; until the
sentinels have promoted the replica (about ``down-after-milliseconds`` +
1-2 s), calls raise :class:`~pevensie_redis.RedisConnectionError`.

Credentials and TLS settings are the data nodes'; the sentinels are reached
with the same timeouts (and TLS settings when ``tls`` is on), without a password.
"""

from __future__ import annotations

from typing import Any

from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import TimeoutError as RedisPyTimeoutError
from redis.retry import Retry
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from pevensie_redis.config import RedisConfig
from pevensie_redis.driver import RedisDriver
from pevensie_redis.pool import CachePool, SentinelCachePool, pool_options

__all__ = ["ClearSentinel", "RedisSentinelDriver", "sentinel_options"]


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
        last_error: BaseException | None = None
        for index, sentinel in enumerate(self.sentinels):
            kwargs = sentinel.connection_pool.connection_kwargs
            where = f"{kwargs.get('host')}:{kwargs.get('port')}"
            try:
                masters: Any = sentinel.sentinel_masters()  # {name: state} with RESP2
                state = masters.get(service_name)
            except (RedisPyConnectionError, RedisPyTimeoutError) as exc:
                problems.append(f"{where}: {exc}")
                last_error = exc
                continue
            if not state:
                problems.append(f"{where}: does not monitor {service_name!r}")
            elif not self.check_master_state(state, service_name):  # type: ignore[no-untyped-call]
                problems.append(f"{where}: reports the primary down")
            else:
                # Ask the sentinel that answered first next time.
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                return str(state["ip"]), int(state["port"])
        raise MasterNotFoundError(
            f"no sentinel names a primary for {service_name!r} ({'; '.join(problems)})"
        ) from last_error


class RedisSentinelDriver(RedisDriver):
    """A Pevensie Cache driver for a primary watched by Redis Sentinel.

    Built by ``new_cache_driver`` when the configuration names ``sentinels``.
    """

    def __init__(self, config: RedisConfig) -> None:
        """Prepare a driver for ``config`` (with ``sentinels`` and ``service_name``)."""
        super().__init__(config)
        if not config.sentinels or config.service_name is None:
            raise ValueError("RedisSentinelDriver needs a RedisConfig with sentinels")
        self._sentinel: Sentinel | None = None

    def __repr__(self) -> str:
        return f"RedisSentinelDriver({self.config.display_url()!r})"

    @property
    def sentinel(self) -> Sentinel | None:
        """The redis-py ``Sentinel`` the pool asks, while connected, else ``None``."""
        return self._sentinel

    def _make_pool(self) -> CachePool:
        """Build a pool whose connections go to the primary the sentinels name."""
        options, sentinel_kwargs = sentinel_options(self.config)
        sentinel = ClearSentinel(  # type: ignore[no-untyped-call]
            list(self.config.sentinels), sentinel_kwargs=sentinel_kwargs
        )
        self._close_sentinel()
        self._sentinel = sentinel
        assert self.config.service_name is not None  # checked in __init__
        return SentinelCachePool(  # type: ignore[no-untyped-call]
            self.config.service_name, sentinel, **options
        )

    def connect(self) -> None:
        """Ask the sentinels for the primary and check it answers, as the single-server driver.

        Raises :class:`~pevensie_redis.RedisConnectionError` when no sentinel
        names a primary for ``service_name`` or the primary cannot be reached.
        """
        try:
            super().connect()
        except BaseException:
            self._close_sentinel()
            raise

    def disconnect(self) -> None:
        """Close every connection to the primary and to the sentinels."""
        super().disconnect()
        self._close_sentinel()

    def _close_sentinel(self) -> None:
        sentinel, self._sentinel = self._sentinel, None
        if sentinel is not None:
            for client in sentinel.sentinels:
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
