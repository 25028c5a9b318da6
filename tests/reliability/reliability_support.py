"""Helpers of the reliability suite: caches on private servers, bounds, CLIENT LIST."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import redis

from pevensie_cache import AsyncPevensieCache, PevensieCache, cache
from pevensie_redis.testing import RedisServer

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


class Stalls:
    """Measure, over a ``with`` block, how long this process could not run.

    A thread wakes every 5 ms and adds up the gaps longer than 20 ms (less the
    5 ms it asked for): time the machine did not schedule the process. A driver
    that hangs leaves that thread running on time, so a "never hangs" bound may
    add :attr:`seconds` without excusing a hang; one CI run saw a sync call
    take 2.07 s of a 1.5 s bound while the machine ran four test streams.
    """

    PERIOD = 0.005
    COUNTED = 0.02

    def __init__(self) -> None:
        self.seconds = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="stall-sampler", daemon=True)

    def _sample(self) -> None:
        last = time.monotonic()
        while not self._done.wait(self.PERIOD):
            now = time.monotonic()
            if now - last > self.COUNTED:
                self.seconds += now - last - self.PERIOD
            last = now

    def __enter__(self) -> Stalls:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()


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
