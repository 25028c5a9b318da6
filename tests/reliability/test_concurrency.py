"""Many threads on a small pool: every read sees its own write, no replies cross threads."""

from __future__ import annotations

import threading
import time

import pytest
from reliability_support import connect_cache, named_clients, unique_client_name

from pevensie_cache import CacheMiss, PevensieCache
from pevensie_redis.testing import RedisServer

THREADS = 16
OPERATIONS_PER_THREAD = 5_000
POOL_SIZE = 4


def worker_loop(c: PevensieCache, worker: int, errors: list[str]) -> int:
    """Run the mixed operations of one thread; return how many it ran."""
    done = 0
    keys = [f"t{worker}-k{n}" for n in range(8)]
    i = 0
    while done < OPERATIONS_PER_THREAD:
        key = keys[i % len(keys)]
        value = f"thread {worker} write {i} ✓"
        step = i % 5
        if step == 0:
            c.set("mixed", key, value)
            got = c.get("mixed", key)
            done += 2
        elif step == 1:
            c.set("mixed", key, value, ttl_seconds=300)
            got = c.get("mixed", key)
            done += 2
        elif step == 2:
            batch = {k: f"{value} [{k}]" for k in keys[:4]}
            c.set_many("mixed", batch, ttl_seconds=300 if i % 2 else None)
            found = c.get_many("mixed", list(batch))
            done += 2
            if found != batch:
                errors.append(f"worker {worker}: set_many {batch!r} but get_many {found!r}")
            got = value
        elif step == 3:
            c.delete("mixed", key)
            try:
                stale = c.get("mixed", key)
            except CacheMiss:
                stale = None
            done += 2
            if stale is not None:
                errors.append(f"worker {worker}: deleted {key!r} but read {stale!r}")
            got = value
        else:
            c.delete_many("mixed", keys[4:])
            found = c.get_many("mixed", keys[4:])
            done += 2
            if found:
                errors.append(f"worker {worker}: delete_many left {found!r}")
            got = value
        if got != value:
            errors.append(f"worker {worker}: wrote {value!r} to {key!r} but read {got!r}")
        if len(errors) > 20:
            break
        i += 1
    return done


@pytest.mark.slow
def test_sixteen_threads_on_a_pool_of_four_read_their_own_writes_within_pool_size(
    private_server: RedisServer,
) -> None:
    name = unique_client_name("threads")
    c = connect_cache(private_server, pool_size=POOL_SIZE, timeout=10_000, client_name=name)
    errors: list[str] = []
    counts: list[int] = []
    failures: list[BaseException] = []
    samples: list[int] = []
    finished = threading.Event()

    def run(worker: int) -> None:
        try:
            counts.append(worker_loop(c, worker, errors))
        except BaseException as exc:
            failures.append(exc)

    def sample() -> None:
        with private_server.client() as raw:
            while not finished.is_set():
                samples.append(len(named_clients(raw, name)))
                time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    finally:
        finished.set()
        sampler.join(timeout=30)
    try:
        assert not any(thread.is_alive() for thread in threads)
        assert failures == []
        assert errors == []
        assert sum(counts) >= THREADS * OPERATIONS_PER_THREAD
        assert len(samples) > 10  # CLIENT LIST really was sampled during the run
        assert max(samples) <= POOL_SIZE
        with private_server.client() as raw:
            assert len(named_clients(raw, name)) <= POOL_SIZE
            # No stray key: only the threads' own key names were written.
            stray = [k for k in raw.scan_iter("*") if not k.startswith("mixed:t")]
            assert stray == []
    finally:
        c.disconnect()
