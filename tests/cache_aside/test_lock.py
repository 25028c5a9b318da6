"""get_or_set(lock=True) across processes: one loader call, a killed holder, a restarted server.

The lease lock is ``SET :lock:<type>:<key> <token> NX PX <lease>`` on the
server; every worker is a separate OS process with its own cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aside_support import Target, Workers, read_calls, wait_for_calls

from pevensie_cache import cache
from pevensie_redis import RedisConnectionError, RedisTimeoutError
from pevensie_redis.testing import RedisServer
from pevensie_test_support.lock_watches import watch_entered

PROCESSES = 4
ROUNDS = 3


@pytest.mark.slow
def test_4_processes_with_lock_run_the_loader_once(target: Target, calls_file: Path) -> None:
    with Workers(target.url, PROCESSES, calls_file) as workers:
        for round_ in range(ROUNDS):
            key = f"home-{round_}"
            replies = workers.call(
                {
                    "op": "get_or_set",
                    "args": ["page", key],
                    "kwargs": {"ttl_seconds": 60, "lock": True, "lock_lease": 10},
                    "sleep": 0.5,
                    "at": time.time() + 0.2,
                }
            )
            assert [reply["error"] for reply in replies] == [None] * PROCESSES
            values = {reply["value"] for reply in replies}
            assert len(values) == 1
            loads = read_calls(calls_file, "loader")
            assert len(loads) == round_ + 1, f"round {round_}: {loads}"
            assert values == {f"loaded by {loads[-1]['pid']}"}
            # Every call was made while the load ran: the others waited for its value.
            assert all(reply["started"] < loads[-1]["at"] + 0.5 for reply in replies)


@pytest.mark.slow
def test_when_the_lock_holder_is_killed_mid_load_another_process_completes_within_the_lease(
    target: Target, calls_file: Path
) -> None:
    lease, load_time = 2.0, 1.0
    with Workers(target.url, PROCESSES, calls_file) as workers:
        workers.send(
            {
                "op": "get_or_set",
                "args": ["page", "home"],
                "kwargs": {"ttl_seconds": 60, "lock": True, "lock_lease": lease, "lock_wait": 30},
                "sleep": load_time,
                "at": time.time() + 0.2,
            }
        )
        [first] = wait_for_calls(calls_file, 1)
        holder = workers.pids.index(first["pid"])
        workers.kill(holder)  # SIGKILL mid-load: its lock stays until the lease expires
        killed_at = time.time()
        survivors = [index for index in range(PROCESSES) if index != holder]
        replies = workers.replies(survivors, timeout=30)
    assert killed_at - first["at"] < lease  # killed while it held the lease
    assert [reply["error"] for reply in replies] == [None] * len(survivors)
    loads = read_calls(calls_file, "loader")
    assert len(loads) == 2  # the killed holder's, and one taker's
    taker = loads[1]
    assert taker["pid"] != first["pid"]
    assert {reply["value"] for reply in replies} == {f"loaded by {taker['pid']}"}
    # Nobody took the lease before it expired; one waiter took it soon after.
    takeover = taker["at"] - first["at"]
    assert lease - 0.1 <= takeover <= lease + 1.0
    done = max(reply["ended"] for reply in replies) - first["at"]
    assert done <= lease + load_time + 1.5
    print(
        f"\n{target.name}: holder killed {killed_at - first['at']:.3f} s into its load; "
        f"lease taken over {takeover:.3f} s after the holder took it (lease {lease} s); "
        f"every survivor done {done:.3f} s after"
    )


def _hold_lock(c: Any, started: threading.Event, load_time: float) -> threading.Thread:
    """Start a thread that loads ``page:home`` under the lock for ``load_time`` seconds."""

    def slow() -> str:
        started.set()
        time.sleep(load_time)
        return "from the holder"

    def run() -> None:
        # The holder may fail with the server; it is not what these tests look at.
        with contextlib.suppress(Exception):
            c.get_or_set("page", "home", slow, 60, lock=True, lock_lease=10)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _restart(server: RedisServer, outage: float) -> float:
    """Kill the server (SIGKILL: the lock dies with it), wait ``outage`` s, start it again.

    Return the ``perf_counter`` at which it began to start again: it answered nothing before.
    """
    server.kill()
    time.sleep(outage)
    restarting = time.perf_counter()
    server.restart()
    return restarting


def _check_outcome(
    result: Any, took: float, outage: float, lock_wait: float, before_restart: float
) -> None:
    assert took < lock_wait + 1.0  # never a hang beyond lock_wait
    if outage > 0:
        # A poll met the dead server: a clear error, before the server was even back.
        assert isinstance(result, RedisConnectionError), result
        assert took < before_restart
    elif isinstance(result, Exception):
        assert isinstance(result, (RedisConnectionError, RedisTimeoutError)), result
    else:
        # The server came back between two polls: the lock died with it, so the waiter
        # took it and loaded (or read what the holder stored meanwhile).
        assert result in {"from the waiter", "from the holder"}


def _describe(result: Any) -> str:
    return type(result).__name__ if isinstance(result, Exception) else repr(result)


@pytest.mark.parametrize("outage", [0.0, 0.5], ids=["restart", "down-0.5s"])
def test_a_server_restart_during_a_lock_wait_gives_a_clear_error_or_the_value_never_a_hang(
    private_server: RedisServer, outage: float
) -> None:
    lock_wait = 4.0
    url = f"{private_server.url}?timeout=500"
    with cache.from_url(url) as holder, cache.from_url(url) as waiter:
        entered = watch_entered(waiter.driver)  # set once the waiter waits on its lock watch
        started = threading.Event()
        loading = _hold_lock(holder, started, load_time=1.5)
        try:
            assert started.wait(30)
            outcome: list[Any] = []

            def wait_for_value() -> None:
                try:
                    outcome.append(
                        waiter.get_or_set(
                            "page",
                            "home",
                            lambda: "from the waiter",
                            lock=True,
                            lock_wait=lock_wait,
                        )
                    )
                except Exception as exc:
                    outcome.append(exc)
                outcome.append(time.perf_counter())

            waiting = threading.Thread(target=wait_for_value)
            began = time.perf_counter()
            waiting.start()
            assert entered.wait(30)  # it tried once and waits: the server dies under it
            restarting = _restart(private_server, outage) - began
            waiting.join(lock_wait + 10)
            assert not waiting.is_alive()
        finally:
            loading.join()
        result, ended = outcome
        took = ended - began
        _check_outcome(result, took, outage, lock_wait, restarting)
        assert waiter.get_or_set("page", "after", lambda: "fine", lock=True) == "fine"
    print(f"\noutage {outage} s: the waiter got {_describe(result)} after {took:.3f} s")


@pytest.mark.parametrize("outage", [0.0, 0.5], ids=["restart", "down-0.5s"])
async def test_a_server_restart_during_an_async_lock_wait_gives_a_clear_error_or_the_value(
    private_server: RedisServer, outage: float
) -> None:
    lock_wait = 4.0
    url = f"{private_server.url}?timeout=500"
    async with cache.from_url_async(url) as holder, cache.from_url_async(url) as waiter:
        entered = watch_entered(waiter.driver)  # set once the waiter waits on its lock watch
        started = asyncio.Event()

        async def slow() -> str:
            started.set()
            await asyncio.sleep(1.5)
            return "from the holder"

        loading = asyncio.create_task(
            holder.get_or_set("page", "home", slow, 60, lock=True, lock_lease=10)
        )
        await asyncio.wait_for(started.wait(), 30)
        began = time.perf_counter()
        ended: list[float] = []
        waiting = asyncio.create_task(
            waiter.get_or_set(
                "page", "home", lambda: "from the waiter", lock=True, lock_wait=lock_wait
            )
        )
        waiting.add_done_callback(lambda _: ended.append(time.perf_counter()))
        assert await asyncio.to_thread(entered.wait, 30)  # it tried once and waits
        restarting = await asyncio.to_thread(_restart, private_server, outage) - began
        result: Any
        try:
            result = await asyncio.wait_for(waiting, lock_wait + 10)
        except Exception as exc:
            result = exc
        took = ended[0] - began
        await asyncio.gather(loading, return_exceptions=True)
        _check_outcome(result, took, outage, lock_wait, restarting)
        assert await waiter.get_or_set("page", "after", lambda: "fine", lock=True) == "fine"
    print(f"\nasync, outage {outage} s: the waiter got {_describe(result)} after {took:.3f} s")
