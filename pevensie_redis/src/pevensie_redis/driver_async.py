"""The Redis driver for one server (or a primary found through Sentinel), async face.

This module is the source of the sync driver too: ``driver.py``
(:class:`~pevensie_redis.RedisDriver`) is generated from it by
``.ci/unasync.py``. What differs between the faces is only the channel the
commands travel through: :mod:`~pevensie_redis.channel` (a pool of redis-py
connections) or :mod:`~pevensie_redis.channel_async` (multiplexed pipes).
Edit this file, then run ``nox -s generate``.

Single ``get``/``set``/``delete`` calls skip redis-py's generic command layer:
the command is packed once (:mod:`~pevensie_redis.wire`) and sent through the
channel, which keeps that layer's guarantees (retries with backoff, health
checks, timeouts, a broken connection closed before reuse).

Batch operations send one multi-key command per chunk of keys: ``MGET``,
``MSET``, ``UNLINK``, and for ``set_many`` with a TTL one ``EVALSHA`` of a
cached script that sets every key with ``EX`` (a pipeline of ``SET ... EX`` on
a server that refuses scripts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis.exceptions import NoScriptError

from pevensie_redis import wire
from pevensie_redis.channel_async import Channel, not_connected_channel, open_channel
from pevensie_redis.config import RedisConfig
from pevensie_redis.errors import decode_value, first_error_reply, map_error, refuses_scripting

__all__ = ["AsyncRedisDriver", "AsyncRedisSentinelDriver"]


class AsyncRedisDriver:
    """A Pevensie Cache driver for one Redis-compatible server; see :class:`RedisConfig`.

    Safe for any number of concurrent callers (threads on the sync face, tasks
    of one event loop on the async face). Build it with
    :func:`~pevensie_redis.new_cache_driver` and hand it to
    ``cache.new(driver=...)``, or let ``cache.new(driver="redis", ...)`` do both.
    """

    def __init__(self, config: RedisConfig) -> None:
        """Prepare a driver for ``config``; nothing connects before ``connect()``."""
        if not isinstance(config, RedisConfig):
            raise TypeError(f"config must be a RedisConfig, not {type(config).__name__}")
        self.config = config
        self._channel: Channel | Any = not_connected_channel
        self._execute = self._channel.execute
        self._scripting = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.display_url()!r})"

    @property
    def connection_pool(self) -> Any:
        """The live redis-py pool of the sync face while connected, else ``None``."""
        return self._channel.pool

    # -- lifecycle -------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection pool, and check the server answers PING with these credentials.

        Raises :class:`~pevensie_redis.RedisConnectionError`,
        :class:`~pevensie_redis.RedisTimeoutError` or
        :class:`~pevensie_redis.RedisAuthenticationError` (and closes
        everything) when it does not.
        """
        channel = await open_channel(self.config)
        self._scripting = True
        self._channel = channel
        self._execute = channel.execute

    async def disconnect(self) -> None:
        """Close every connection (those in use as soon as their call ends)."""
        channel = self._channel
        self._channel = not_connected_channel
        self._execute = not_connected_channel.execute
        await channel.close()

    # -- single operations: the hot path ---------------------------------------------

    async def get(self, resource_type: str, key: str) -> str | None:
        """``GET <resource_type>:<key>``; ``None`` when absent or expired."""
        value = await self._execute(wire.pack_get(f"{resource_type}:{key}".encode()), "GET")
        return None if value is None else decode_value(value, "GET")

    async def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """One atomic ``SET`` round trip: ``SET k v EX ttl``, or ``SET k v`` clearing any TTL."""
        full = f"{resource_type}:{key}".encode()
        if ttl_seconds is None:
            await self._execute(wire.pack_set(full, value.encode()), "SET")
        else:
            await self._execute(wire.pack_set_ex(full, value.encode(), ttl_seconds), "SET")

    async def delete(self, resource_type: str, key: str) -> None:
        """``UNLINK <resource_type>:<key>``; an absent key is fine."""
        await self._execute(wire.pack_delete(f"{resource_type}:{key}".encode()), "UNLINK")

    # -- batch operations ------------------------------------------------------------

    async def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """One ``MGET`` per chunk of keys; misses are absent from the result."""
        prefix = f"{resource_type}:"
        parts = wire.chunks(keys)
        replies = await self._pipeline(
            [wire.pack(["MGET", *[prefix + key for key in part]]) for part in parts], "MGET"
        )
        found: dict[str, str] = {}
        for part, values in zip(parts, replies, strict=True):
            for key, value in zip(part, values, strict=True):
                if value is not None:
                    found[key] = decode_value(value, "MGET")
        return found

    async def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        """``MSET`` without a TTL; with one, ``EVALSHA`` of a script doing ``SET ... EX``.

        A server that refuses scripts (ACL, renamed commands) gets a pipeline of
        ``SET ... EX`` instead, from then on.
        """
        prefix = f"{resource_type}:"
        pairs = [((prefix + key).encode(), value.encode()) for key, value in items.items()]
        if ttl_seconds is None:
            commands = [
                wire.pack(["MSET", *[part for pair in chunk for part in pair]])
                for chunk in wire.chunks(pairs)
            ]
            await self._pipeline(commands, "MSET")
            return
        if self._scripting:
            scripted = [
                wire.pack_set_many_ex(
                    [full for full, _ in chunk], [value for _, value in chunk], ttl_seconds
                )
                for chunk in wire.chunks(pairs)
            ]
            replies = await self._channel.pipeline(scripted, "EVALSHA")
            if any(isinstance(reply, NoScriptError) for reply in replies):
                # First use on this server, or its script cache was flushed: load it once.
                await self._pipeline(
                    [wire.pack(["SCRIPT", "LOAD", wire.SET_EX_SCRIPT])], "SCRIPT LOAD"
                )
                replies = await self._channel.pipeline(scripted, "EVALSHA")
            error = first_error_reply(replies)
            if error is None:
                return
            if not refuses_scripting(error):
                raise map_error(error, "EVALSHA") from error
            self._scripting = False
        commands = [wire.pack_set_ex(full, value, ttl_seconds) for full, value in pairs]
        await self._pipeline(commands, "SET EX (pipeline)")

    async def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """One ``UNLINK`` per chunk of keys; absent keys are fine."""
        prefix = f"{resource_type}:"
        full = [prefix + key for key in keys]
        await self._pipeline(
            [wire.pack(["UNLINK", *chunk]) for chunk in wire.chunks(full)], "UNLINK"
        )

    # -- helpers ---------------------------------------------------------------------

    async def _pipeline(self, commands: list[bytes], command: str) -> list[Any]:
        """Send ``commands`` in one round trip; the first error reply is raised mapped."""
        replies = await self._channel.pipeline(commands, command)
        error = first_error_reply(replies)
        if error is not None:
            raise map_error(error, command) from error
        return replies


class AsyncRedisSentinelDriver(AsyncRedisDriver):
    """The driver for a primary watched by Redis Sentinel (see :mod:`pevensie_redis.sentinel`).

    Built by ``new_cache_driver`` when the configuration names ``sentinels``:
    every new connection goes to the primary the sentinels name, so the same
    cache object follows a failover by itself.
    """

    def __init__(self, config: RedisConfig) -> None:
        """Prepare a driver for ``config`` (with ``sentinels`` and ``service_name``)."""
        super().__init__(config)
        if not config.sentinels or config.service_name is None:
            raise ValueError(f"{type(self).__name__} needs a RedisConfig with sentinels")
