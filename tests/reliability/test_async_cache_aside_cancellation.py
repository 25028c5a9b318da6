"""Tasks cancelled in ``get_or_set`` and ``c.lock``: no lease stranded, no cancellation lost.

Tasks of one cache that ask for the same key share one loader call (a single
flight): the first runs it, the others wait for its outcome. When the runner
and a waiter are cancelled together (a ``TaskGroup`` or ``gather`` under
``asyncio.timeout``), the waiter must end cancelled at once, not take the
runner's place and call the loader again while its own caller waits.

A task cancelled around a lease lock strands no lease for the other callers.

``get_or_set(..., lock=True)`` and ``c.lock(...)`` take a lease on the server
(``SET NX PX``); every other caller of that key, in any process, waits for its
holder. A caller whose ``asyncio.timeout`` expires while the reply to that
``SET`` is on its way has had the lease given to it by the server, but never
learns it: nobody would release it, and every other caller would wait for the
whole lease (or give up with ``LockTimeout``). The cancellation here is made
to land at that very moment (the caller cancels itself once its command is
written, as a timer expiring then would), so no timing decides the outcome.

Also here: a holder whose release is cancelled again and again (AnyIO's cancel
scopes, under Starlette and FastAPI, cancel at every await until the task
leaves the scope), on a server that has not loaded the release script yet, so
releasing takes two round trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from pevensie_cache import AsyncPevensieCache, cache
from pevensie_redis.testing import RedisServer

pytestmark = pytest.mark.asyncio

LEASE_S = 60.0
"""The stranded lease: a caller that waited for it would wait a minute."""
BOUND_S = 20.0
"""Far more than the other caller takes when nothing is stranded, far less than the lease."""


@pytest_asyncio.fixture
async def two_caches(private_server: RedisServer) -> AsyncIterator[list[AsyncPevensieCache]]:
    """Two connected caches on the server: two processes, as far as the lease goes."""
    caches = [
        await cache.new_async(
            driver="redis", host=private_server.host, port=private_server.port
        ).connect()
        for _ in range(2)
    ]
    yield caches
    for each in caches:
        await each.disconnect()


def cancel_once_sent(c: AsyncPevensieCache, operation: str) -> list[asyncio.Task[Any]]:
    """Make ``c``'s driver cancel the caller once ``operation``'s command has been written.

    The caller is the task the test appends to the list returned.
    """
    driver: Any = c.driver
    original = getattr(driver, operation)
    callers: list[asyncio.Task[Any]] = []

    async def cancelled(*args: Any) -> Any:
        running = asyncio.ensure_future(original(*args))  # the command is written as it starts
        await asyncio.sleep(0)  # it has started: it waits for the reply
        callers[0].cancel()  # as an asyncio.timeout around the caller expiring now would
        return await running

    setattr(driver, operation, cancelled)
    return callers


def keep_cancelling(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` at every turn of the loop until it ends (as an AnyIO cancel scope does)."""
    loop = asyncio.get_running_loop()

    def again() -> None:
        if not task.done():
            task.cancel()
            loop.call_soon(again)

    again()


async def lock_is_gone(server: RedisServer, key: str) -> bool:
    """Whether the lease key ``key`` is gone from the server, looked at until ``BOUND_S``."""
    loop = asyncio.get_running_loop()
    until = loop.time() + BOUND_S
    with server.client() as raw:
        while raw.exists(key):
            if loop.time() > until:
                return False
            await asyncio.sleep(0.01)
    return True


async def test_a_get_or_set_cancelled_as_its_lease_is_taken_strands_no_lease(
    private_server: RedisServer, two_caches: list[AsyncPevensieCache]
) -> None:
    holder, other = two_caches
    callers = cancel_once_sent(holder, "acquire_lock")
    callers.append(
        asyncio.create_task(
            holder.get_or_set("page", "home", lambda: "holder's", lock=True, lock_lease=LEASE_S)
        )
    )
    with pytest.raises(asyncio.CancelledError):
        await callers[0]
    # The other caller takes the lease and loads: it does not wait a minute for it.
    value = await asyncio.wait_for(
        other.get_or_set("page", "home", lambda: "other's", lock=True, lock_lease=LEASE_S),
        BOUND_S,
    )
    assert value == "other's"
    assert await lock_is_gone(private_server, ":lock:page:home")


async def test_a_lock_block_cancelled_as_the_lock_is_taken_strands_no_lease(
    private_server: RedisServer, two_caches: list[AsyncPevensieCache]
) -> None:
    holder, other = two_caches
    callers = cancel_once_sent(holder, "acquire_lock")

    async def hold() -> None:
        async with holder.lock("report", "monthly", ttl_seconds=LEASE_S):
            pytest.fail("the block ran: the caller was not cancelled")

    callers.append(asyncio.create_task(hold()))
    with pytest.raises(asyncio.CancelledError):
        await callers[0]
    async with other.lock("report", "monthly", ttl_seconds=LEASE_S, wait_seconds=BOUND_S):
        pass  # taken, well before the stranded lease would have expired


async def test_a_holder_cancelled_again_and_again_as_it_releases_still_releases(
    private_server: RedisServer, two_caches: list[AsyncPevensieCache]
) -> None:
    holder, other = two_caches
    with private_server.client() as raw:
        raw.script_flush()  # the release's script is loaded first: two round trips
    loading = asyncio.Event()

    async def never() -> str:
        loading.set()
        await asyncio.Event().wait()
        return "never"

    holding = asyncio.create_task(
        holder.get_or_set("page", "about", never, lock=True, lock_lease=LEASE_S)
    )
    await asyncio.wait_for(loading.wait(), BOUND_S)
    keep_cancelling(holding)
    with pytest.raises(asyncio.CancelledError):
        await holding
    value = await asyncio.wait_for(
        other.get_or_set("page", "about", lambda: "other's", lock=True, lock_lease=LEASE_S),
        BOUND_S,
    )
    assert value == "other's"
    assert await lock_is_gone(private_server, ":lock:page:about")


@pytest.mark.parametrize("order", ["runner-first", "waiter-first"])
async def test_a_waiter_cancelled_with_the_runner_ends_cancelled_and_loads_nothing(
    two_caches: list[AsyncPevensieCache], order: str
) -> None:
    c = two_caches[0]
    driver: Any = c.driver
    original_get = driver.get
    missed = asyncio.Event()

    async def get(*args: Any) -> Any:
        found = await original_get(*args)
        missed.set()  # this caller goes on to the flight at once, without an await between
        return found

    driver.get = get
    loading = asyncio.Event()
    calls = 0

    async def never() -> str:
        nonlocal calls
        calls += 1
        loading.set()
        await asyncio.Event().wait()
        return "never"

    runner = asyncio.create_task(c.get_or_set("page", "contact", never))
    await asyncio.wait_for(loading.wait(), BOUND_S)
    missed.clear()
    waiter = asyncio.create_task(c.get_or_set("page", "contact", never))
    await asyncio.wait_for(missed.wait(), BOUND_S)  # it now waits for the runner's outcome
    first, second = (runner, waiter) if order == "runner-first" else (waiter, runner)
    first.cancel()  # both in one step, as a TaskGroup or gather cancels its tasks
    second.cancel()
    done, _ = await asyncio.wait({runner, waiter}, timeout=BOUND_S)
    assert done == {runner, waiter}, "a cancelled task went on: its cancellation was lost"
    assert runner.cancelled()
    assert waiter.cancelled()
    assert calls == 1


async def test_a_lock_block_cancelled_again_and_again_as_it_releases_still_releases(
    private_server: RedisServer, two_caches: list[AsyncPevensieCache]
) -> None:
    holder, other = two_caches
    with private_server.client() as raw:
        raw.script_flush()  # the release's script is loaded first: two round trips
    inside = asyncio.Event()

    async def hold() -> None:
        async with holder.lock("report", "weekly", ttl_seconds=LEASE_S):
            inside.set()
            await asyncio.Event().wait()

    holding = asyncio.create_task(hold())
    await asyncio.wait_for(inside.wait(), BOUND_S)
    keep_cancelling(holding)
    with pytest.raises(asyncio.CancelledError):
        await holding
    async with other.lock("report", "weekly", ttl_seconds=LEASE_S, wait_seconds=BOUND_S):
        pass  # taken, well before the lease would have expired
