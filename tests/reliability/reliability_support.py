"""Helpers of the reliability suite: caches on private servers, bounds, CLIENT LIST."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import redis

from pevensie_cache import AsyncPevensieCache, PevensieCache, cache
from pevensie_redis.testing import RedisServer
from pevensie_test_support.stalls import Stalls as Stalls  # re-exported: the suite's bounds

ServerFactory = Callable[..., RedisServer]

FAST_TIMEOUT_MS = 500
"""The driver timeout fault tests use, so a failing call costs well under a second."""

MARGIN_S = 1.0
"""Slack added to every "never hangs" bound: scheduling, reconnects, process start-up.

One second since a call at load 10 took 1.37 s of a 0.95 s bound with 0.25 s. Load
beyond that is measured, not guessed: the sync server-fault bounds leave out the
process's :class:`Stalls`, and the 64-task async bound adds the event loop's stalls.
The other bounds built on it (the other async fault tests, the pool and storm tests)
do not measure stalls yet.
"""

_names = itertools.count(1)


def unique_client_name(prefix: str = "rel") -> str:
    """Return a ``client_name`` no other cache of this run uses, for CLIENT LIST filtering."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def backoff_total(retries: int) -> float:
    """Return the time the driver's backoff sleeps over ``retries`` retries.

    redis-py's ``ExponentialBackoff`` defaults: the n-th retry sleeps
    ``min(0.512, 0.008 * 2**n)`` seconds.
    """
    return float(sum(min(0.512, 0.008 * 2**n) for n in range(1, retries + 1)))


def hang_bound(timeout_ms: int, retries: int) -> float:
    """Return the "never hangs" bound: every attempt times out, plus backoff and a margin."""
    return timeout_ms / 1000 * (retries + 1) + backoff_total(retries) + MARGIN_S


def connect_cache(server: RedisServer, **fields: Any) -> PevensieCache:
    """Return a connected redis cache on ``server`` built with ``RedisConfig`` ``fields``."""
    fields.setdefault("timeout", FAST_TIMEOUT_MS)
    return cache.new(driver="redis", host=server.host, port=server.port, **fields).connect()


async def connect_async_cache(server: RedisServer, **fields: Any) -> AsyncPevensieCache:
    """Return a connected async redis cache on ``server`` built with ``RedisConfig`` ``fields``."""
    fields.setdefault("timeout", FAST_TIMEOUT_MS)
    built = cache.new_async(driver="redis", host=server.host, port=server.port, **fields)
    return await built.connect()


def named_clients(raw: redis.Redis, name: str) -> list[dict[str, Any]]:
    """Return the CLIENT LIST entries whose name is ``name``."""
    return [entry for entry in raw.client_list() if entry.get("name") == name]


def chain_text(error: BaseException) -> str:
    """Return str, repr and args of ``error`` and every exception in its cause/context chain."""
    texts: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts.extend([type(current).__name__, str(current), repr(current), repr(current.args)])
        pending.extend([current.__cause__, current.__context__])
    return "\n".join(texts)


def refused_subscriptions(server: RedisServer) -> int:
    """How many times the server refused ``app`` a channel (the ACL LOG counts repeats)."""
    with server.client() as raw:
        entries = [dict(entry) for entry in raw.execute_command("ACL", "LOG")]
    return sum(
        int(entry["count"])
        for entry in entries
        if entry["reason"] == "channel" and entry["username"] == "app"
    )
