"""A long run: a million operations leak neither memory nor connections."""

from __future__ import annotations

import gc
import os

import psutil
import pytest
from reliability_support import connect_cache, named_clients, unique_client_name

from pevensie_redis.testing import RedisServer

TOTAL_OPERATIONS = int(os.environ.get("PEVENSIE_SOAK_OPERATIONS", "1000000"))
"""Facade calls in the run (each ``get``/``set``/``delete``/batch call counts as one)."""
WARM_UP = 100_000
CHECKPOINT = 100_000
RSS_GROWTH_LIMIT = 5 * 1024 * 1024


def resident_bytes() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


@pytest.mark.slow
def test_a_million_operations_keep_memory_and_connections_flat(
    private_server: RedisServer,
) -> None:
    name = unique_client_name("soak")
    c = connect_cache(private_server, pool_size=4, timeout=5000, client_name=name)
    keys = [f"k{n}" for n in range(1000)]
    values = [f"value {n} " + "x" * 90 for n in range(1000)]
    batch = dict(zip(keys[:10], values[:10], strict=True))
    cache_set, cache_get, cache_delete = c.set, c.get, c.delete

    def run(start: int, stop: int) -> None:
        for i in range(start, stop):
            slot = i % 1000
            step = i % 20
            if step < 9:
                cache_set("soak", keys[slot], values[slot], 300 if step & 1 else None)
            elif step < 18:
                cache_get("soak", keys[slot], None)
            elif step == 18:
                cache_delete("soak", keys[slot])
            elif slot & 1:
                c.set_many("soak", batch, ttl_seconds=300)
            else:
                c.get_many("soak", keys[:10])

    checkpoints: list[tuple[int, int, int, int]] = []  # (done, rss, connections, received)
    with private_server.client() as raw:

        def checkpoint(done: int) -> None:
            received = int(raw.info("stats")["total_connections_received"])
            checkpoints.append((done, resident_bytes(), len(named_clients(raw, name)), received))

        try:
            run(0, WARM_UP)
            checkpoint(WARM_UP)
            done = WARM_UP
            while done < TOTAL_OPERATIONS:
                step = min(CHECKPOINT, TOTAL_OPERATIONS - done)
                run(done, done + step)
                done += step
                checkpoint(done)
        finally:
            c.disconnect()

    _, base_rss, base_connections, base_received = checkpoints[0]
    growth = max(rss for _, rss, _, _ in checkpoints) - base_rss
    report = [
        f"{done} ops: rss {rss / 2**20:.1f} MiB, {conns} connections, {got} accepted"
        for done, rss, conns, got in checkpoints
    ]
    print("\n".join(report))
    print(f"RSS growth after warm-up: {growth / 2**20:.2f} MiB")
    assert checkpoints[-1][0] == TOTAL_OPERATIONS
    assert growth < RSS_GROWTH_LIMIT, report
    # The connection count stays flat, and no connection was ever reopened.
    assert {conns for _, _, conns, _ in checkpoints} == {base_connections}, report
    assert base_connections <= 4
    # Each checkpoint's INFO call reuses the raw client's one connection.
    assert {got for _, _, _, got in checkpoints} == {base_received}, report
