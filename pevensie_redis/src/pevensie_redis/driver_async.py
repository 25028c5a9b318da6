"""The Redis driver for one server (or a primary found through Sentinel), async face.

This module is the source of the sync driver too: ``driver.py``
(:class:`~pevensie_redis.RedisDriver`) is generated from it by
``.ci/unasync.py``. Edit this file, then run ``nox -s generate``.

A driver is composed at ``connect()``: a locator says where the server is
(:class:`~pevensie_redis.direct.Direct`, or
:class:`~pevensie_redis.sentinel.Sentinels` with ``sentinels``), one channel
carries the commands there (:mod:`~pevensie_redis.channel`: retries, timeouts,
health checks, following a moving primary), and layers go on top: the replica
reads (:mod:`~pevensie_redis.replicas`, with ``read_from_replicas``) and the
near cache (:class:`AsyncNearRedisDriver`, with ``near_cache``).

Single ``get``/``set``/``delete`` calls are packed once
(:mod:`~pevensie_redis.protocol.commands`) and sent through the channel.

Batch operations send one multi-key command per chunk of keys: ``MGET``,
``MSET``, ``UNLINK``, and for ``set_many`` with a TTL one ``EVALSHA`` of a
cached script that sets every key with ``EX`` (a pipeline of ``SET ... EX`` on
a server that refuses scripts).

Entries written with the cache's freshness options or tags (envelopes) are
stored with their mark as the byte ``0xFF`` (``stores_envelopes``); a
``get_or_set`` with tags reads the entry and its tags' counters in one
``MGET`` (``get_across``), and keeps the envelopes it read lately decoded, so
a hot entry's text is not decoded on every hit. A lease's release is published, and waiters are
woken through one subscriber connection per driver
(:mod:`~pevensie_redis.lock_releases`), opened when a waiter first waits.

Reads (``get``, ``get_many``) go through ``_reads``, which is the channel
itself, or with ``read_from_replicas`` the replicas; it is bound at
``connect()``, so the plain hot path makes no choice per call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from pevensie_cache.driver import Progress
from pevensie_redis.channel_async import Channel, Leases, not_connected_channel, open_channel
from pevensie_redis.config import RedisConfig
from pevensie_redis.direct_async import Direct
from pevensie_redis.errors import (
    RedisConnectionError,
    counter_error,
    decode_value,
    first_error_reply,
    map_error,
    refuses_scripting,
)
from pevensie_redis.listener_async import InvalidationListener, start_near_cache
from pevensie_redis.lock_releases_async import LockReleases, LockWatch, open_lock_releases
from pevensie_redis.near import MISS, NearStats, NearStore
from pevensie_redis.protocol.commands import (
    EXEC,
    EXTEND_LOCK_SCRIPT,
    EXTEND_LOCK_SCRIPT_SHA,
    GET_REPLY,
    INTEGER_REPLY,
    LOCK_RELEASED_CHANNEL,
    MULTI,
    MULTI_REPLY,
    QUEUED_REPLY,
    RELEASE_LOCK_SCRIPT,
    RELEASE_LOCK_SCRIPT_SHA,
    SCAN_REPLY,
    SCRIPT_LOAD_REPLY,
    SET_EX_SCRIPT,
    SET_NX_REPLY,
    SET_REPLY,
    NotText,
    Shape,
    chunks,
    decode_envelope,
    encode_envelope,
    exec_reply,
    mget_reply,
    pack,
    pack_delete,
    pack_get,
    pack_mget2,
    pack_scan,
    pack_set,
    pack_set_ex,
    pack_set_many_ex,
    pack_set_nx,
)
from pevensie_redis.protocol.keys import full_key, lock_key, prefix, scan_pattern
from pevensie_redis.replicas_async import AsyncReplicaReads
from pevensie_redis.sentinel_async import Sentinels
from pevensie_redis.tls_check import check_tls_async

__all__ = ["AsyncNearRedisDriver", "AsyncRedisDriver", "AsyncRedisSentinelDriver"]

_NO_SCRIPTS: Any = object()
"""What :meth:`AsyncRedisDriver._lock_script` returns where the server refuses scripts."""

_TRANSACTION_SHAPES = (
    MULTI_REPLY,
    QUEUED_REPLY,
    QUEUED_REPLY,
    exec_reply(SET_NX_REPLY, INTEGER_REPLY),
)
"""``MULTI``, ``SET ... NX EX``, ``INCRBY``, ``EXEC``: the replies of ``incr`` with a TTL."""

_MGET2_REPLY = mget_reply(2)
"""The reply of ``get_across``'s usual ``MGET``: an entry and one tag's counter."""


class AsyncRedisDriver:
    """A Pevensie Cache driver for one Redis-compatible server; see :class:`RedisConfig`.

    Safe for any number of concurrent callers (threads on the sync face, tasks
    of one event loop on the async face). Build it with
    :func:`~pevensie_redis.new_cache_driver` and hand it to
    ``cache.new(driver=...)``, or let ``cache.new(driver="redis", ...)`` do both.
    """

    stores_envelopes = True
    """The cache's envelopes are stored with their mark as the byte ``0xFF`` (see the module)."""

    def __init__(self, config: RedisConfig) -> None:
        """Prepare a driver for ``config``; nothing connects before ``connect()``."""
        if not isinstance(config, RedisConfig):
            raise TypeError(f"config must be a RedisConfig, not {type(config).__name__}")
        self.config = config
        self._locator: Direct | Sentinels | None = None
        self._releases: LockReleases | None = None
        self._channel: Channel | Any = not_connected_channel
        self._execute = self._channel.execute
        self._reads: Channel | AsyncReplicaReads | Any = not_connected_channel
        """Where reads go: the channel, or the replicas (bound at ``connect()``)."""
        self._read = self._reads.execute
        self._scripting = True
        self._decoded: dict[bytes, str] = {}  # envelopes get_across read lately, decoded

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.display_url()!r})"

    @property
    def connection_pool(self) -> Leases | None:
        """Connections lent for commands of your own, while connected (else ``None``).

        ``get_connection()`` borrows one of the driver's ``pool_size``
        connections for the caller alone (``send_command(...)``, then
        ``read_response()``); ``release(connection)`` gives it back. While
        every connection is lent out, the cache's own calls wait up to
        ``timeout`` for one, then raise
        :class:`~pevensie_redis.RedisPoolExhausted`. See
        :class:`~pevensie_redis.channel.Leases`.
        """
        pool: Leases | None = self._channel.pool
        return pool

    @property
    def replica_reads(self) -> AsyncReplicaReads | None:
        """Where reads go with ``read_from_replicas`` while connected, else ``None``."""
        reads = self._reads
        return reads if isinstance(reads, AsyncReplicaReads) else None

    # -- lifecycle -------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect, and check the server answers PING with these credentials.

        Raises :class:`~pevensie_redis.RedisConnectionError`,
        :class:`~pevensie_redis.RedisTimeoutError` or
        :class:`~pevensie_redis.RedisAuthenticationError` (and closes
        everything) when it does not; :class:`~pevensie_redis.RedisProtocolError`
        at once for a TLS configuration whose server speaks plain Redis.
        """
        await check_tls_async(self.config)
        config = self.config
        locator = Sentinels(config) if config.sentinels else Direct(config)
        channel: Channel | None = None
        reads: Channel | AsyncReplicaReads | None = None
        try:
            channel = await open_channel(
                locator.primary, config, follows_primary=isinstance(locator, Sentinels)
            )
            await self._layer(channel, locator)
            reads = channel
            if config.read_from_replicas and isinstance(locator, Sentinels):
                reads = AsyncReplicaReads(channel, locator, config)
                await reads.start()
        except BaseException:
            await _close_parts(None, reads, channel, locator)
            raise
        self._scripting = True
        self._locator = locator
        self._channel, self._reads = channel, reads
        self._execute, self._read = channel.execute, reads.execute
        # Its pipe goes where the channel's do (through Sentinel: the primary, asked anew).
        self._releases = open_lock_releases(locator.primary, config)

    async def _layer(self, channel: Channel, locator: Direct | Sentinels) -> None:
        """Put this driver's layers over ``channel`` (none here; the near cache's, below)."""

    async def disconnect(self) -> None:
        """Close every connection (those in use as soon as their call ends)."""
        channel, reads, locator = self._channel, self._reads, self._locator
        self._channel = self._reads = not_connected_channel
        self._execute = self._read = not_connected_channel.execute
        self._locator = None
        releases, self._releases = self._releases, None
        await _close_parts(releases, reads, channel, locator)

    # -- single operations: the hot path ---------------------------------------------

    async def get(self, resource_type: str, key: str) -> str | None:
        """``GET <resource_type>:<key>``; ``None`` when absent or expired."""
        value = await self._read(pack_get(full_key(resource_type, key)), "GET", GET_REPLY)
        return None if value is None else decode_value(value, "GET")

    async def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """One atomic ``SET`` round trip: ``SET k v EX ttl``, or ``SET k v`` clearing any TTL."""
        full = full_key(resource_type, key)
        try:
            data = value.encode()
        except UnicodeEncodeError:
            data = encode_envelope(value)
        if ttl_seconds is None:
            await self._execute(pack_set(full, data), "SET", SET_REPLY)
        else:
            await self._execute(pack_set_ex(full, data, ttl_seconds), "SET", SET_REPLY)

    async def delete(self, resource_type: str, key: str) -> bool:
        """``UNLINK <resource_type>:<key>``; whether it removed a key (an absent one is fine)."""
        packed = pack_delete(full_key(resource_type, key))
        return bool(await self._execute(packed, "UNLINK", INTEGER_REPLY))

    async def exists(self, resource_type: str, key: str) -> bool:
        """``EXISTS <resource_type>:<key>``."""
        packed = pack([b"EXISTS", full_key(resource_type, key)])
        return bool(await self._execute(packed, "EXISTS", INTEGER_REPLY) == 1)

    async def ttl_ms(self, resource_type: str, key: str) -> int:
        """``PTTL <resource_type>:<key>``: -2 when absent, -1 without expiry, else ms left."""
        packed = pack([b"PTTL", full_key(resource_type, key)])
        left: int = await self._execute(packed, "PTTL", INTEGER_REPLY)
        return left

    async def get_across(self, addresses: Sequence[tuple[str, str]]) -> list[str | None]:
        """One ``MGET`` of keys of any resource types; ``None`` for a miss, in order.

        ``get_or_set`` with a tag reads its entry and the tag's counter so, on every hit.
        """
        if len(addresses) == 2:  # an entry and one tag's counter: packed without a list
            (first_type, first_key), (second_type, second_key) = addresses
            packed = pack_mget2(full_key(first_type, first_key), full_key(second_type, second_key))
            first, second = await self._read(packed, "MGET", _MGET2_REPLY)
            decoded = self._decoded
            return [_text(first, decoded), _text(second, decoded)]
        packed = pack([b"MGET", *[full_key(rt, key) for rt, key in addresses]])
        values = await self._read(packed, "MGET", mget_reply(len(addresses)))
        return [_text(value, self._decoded) for value in values]

    # -- batch operations ------------------------------------------------------------

    async def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """One ``MGET`` per chunk of keys; misses are absent from the result."""
        parts = chunks(keys)
        replies = await self._reads.pipeline(
            [pack(["MGET", *[full_key(resource_type, key) for key in part]]) for part in parts],
            "MGET",
            shapes=[mget_reply(len(part)) for part in parts],
        )
        error = first_error_reply(replies)
        if error is not None:
            raise map_error(error, "MGET") from error
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
        pairs = [(full_key(resource_type, key), value.encode()) for key, value in items.items()]
        if ttl_seconds is None:
            commands = [
                pack(["MSET", *[part for pair in chunk for part in pair]])
                for chunk in chunks(pairs)
            ]
            await self._pipeline(commands, "MSET", shapes=[SET_REPLY] * len(commands))
            return
        if self._scripting:
            scripted = [
                pack_set_many_ex(
                    [full for full, _ in chunk], [value for _, value in chunk], ttl_seconds
                )
                for chunk in chunks(pairs)
            ]
            counted = [INTEGER_REPLY] * len(scripted)
            replies = await self._channel.pipeline(scripted, "EVALSHA", shapes=counted)
            if any(isinstance(reply, NoScriptError) for reply in replies):
                # First use on this server, or its script cache was flushed: load it once.
                await self._pipeline(
                    [pack(["SCRIPT", "LOAD", SET_EX_SCRIPT])],
                    "SCRIPT LOAD",
                    shapes=[SCRIPT_LOAD_REPLY],
                )
                replies = await self._channel.pipeline(scripted, "EVALSHA", shapes=counted)
            error = first_error_reply(replies)
            if error is None:
                return
            if not refuses_scripting(error):
                raise map_error(error, "EVALSHA") from error
            self._scripting = False
        commands = [pack_set_ex(full, value, ttl_seconds) for full, value in pairs]
        await self._pipeline(commands, "SET EX (pipeline)", shapes=[SET_REPLY] * len(commands))

    async def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """One ``UNLINK`` per chunk of keys; absent keys are fine."""
        commands = [
            pack(["UNLINK", *chunk]) for chunk in chunks([full_key(resource_type, k) for k in keys])
        ]
        await self._pipeline(commands, "UNLINK", shapes=[INTEGER_REPLY] * len(commands))

    # -- atomic operations and clear -------------------------------------------------

    async def add(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> bool:
        """``SET ... NX [EX ttl]``: store only if absent, in one atomic command."""
        [reply] = await self._pipeline(
            [pack_set_nx(full_key(resource_type, key), value.encode(), ttl_seconds)],
            "SET NX",
            idempotent=False,
            shapes=[SET_NX_REPLY],
        )
        return reply is not None

    async def incr(self, resource_type: str, key: str, delta: int, ttl_seconds: int | None) -> int:
        """``INCRBY``, one round trip; with a TTL, ``SET key 0 NX EX ttl`` first, in a transaction.

        The ``SET ... NX`` creates the key with its TTL only when it is absent, so
        an existing key keeps its TTL. Both run in one ``MULTI``/``EXEC`` (still
        one round trip), where the server's clock stands still: sent as two
        plain commands, a key that expired between them was recreated by
        ``INCRBY`` without a TTL, and a rate limiter's window never closed again.
        """
        full = full_key(resource_type, key)
        incrby = pack([b"INCRBY", full, b"%d" % delta])
        if ttl_seconds is None:
            replies = await self._channel.pipeline(
                [incrby], "INCRBY", idempotent=False, shapes=[INTEGER_REPLY]
            )
        else:
            create = pack_set_nx(full, b"0", ttl_seconds)
            replies = await self._channel.pipeline(
                [MULTI, create, incrby, EXEC],
                "INCRBY",
                idempotent=False,
                shapes=_TRANSACTION_SHAPES,
            )
            error = first_error_reply(replies)  # MULTI refused, or EXECABORT
            if error is not None:
                raise map_error(error, "MULTI/EXEC") from error
            replies = replies[-1]  # EXEC: the replies of SET NX and INCRBY
        error = first_error_reply(replies)
        if error is not None:
            raise counter_error(error, "INCRBY") from error
        result: int = replies[-1]
        return result

    async def touch(self, resource_type: str, key: str, ttl_seconds: int | None) -> bool:
        """``EXPIRE key ttl``, or without a TTL ``EXISTS`` and ``PERSIST`` in one round trip."""
        full = full_key(resource_type, key)
        if ttl_seconds is not None:
            [reply] = await self._pipeline(
                [pack([b"EXPIRE", full, b"%d" % ttl_seconds])], "EXPIRE", shapes=[INTEGER_REPLY]
            )
            return bool(reply == 1)
        replies = await self._pipeline(
            [pack([b"EXISTS", full]), pack([b"PERSIST", full])],
            "PERSIST",
            shapes=[INTEGER_REPLY, INTEGER_REPLY],
        )
        return bool(replies[0] == 1)

    async def clear(self, resource_type: str, on_progress: Progress | None = None) -> int:
        """Delete every ``<resource_type>:*`` key: ``SCAN`` pages, each page's ``UNLINK`` pipelined.

        The resource type's glob characters are escaped, so only its own keys
        match. The server is never blocked: each page is at most
        :data:`~pevensie_redis.protocol.commands.SCAN_COUNT` keys.
        """
        pattern = scan_pattern(resource_type)
        cursor = b"0"
        deleted = 0
        pending: list[bytes] = []
        while True:
            commands = [pack_scan(cursor, pattern)]
            if pending:
                commands.append(pack([b"UNLINK", *pending]))
            replies = await self._pipeline(
                commands, "SCAN", shapes=[SCAN_REPLY, INTEGER_REPLY][: len(commands)]
            )
            cursor, pending = replies[0]
            if len(replies) > 1:
                deleted += replies[1]
                if on_progress is not None:
                    on_progress(deleted)
            if cursor == b"0":
                break
        if pending:
            [count] = await self._pipeline(
                [pack([b"UNLINK", *pending])], "UNLINK", shapes=[INTEGER_REPLY]
            )
            deleted += count
            if on_progress is not None:
                on_progress(deleted)
        return deleted

    async def acquire_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """``SET :lock:<resource_type>:<key> token NX PX lease_ms``: take the lease if free."""
        command = pack(
            [b"SET", lock_key(resource_type, key), token, b"NX", b"PX", b"%d" % lease_ms]
        )
        [reply] = await self._pipeline(
            [command], "SET NX PX", idempotent=False, shapes=[SET_NX_REPLY]
        )
        return reply is not None

    async def release_lock(self, resource_type: str, key: str, token: str) -> None:
        """Delete the lock only if ``token`` still holds it (a script, so it is atomic).

        The script then publishes the release, which wakes the waiters (see
        :meth:`watch_lock`).
        """
        lock = lock_key(resource_type, key)
        reply = await self._lock_script(
            RELEASE_LOCK_SCRIPT_SHA,
            RELEASE_LOCK_SCRIPT,
            lock,
            token.encode(),
            LOCK_RELEASED_CHANNEL,
        )
        if reply is not _NO_SCRIPTS:
            return
        # No scripts here: compare, then delete. Between the two, the lease may expire
        # and another caller take it; the lease bounds that window's harm.
        [held] = await self._pipeline([pack_get(lock)], "GET", shapes=[GET_REPLY])
        if held == token.encode():
            await self._pipeline([pack_delete(lock)], "UNLINK", shapes=[INTEGER_REPLY])
            # It only wakes the waiters: refused (an ACL), they poll.
            await self._channel.pipeline(
                [pack([b"PUBLISH", LOCK_RELEASED_CHANNEL, lock])],
                "PUBLISH",
                shapes=[INTEGER_REPLY],
            )

    async def watch_lock(self, resource_type: str, key: str) -> LockWatch | None:
        """Watch the key's lease: its release wakes ``wait``; ``None`` while releases can't reach.

        The first call subscribes this driver's one listening connection (within
        the timeout); until it is subscribed, or while it is down, waiters poll.
        """
        releases = self._releases
        if releases is None:
            return None
        return await releases.watch(lock_key(resource_type, key), self.config.timeout_seconds)

    async def extend_lock(self, resource_type: str, key: str, token: str, lease_ms: int) -> bool:
        """Give the lock a lease of ``lease_ms`` from now if ``token`` holds it (a script)."""
        lock = lock_key(resource_type, key)
        reply = await self._lock_script(
            EXTEND_LOCK_SCRIPT_SHA, EXTEND_LOCK_SCRIPT, lock, token.encode(), b"%d" % lease_ms
        )
        if reply is not _NO_SCRIPTS:
            return bool(reply == 1)
        # No scripts here: compare, then expire (the same window as release_lock's).
        [held] = await self._pipeline([pack_get(lock)], "GET", shapes=[GET_REPLY])
        if held != token.encode():
            return False
        [done] = await self._pipeline(
            [pack([b"PEXPIRE", lock, b"%d" % lease_ms])], "PEXPIRE", shapes=[INTEGER_REPLY]
        )
        return bool(done == 1)

    async def _lock_script(self, sha: str, script: bytes, lock: bytes, *args: bytes) -> Any:
        """Run a lock script by its digest (loading it once); :data:`_NO_SCRIPTS` if refused."""
        if not self._scripting:
            return _NO_SCRIPTS
        command = pack([b"EVALSHA", sha, b"1", lock, *args])
        [reply] = await self._channel.pipeline([command], "EVALSHA", shapes=[INTEGER_REPLY])
        if isinstance(reply, NoScriptError):
            load = pack([b"SCRIPT", b"LOAD", script])
            await self._pipeline([load], "SCRIPT LOAD", shapes=[SCRIPT_LOAD_REPLY])
            [reply] = await self._channel.pipeline([command], "EVALSHA", shapes=[INTEGER_REPLY])
        if not isinstance(reply, Exception):
            return reply
        if not refuses_scripting(reply):
            raise map_error(reply, "EVALSHA") from reply
        self._scripting = False
        return _NO_SCRIPTS

    # -- helpers ---------------------------------------------------------------------

    async def _pipeline(
        self,
        commands: list[bytes],
        command: str,
        *,
        idempotent: bool = True,
        fill: bool = False,
        shapes: Sequence[Shape | None] | None = None,
    ) -> list[Any]:
        """Send ``commands`` in one round trip; the first error reply is raised mapped.

        ``fill``: the replies fill the near cache (see the channel's ``pipeline``);
        ``shapes``: the shape of each command's reply (see the channel's ``pipeline``).
        """
        replies = await self._channel.pipeline(
            commands, command, idempotent=idempotent, fill=fill, shapes=shapes
        )
        error = first_error_reply(replies)
        if error is not None:
            raise map_error(error, command) from error
        return replies


class AsyncRedisSentinelDriver(AsyncRedisDriver):
    """The driver for a primary watched by Redis Sentinel (see :mod:`pevensie_redis.sentinel`).

    Built by ``new_cache_driver`` when the configuration names ``sentinels``:
    every new connection goes to the primary the sentinels name, so the same
    cache object follows a failover by itself. With ``read_from_replicas``,
    ``get`` and ``get_many`` go to the replicas the sentinels name, in turn
    (:mod:`~pevensie_redis.replicas`); every write goes to the primary.
    """

    def __init__(self, config: RedisConfig) -> None:
        """Prepare a driver for ``config`` (with ``sentinels`` and ``service_name``)."""
        super().__init__(config)
        if not config.sentinels or config.service_name is None:
            raise ValueError(f"{type(self).__name__} needs a RedisConfig with sentinels")


class AsyncNearRedisDriver(AsyncRedisDriver):
    """The driver with a near cache (``near_cache=True``): reads served from this process.

    Reads (``get``, ``get_many``) are answered from a local store of recent
    reads (values and misses, each with its key's server TTL), filled from the
    server. The server tells this process whenever a key changes, on a
    dedicated connection (:mod:`~pevensie_redis.listener`, broadcast key
    tracking); this process's own writes drop their keys as they complete, so
    a read after a write sees it. When that connection breaks, the store is
    emptied and reads go to the server until tracking is back (see
    :mod:`~pevensie_redis.near`). Single server and Sentinel; on a Cluster,
    the Cluster driver's own near-cache variant listens to every primary.

    With ``read_from_replicas`` too (Sentinel), the two layers split the reads:
    what fills the store is read from the primary, the server the listener
    hears (a replica's value may be older than an invalidation already
    heard, and would then be kept until the next write); the reads the store
    does not keep (while it is off: before tracking is up, after the channel
    broke) go to the replicas.
    """

    def __init__(self, config: RedisConfig) -> None:
        """Prepare a driver for ``config`` (with ``near_cache``)."""
        super().__init__(config)
        if not config.near_cache:
            raise ValueError(f"{type(self).__name__} needs a RedisConfig with near_cache=True")

    async def _layer(self, channel: Channel, locator: Direct | Sentinels) -> None:
        """Start the near cache over ``channel``: its store, and the listener keeping it."""

        def attach(near: NearStore, listener: InvalidationListener) -> None:
            channel.near, channel.listener = near, listener

        try:
            await start_near_cache(locator.primary, self.config, attach)
        except (RedisError, OSError) as exc:
            raise map_error(exc, f"connecting to {self.config.display_url()}") from exc

    def near_cache_stats(self) -> NearStats | None:
        """Return the near cache's counters (hits, misses, invalidations, ...), while connected."""
        near = self._channel.near
        return None if near is None else near.stats()

    # -- reads -------------------------------------------------------------------------

    async def get(self, resource_type: str, key: str) -> str | None:
        """Return the local entry when there is one; else ``GET`` and ``PTTL`` in one round trip."""
        full = full_key(resource_type, key)
        near = self._store()
        held = near.lookup(full)
        if held is not None:
            return None if held is MISS else held
        ticket = near.begin((full,))
        if ticket is None and self._reads is not self._channel:
            return await super().get(resource_type, key)  # not kept: the replicas may answer
        try:
            value, pttl = await self._pipeline(
                [pack_get(full), pack([b"PTTL", full])],
                "GET",
                fill=True,
                shapes=[GET_REPLY, INTEGER_REPLY],
            )
            text = None if value is None else decode_value(value, "GET")
        except BaseException:
            near.abandon(ticket, (full,))
            raise
        near.finish(ticket, ((full, text, pttl),))
        return text

    async def get_many(self, resource_type: str, keys: Sequence[str]) -> dict[str, str]:
        """Return local entries where there are some; one ``MGET`` (with TTLs) for the rest."""
        near = self._store()
        found: dict[str, str] = {}
        wanted: dict[bytes, str] = {}
        for key in keys:
            full = full_key(resource_type, key)
            held = near.lookup(full)
            if held is None:
                wanted[full] = key
            elif held is not MISS:
                found[key] = held
        if not wanted:
            return found
        fulls = list(wanted)
        ticket = near.begin(fulls)
        if ticket is None and self._reads is not self._channel:  # not kept: replicas may answer
            found.update(await super().get_many(resource_type, list(wanted.values())))
            return found
        try:
            parts = chunks(fulls)
            commands = [pack([b"MGET", *part]) for part in parts]
            commands += [pack([b"PTTL", full]) for full in fulls]
            shapes = [mget_reply(len(part)) for part in parts] + [INTEGER_REPLY] * len(fulls)
            replies = await self._pipeline(commands, "MGET", fill=True, shapes=shapes)
            values = [value for values in replies[: len(parts)] for value in values]
            texts = [None if value is None else decode_value(value, "MGET") for value in values]
        except BaseException:
            near.abandon(ticket, fulls)
            raise
        near.finish(ticket, zip(fulls, texts, replies[len(parts) :], strict=True))
        for full, text in zip(fulls, texts, strict=True):
            if text is not None:
                found[wanted[full]] = text
        return found

    async def get_across(self, addresses: Sequence[tuple[str, str]]) -> list[str | None]:
        """Each address as :meth:`get` reads it: from this process where it can."""
        return [await self.get(resource_type, key) for resource_type, key in addresses]

    # -- writes: each drops its keys from the local store as it completes ------------------

    async def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        """``SET``, then drop the key locally (read-your-writes)."""
        try:
            await super().set(resource_type, key, value, ttl_seconds)
        finally:
            self._forget(resource_type, (key,))

    async def delete(self, resource_type: str, key: str) -> bool:
        """``UNLINK``, then drop the key locally."""
        try:
            return await super().delete(resource_type, key)
        finally:
            self._forget(resource_type, (key,))

    async def set_many(
        self, resource_type: str, items: Mapping[str, str], ttl_seconds: int | None
    ) -> None:
        """Write the batch, then drop its keys locally."""
        try:
            await super().set_many(resource_type, items, ttl_seconds)
        finally:
            self._forget(resource_type, items)

    async def delete_many(self, resource_type: str, keys: Iterable[str]) -> None:
        """Delete the batch, then drop its keys locally."""
        keys = list(keys)
        try:
            await super().delete_many(resource_type, keys)
        finally:
            self._forget(resource_type, keys)

    async def add(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> bool:
        """``SET NX``, then drop the key locally."""
        try:
            return await super().add(resource_type, key, value, ttl_seconds)
        finally:
            self._forget(resource_type, (key,))

    async def incr(self, resource_type: str, key: str, delta: int, ttl_seconds: int | None) -> int:
        """``INCRBY``, then drop the key locally."""
        try:
            return await super().incr(resource_type, key, delta, ttl_seconds)
        finally:
            self._forget(resource_type, (key,))

    async def touch(self, resource_type: str, key: str, ttl_seconds: int | None) -> bool:
        """``EXPIRE``/``PERSIST``, then drop the key locally (its TTL changed)."""
        try:
            return await super().touch(resource_type, key, ttl_seconds)
        finally:
            self._forget(resource_type, (key,))

    async def clear(self, resource_type: str, on_progress: Progress | None = None) -> int:
        """Clear on the server, then drop the resource type's keys locally."""
        try:
            return await super().clear(resource_type, on_progress)
        finally:
            near = self._channel.near
            if near is not None:
                near.forget_prefix(prefix(resource_type).encode())

    def _store(self) -> NearStore:
        channel = self._channel
        near: NearStore | None = channel.near
        if near is None:
            raise RedisConnectionError("the Redis driver is not connected")
        listener = channel.listener
        if listener is not None:
            listener.ensure_running()  # after a fork: the child listens on its own
        return near

    def _forget(self, resource_type: str, keys: Iterable[str]) -> None:
        near = self._channel.near
        if near is not None:
            near.forget([full_key(resource_type, key) for key in keys])


_DECODED_MAX = 1024
"""Envelopes a driver keeps decoded for ``get_across``, at most (emptied when full)."""
_DECODED_BYTES_MAX = 512
"""Longer envelopes are decoded on every read, not kept."""


def _text(value: bytes | None, decoded: dict[bytes, str]) -> str | None:
    """Decode one value an ``MGET`` read (``None``: a miss); one that is not text raises.

    An envelope read lately is found in ``decoded`` (the driver's own),
    already decoded: the same text, without decoding it again.
    """
    if value is None:
        return None
    if value[:1] == b"\xff":  # an envelope: found out without an exception
        short = len(value) <= _DECODED_BYTES_MAX
        if short:
            text = decoded.get(value)
            if text is not None:
                return text
        try:
            text = decode_envelope(value)
        except NotText:
            return decode_value(value, "MGET")  # not text: raises its error
        if short:
            if len(decoded) >= _DECODED_MAX:
                decoded.clear()
            decoded[value] = text
        return text
    try:
        return value.decode()
    except UnicodeDecodeError:
        return decode_value(value, "MGET")  # not text: raises its error


async def _close_parts(
    releases: LockReleases | None,
    reads: Channel | AsyncReplicaReads | None,
    channel: Channel | None,
    locator: Direct | Sentinels | None,
) -> None:
    """Close a driver's parts, those it has (``None``: not opened), in order.

    Each is closed even when closing one before it was interrupted (a signal
    handler's exception, a cancellation): once the driver has forgotten them,
    or failed to connect, nothing else could close them.
    """
    try:
        if releases is not None:
            await releases.stop()
    finally:
        try:
            if reads is not None and reads is not channel:
                await reads.close()
        finally:
            try:
                if channel is not None:
                    await channel.close()
            finally:
                if locator is not None:
                    await locator.close()
