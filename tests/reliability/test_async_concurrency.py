"""64 tasks on one async cache: every read sees its own write, within ``pool_size`` connections.

The twin of ``test_concurrency.py`` for ``AsyncPevensieCache``: the tasks of one
event loop share a few multiplexed connections; no reply crosses tasks, and
CLIENT LIST, sampled from another thread throughout, never shows more than
``pool_size`` connections (nor does INFO show reconnect churn).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from reliability_support import connect_async_cache, named_clients, unique_client_name

from pevensie_cache import AsyncPevensieCache
from pevensie_redis.testing import RedisServer

pytestmark = pytest.mark.asyncio

TASKS = 64
OPERATIONS_PER_TASK = 2_000
POOL_SIZE = 4


async def task_loop(c: AsyncPevensieCache, task: int, errors: list[str]) -> int:
    """Run the mixed operations of one task on its own keys; return how many it ran."""
    done = 0
    keys = [f"t{task}-k{n}" for n in range(8)]
    i = 0
    while done < OPERATIONS_PER_TASK:
        key = keys[i % len(keys)]
        value = f"task {task} write {i} ✓"
        step = i % 5
        if step in (0, 1):
            await c.set("mixed", key, value, ttl_seconds=300 if step else None)
            got = await c.get("mixed", key)
            if got != value:
                errors.append(f"task {task}: wrote {value!r} to {key!r} but read {got!r}")
        elif step == 2:
            batch = {k: f"{value} [{k}]" for k in keys[:4]}
            await c.set_many("mixed", batch, ttl_seconds=300 if i % 2 else None)
            found = await c.get_many("mixed", list(batch))
            if found != batch:
                errors.append(f"task {task}: set_many {batch!r} but get_many {found!r}")
        elif step == 3:
            await c.delete("mixed", key)
            stale = await c.get("mixed", key, default=None)
            if stale is not None:
                errors.append(f"task {task}: deleted {key!r} but read {stale!r}")
        else:
            await c.delete_many("mixed", keys[4:])
            found = await c.get_many("mixed", keys[4:])
            if found:
                errors.append(f"task {task}: delete_many left {found!r}")
        done += 2
        if len(errors) > 20:
            break
        i += 1
    return done


async def test_64_tasks_on_a_pool_of_four_read_their_own_writes_within_pool_size(
    private_server: RedisServer,
) -> None:
    name = unique_client_name("tasks")
    c = await connect_async_cache(
        private_server, pool_size=POOL_SIZE, timeout=10_000, client_name=name
    )
    errors: list[str] = []
    samples: list[int] = []
    finished = threading.Event()

    def sample() -> None:
        with private_server.client() as raw:
            while not finished.is_set():
                samples.append(len(named_clients(raw, name)))
                time.sleep(0.01)

    with private_server.client() as raw:
        received_before = int(raw.info("stats")["total_connections_received"])
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        counts = await asyncio.wait_for(
            asyncio.gather(*(task_loop(c, n, errors) for n in range(TASKS))), 300
        )
    finally:
        finished.set()
        await asyncio.to_thread(sampler.join, 30)
    try:
        assert errors == []
        assert sum(counts) >= TASKS * OPERATIONS_PER_TASK
        assert len(samples) > 10  # CLIENT LIST really was sampled during the run
        assert 1 <= max(samples) <= POOL_SIZE
        with private_server.client() as raw:
            assert 1 <= len(named_clients(raw, name)) <= POOL_SIZE
            # The sampler and this client: two connections; the cache at most POOL_SIZE.
            received = int(raw.info("stats")["total_connections_received"]) - received_before
            assert received <= POOL_SIZE + 2
            # No stray key: only the tasks' own key names were written.
            stray = [k for k in raw.scan_iter("*") if not k.startswith("mixed:t")]
            assert stray == []
        print(f"{sum(counts)} operations; CLIENT LIST max {max(samples)}; {received} connects")
    finally:
        await c.disconnect()
