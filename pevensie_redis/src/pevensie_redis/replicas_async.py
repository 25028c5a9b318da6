"""Reads from replicas (``read_from_replicas``): a layer over any locator that names them.

This module is the source of the sync face too: ``replicas.py``
(:class:`~pevensie_redis.replicas.ReplicaReads`) is generated from it by
``.ci/unasync.py``. Edit this file, then run ``nox -s generate``.

The driver sends its reads (``get``, ``get_many``) through an
:class:`AsyncReplicaReads` instead of its primary's channel; every other
command (every write) goes to the primary as before. Bound at ``connect()``,
so a driver without replica reads pays nothing for them. The replicas come
from the locator (:class:`~pevensie_redis.sentinel.Sentinels` today: the
Cluster driver chooses a slot's replica its own way, with the same
:class:`~pevensie_redis.replica_choice.ReplicaChoice`).

- the locator is asked which replicas there are at ``connect()`` and every
  :data:`~pevensie_redis.replica_choice.REFRESH_INTERVAL` seconds after, in the
  background, started by the read that finds the list due (that read and the
  others keep using the old list: stalled sentinels never hold a read); a
  replica the sentinels flag down or whose link to the primary is not ``ok``
  is left out (:func:`~pevensie_redis.sentinel.replicas_of`);
- each read goes to the next replica in turn, over that replica's own channel
  (no retries there), now and then with a ``ROLE`` check in the same round
  trip (:class:`~pevensie_redis.replica_choice.ReplicaChoice`);
- a read that fails on a replica (connection error, timeout, any error
  reply, a link to the primary found down) goes to the primary at once, with
  the primary's own retries; that replica is left out for a while;
- no replica to read from: the primary.

Replication is asynchronous: a read from a replica may return an older value
than the primary holds, even one this process has just overwritten.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from redis.exceptions import NoPermissionError, RedisError

from pevensie_cache import forks
from pevensie_redis import runtime_async
from pevensie_redis.channel_async import Channel
from pevensie_redis.config import RedisConfig
from pevensie_redis.endpoint import Endpoint, endpoint, label
from pevensie_redis.errors import (
    RedisConnectionError,
    RedisDriverError,
    RedisTimeoutError,
    first_error_reply,
    map_error,
)
from pevensie_redis.protocol.commands import ROLE, ROLE_REPLY, Shape, replica_in_sync
from pevensie_redis.replica_choice import ReplicaChoice

__all__ = ["AsyncReplicaReads", "ReplicaSource"]


class ReplicaSource(Protocol):
    """A locator that can name the replicas to read from."""

    def replicas(self) -> Awaitable[list[tuple[str, int]]]:
        """Return the replicas' ``(host, port)``; raise redis-py's errors when it cannot."""


class AsyncReplicaReads:
    """Reads spread over the replicas a locator names; the primary when none can answer.

    The same ``execute``/``pipeline`` as the primary's channel, for reads only.
    """

    def __init__(self, primary: Channel, locator: ReplicaSource, config: RedisConfig) -> None:
        """Read through the replicas ``locator`` names, falling back to ``primary``."""
        self._primary = primary
        self._config = config
        self._discover = locator.replicas
        self._channels: dict[str, Channel] = {}
        self._names: list[str] = []
        self._choice = ReplicaChoice()
        self._lock = threading.Lock()
        self._closed = False
        forks.renew_after_fork(self)

    @property
    def replicas(self) -> list[str]:
        """The replicas (``host:port``) reads go to in turn, as the sentinels last listed them."""
        return list(self._names)

    @property
    def choice(self) -> ReplicaChoice:
        """How the replica of each read is chosen (for tests and inspection)."""
        return self._choice

    async def start(self) -> None:
        """Ask the sentinels for the replicas, and check each one accepts this client's reads.

        A replica that refuses the credentials, or ``ROLE``, raises the
        driver's error (its ACL lacks what replica reads need), and so do
        sentinels that each refuse ``SENTINEL REPLICAS``; one that does not
        answer is left for later.
        """
        self._choice.refresh_due()  # asked now: the next time is an interval away
        try:
            addresses = await self._discover()
        except NoPermissionError as exc:  # not a passing fault: reads would never reach a replica
            raise map_error(exc, "SENTINEL REPLICAS") from exc
        except (RedisError, OSError):
            addresses = []
        self._install(addresses)
        for name in self._names:
            try:
                [role] = await self._channels[name].pipeline([ROLE], "ROLE", shapes=[ROLE_REPLY])
            except (RedisConnectionError, RedisTimeoutError):
                continue
            if isinstance(role, Exception):
                raise map_error(role, f"ROLE on the replica {name}") from role

    async def refresh(self) -> None:
        """Ask the sentinels which replicas to read from; keep the old list if none answers.

        Once :meth:`close` has run, a refresh still under way changes nothing.
        """
        try:
            addresses = await self._discover()
        except (RedisError, OSError):
            return
        for channel in self._install(addresses):
            await channel.close()  # a read still on it fails over to the primary

    def _install(self, addresses: Sequence[tuple[str, int]]) -> list[Channel]:
        """Read from ``addresses`` from now on; return the channels no longer used (to close)."""
        with self._lock:
            if self._closed:
                return []
            names: list[str] = []
            for host, port in addresses:
                name = label(host, port)
                if name not in self._channels:
                    self._channels[name] = _replica_channel(self._config, host, port)
                names.append(name)
            self._names = names
            return [self._channels.pop(name) for name in list(self._channels) if name not in names]

    async def execute(self, packed: bytes, command: str, shape: Shape | None = None) -> Any:
        """Send one read; an error reply (from the primary) is raised mapped."""
        replies = await self._from_replica((packed,), command, (shape,))
        if replies is None:
            return await self._primary.execute(packed, command, shape)
        return replies[0]

    async def pipeline(
        self,
        commands: Sequence[bytes],
        command: str,
        *,
        idempotent: bool = True,
        fill: bool = False,
        shapes: Sequence[Shape | None] | None = None,
    ) -> list[Any]:
        """Send reads in one round trip; error replies (from the primary) come back in place."""
        replies = await self._from_replica(commands, command, shapes)
        if replies is None:
            return await self._primary.pipeline(
                commands, command, idempotent=idempotent, fill=fill, shapes=shapes
            )
        return replies

    async def close(self) -> None:
        """Close the replicas' channels (the primary's is the driver's to close)."""
        with self._lock:
            self._closed = True
            channels, self._channels = list(self._channels.values()), {}
            self._names = []
        for channel in channels:
            await channel.close()

    async def _from_replica(
        self, commands: Sequence[bytes], command: str, shapes: Sequence[Shape | None] | None
    ) -> list[Any] | None:
        """Return the replies of a replica in sync, or ``None``: ask the primary.

        A replica's reply without its command's shape is a protocol error (the
        replica's connection is closed), and the primary is asked.
        """
        choice = self._choice
        if choice.refresh_due():  # asked in the background: this read goes on with the list
            runtime_async.start(self.refresh)
        name = choice.pick(self._names)
        if name is None:
            return None
        channel = self._channels.get(name)
        if channel is None:
            return None
        check = choice.check_due(name)
        try:
            if check:
                replies = await channel.pipeline(
                    [ROLE, *commands],
                    command,
                    shapes=None if shapes is None else [ROLE_REPLY, *shapes],
                )
            else:
                replies = await channel.pipeline(commands, command, shapes=shapes)
        except RedisDriverError:
            choice.avoid(name)
            return None
        if check:
            role = replies.pop(0)
            if not replica_in_sync(role):
                choice.avoid(name)
                return None
        if first_error_reply(replies) is not None:
            choice.avoid(name)
            return None
        return replies

    def _forked(self) -> None:
        """In a forked child: a new lock (another thread may have held it at the fork)."""
        self._lock = threading.Lock()


def _replica_channel(config: RedisConfig, host: str, port: int) -> Channel:
    """Return a channel to the replica at ``host:port`` (it connects on first use).

    The data nodes' credentials and TLS settings; no retries: a read that
    fails on a replica goes to the primary instead.
    """
    fixed = endpoint(config, host, port)

    async def resolve() -> Endpoint:
        return fixed

    return Channel(
        resolve,
        config.pool_size,
        0,
        timeout=config.timeout_seconds,
        large_read_rate=config.large_read_rate,
    )
