"""A cancelled task never leaves a reply for another task: chaos against a real server.

Many tasks each write and read keys of their own while a chaos task cancels
random tasks at random moments, and the tasks themselves run commands under
``asyncio.timeout`` / ``asyncio.wait_for`` with tiny timeouts. Every read that
completes must return the value its own task just wrote (never another task's,
never a reply meant for another command: the class of bug behind redis-py's
CVE-2023-28858/28859). A cancelled task is restarted with fresh keys (its
interrupted write may still land), and at the end every connection must still
be in step: an ``ECHO`` on each pipe gets its own token back.

The chaos run is checked against itself too: with a pipe that hands a
cancelled command's reply to the next waiter, the same run must report
crossed replies.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from reliability_support import (
    FAST_TIMEOUT_MS,
    connect_async_cache,
    hang_bound,
    named_clients,
    unique_client_name,
)

from pevensie_cache import AsyncPevensieCache, cache
from pevensie_redis import AsyncRedisDriver, RedisConnectionError, RedisTimeoutError
from pevensie_redis.channel_async import Channel
from pevensie_redis.pipe_async import Pipe
from pevensie_redis.protocol import commands as wire
from pevensie_redis.testing import RedisServer

pytestmark = pytest.mark.asyncio

WORKERS = 32
POOL_SIZE = 4
KEYS_PER_STEP = 3
TTL = 300
RESOURCE = "chaos"


def channel_of(c: AsyncPevensieCache) -> Channel:
    """Return the connected async Redis driver's channel (its pipes are checked below)."""
    driver = c.driver
    assert isinstance(driver, AsyncRedisDriver)
    channel = driver._channel
    assert isinstance(channel, Channel)
    return channel


@dataclass
class ChaosRun:
    """What one chaos run did and saw."""

    cache: AsyncPevensieCache
    rng: random.Random
    allowed: tuple[type[BaseException], ...] = ()
    """Errors a step may end with besides a timeout (connection kills)."""
    steps: int = 0
    reads: int = 0
    """Completed reads, each compared with what its task wrote."""
    timeouts: int = 0
    """Steps interrupted by their own ``asyncio.timeout`` / ``wait_for``."""
    errors: int = 0
    """Steps that ended with an allowed error."""
    cancelled: Counter[str] = field(default_factory=Counter)
    """Tasks the chaos task cancelled, by what they were doing at that moment."""
    wrong: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    phase: dict[int, str] = field(default_factory=dict)

    def check(self, worker: int, what: str, expected: Any, got: Any) -> None:
        self.reads += 1
        if got == expected:
            return
        mine = f"w{worker}/"
        foreign = [
            text for text in _texts(got) if text.startswith("w") and not text.startswith(mine)
        ]
        whose = "another task's value" if foreign else "not its own value"
        self.wrong.append(f"worker {worker} {what}: expected {expected!r}, read {got!r} ({whose})")


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, str)]
    return []


async def _step(run: ChaosRun, worker: int, keys: list[str], value: str, kind: int) -> None:
    """One write, then the read that must see it."""
    c = run.cache
    key = keys[0]
    batch = {k: f"{value}/{k}" for k in keys}
    run.phase[worker] = "write"
    if kind in (0, 1):
        await c.set(RESOURCE, key, value, ttl_seconds=TTL if kind else None)
        run.phase[worker] = "read"
        run.check(worker, "get after set", value, await c.get(RESOURCE, key, default=None))
    elif kind in (2, 3):
        await c.set_many(RESOURCE, batch, ttl_seconds=TTL if kind == 3 else None)
        run.phase[worker] = "read"
        run.check(worker, "get_many after set_many", batch, await c.get_many(RESOURCE, keys))
    elif kind == 4:
        await c.delete(RESOURCE, key)
        run.phase[worker] = "read"
        run.check(worker, "get after delete", None, await c.get(RESOURCE, key, default=None))
    else:
        await c.delete_many(RESOURCE, keys)
        run.phase[worker] = "read"
        run.check(worker, "get_many after delete_many", {}, await c.get_many(RESOURCE, keys))
    run.phase[worker] = "idle"


async def worker_loop(run: ChaosRun, worker: int, generation: int) -> None:
    """Write and read this task's own keys until cancelled.

    After an interruption the task moves to fresh keys: the interrupted write
    may still reach the server later (on another connection), so only writes
    the task saw complete are compared with what it reads.
    """
    rng = run.rng
    epoch = 0
    i = 0
    try:
        while True:
            i += 1
            keys = [f"w{worker}-g{generation}-e{epoch}-k{n}" for n in range(KEYS_PER_STEP)]
            value = f"w{worker}/g{generation}/i{i}"
            step = _step(run, worker, keys, value, rng.randrange(6))
            how = rng.randrange(6)
            try:
                if how == 0:
                    async with asyncio.timeout(rng.uniform(0, 0.003)):
                        await step
                elif how == 1:
                    await asyncio.wait_for(step, rng.uniform(0, 0.003))
                else:
                    await step
            except TimeoutError:
                run.timeouts += 1
                epoch += 1
            except run.allowed:
                run.errors += 1
                epoch += 1
            except Exception as exc:
                run.failures.append(f"worker {worker}: {type(exc).__name__}: {exc}")
                epoch += 1
            else:
                run.steps += 1
            run.phase[worker] = "idle"
    except asyncio.CancelledError:
        run.cancelled[run.phase.get(worker, "idle")] += 1
        raise


async def run_chaos(
    c: AsyncPevensieCache,
    *,
    seed: int,
    seconds: float,
    cancellations: int | None = None,
    until: Callable[[ChaosRun], bool] | None = None,
    allowed: tuple[type[BaseException], ...] = (),
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> ChaosRun:
    """Run WORKERS tasks and a chaos task that cancels them, for ``seconds`` at most.

    Stops early once the chaos task has cancelled ``cancellations`` tasks, or
    once ``until(run)`` holds (the work a test asks for, however fast the
    machine does it). Every cancelled task is restarted (next generation,
    fresh keys). ``meanwhile`` runs beside the chaos until it stops (killing
    connections).
    """
    run = ChaosRun(cache=c, rng=random.Random(seed), allowed=allowed)
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    generations = [0] * WORKERS
    stopping = False

    def start(worker: int) -> asyncio.Task[None]:
        task = loop.create_task(worker_loop(run, worker, generations[worker]))
        task.add_done_callback(lambda done: restart(worker, done))
        return task

    def restart(worker: int, done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            run.failures.append(f"worker {worker} died: {done.exception()!r}")
        if not stopping:
            generations[worker] += 1
            tasks[worker] = start(worker)

    tasks.extend(start(worker) for worker in range(WORKERS))
    side = loop.create_task(meanwhile()) if meanwhile is not None else None
    rng = run.rng
    deadline = loop.time() + seconds
    sent = 0

    def done() -> bool:
        if cancellations is not None and sent >= cancellations:
            return True
        return until is not None and until(run)

    try:
        while not done() and loop.time() < deadline:
            # A random moment: a few turns of the event loop, or up to 2 ms.
            if rng.random() < 0.5:
                for _ in range(rng.randrange(1, 5)):
                    await asyncio.sleep(0)
            else:
                await asyncio.sleep(rng.uniform(0, 0.002))
            victim = tasks[rng.randrange(WORKERS)]
            if not victim.done():
                victim.cancel()
                sent += 1
    finally:
        stopping = True
        if side is not None:
            side.cancel()
        pending: list[asyncio.Future[Any]] = [*tasks, *([side] if side else [])]
        # Polls until every cancelled worker has ended (at once, normally); 10 s only
        # catches a worker that ignores its cancellation.
        stop_by = loop.time() + 10
        while pending and loop.time() < stop_by:
            for task in pending:
                task.cancel()
            _, still = await asyncio.wait(pending, timeout=0.1)
            pending = list(still)
        assert pending == [], "some worker did not stop when cancelled"
    return run


async def assert_in_step(c: AsyncPevensieCache, server: RedisServer, name: str) -> None:
    """Every pipe drains and answers its own ECHOs; the cache works; <= POOL_SIZE connections."""
    channel = channel_of(c)
    loop = asyncio.get_running_loop()
    settle_by = loop.time() + 5
    while any(pipe.load for pipe in channel.pipes) and loop.time() < settle_by:
        await asyncio.sleep(0.01)  # replies of cancelled commands are still being read
    assert [pipe.load for pipe in channel.pipes if pipe.load] == []
    pipes = channel.pipes
    print(f"pipes at the end: {len(pipes)}")
    assert 1 <= len(pipes) <= POOL_SIZE
    for number, pipe in enumerate(pipes):
        tokens = [f"pipe {number} token {n}" for n in range(5)]
        replies = await asyncio.gather(
            *pipe.send_many([wire.pack(["ECHO", token]) for token in tokens])
        )
        assert replies == [token.encode() for token in tokens], (number, replies)
    await c.set(RESOURCE, "after", "the chaos")
    assert await c.get(RESOURCE, "after") == "the chaos"
    assert await c.get_many(RESOURCE, ["after", "absent"]) == {"after": "the chaos"}
    with server.client() as raw:
        assert 1 <= len(named_clients(raw, name)) <= POOL_SIZE


def summary(run: ChaosRun) -> str:
    return (
        f"steps={run.steps} reads={run.reads} timeouts={run.timeouts} errors={run.errors} "
        f"cancelled={dict(run.cancelled)} wrong={run.wrong[:5]} failures={run.failures[:5]}"
    )


# -- the chaos runs ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
async def test_cancelled_tasks_never_hand_a_reply_to_another_task(
    private_server: RedisServer, seed: int
) -> None:
    name = unique_client_name("chaos")
    c = await connect_async_cache(
        private_server, pool_size=POOL_SIZE, timeout=10_000, client_name=name
    )
    try:
        # The run goes on until it has done its work (a quiet machine: about 10 s; a
        # loaded CI machine took more than 20 s); 300 s only bounds a run that stopped
        # making progress.
        def enough(run: ChaosRun) -> bool:
            cancelled = run.cancelled
            return (
                sum(cancelled.values()) >= 2_000
                and min(cancelled["write"], cancelled["read"]) >= 200
                and run.timeouts >= 200
                and run.reads >= 2_000
            )

        run = await run_chaos(c, seed=seed, seconds=300, until=enough)
        report = summary(run)
        print(report)  # shown with -s: how chaotic the run was
        assert run.wrong == [], report
        assert run.failures == [], report
        # The run really was chaotic: thousands of interruptions, at every stage.
        assert sum(run.cancelled.values()) >= 1_500, report
        assert run.cancelled["write"] >= 200, report
        assert run.cancelled["read"] >= 200, report
        assert run.timeouts >= 200, report
        assert run.reads >= 2_000, report
        await assert_in_step(c, private_server, name)
    finally:
        await c.disconnect()


@pytest.mark.slow
async def test_long_chaos_run_with_connections_killed_under_it(private_server: RedisServer) -> None:
    """Ten times longer, and the server drops the cache's connections every ~150 ms."""
    name = unique_client_name("chaos-kill")
    c = await connect_async_cache(
        private_server, pool_size=POOL_SIZE, timeout=10_000, retries=1, client_name=name
    )
    kills = 0
    raw = private_server.client()
    killing = threading.Event()
    killing.set()
    kill_running = threading.Lock()  # held while a kill is under way in its thread

    def kill_connections() -> int:
        with kill_running:
            if not killing.is_set():
                return 0  # the run is over: a kill still in its thread does nothing now
            victims = named_clients(raw, name)
            for victim in victims:
                raw.execute_command("CLIENT", "KILL", "ID", victim["id"])
            return len(victims)

    def wait_for_the_last_kill() -> None:
        with kill_running:
            pass

    async def keep_killing() -> None:
        nonlocal kills
        rng = random.Random(7)
        while True:
            await asyncio.sleep(rng.uniform(0.05, 0.25))
            kills += await asyncio.to_thread(kill_connections)

    try:
        # The run goes on until it has done its work: enough cancellations to have met
        # every await many times over, reads and connection kills. A quiet machine does
        # that in about 80 s, a loaded CI machine (4 test processes on 2 cores) in about
        # 200 s; 600 s only bounds a run that stopped making progress.
        def enough(run: ChaosRun) -> bool:
            return sum(run.cancelled.values()) >= 15_000 and run.reads >= 20_000 and kills >= 50

        run = await run_chaos(
            c,
            seed=3,
            seconds=600,
            until=enough,
            allowed=(RedisConnectionError,),
            meanwhile=keep_killing,
        )
        report = summary(run) + f" kills={kills}"
        print(report)
        assert run.wrong == [], report
        assert run.failures == [], report
        assert sum(run.cancelled.values()) >= 15_000, report
        assert run.reads >= 20_000, report
        assert kills >= 50, report
        # A kill already running in its worker thread when the run ended may still land:
        # stop them, wait for the one under way to land, and let the cache replace what
        # it closed.
        killing.clear()
        await asyncio.to_thread(wait_for_the_last_kill)
        replaced_by = asyncio.get_running_loop().time() + 2
        await c.set(RESOURCE, "after the kills", "x")
        while any(pipe.closed for pipe in channel_of(c).pipes):
            assert asyncio.get_running_loop().time() < replaced_by, "a closed pipe stayed"
            await c.set(RESOURCE, "after the kills", "x")
        await assert_in_step(c, private_server, name)
    finally:
        raw.close()
        await c.disconnect()


def misrouting_data_received(self: Pipe, data: bytes) -> None:
    """A broken ``Pipe.data_received``: a cancelled command's reply goes to the next waiter."""
    reader = self._reader
    waiting = self._waiting
    reader.feed(data)
    reply = reader.gets()
    while reply is not False:
        while waiting and waiting[0][0].done():
            waiting.popleft()  # the bug: the cancelled caller's place is given up, not its reply
        if waiting:
            waiting.popleft()[0].set_result(reply)
        reply = reader.gets()


async def test_the_chaos_run_catches_a_pipe_that_hands_a_cancelled_reply_to_the_next_waiter(
    private_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Pipe, "data_received", misrouting_data_received)
    c = await connect_async_cache(private_server, pool_size=POOL_SIZE, timeout=1_000)
    try:
        run = await run_chaos(c, seed=1, seconds=3, cancellations=300)
    finally:
        await c.disconnect()
    assert any("another task's value" in line for line in run.wrong), summary(run)


# -- cancellation at the edges --------------------------------------------------------


async def test_a_cancelled_connect_leaves_no_connection_open(private_server: RedisServer) -> None:
    """``connect()`` cancelled (``wait_for`` with a tiny timeout) closes what it was opening."""
    name = unique_client_name("cancelled-connect")
    caches = []
    for _ in range(5):
        c = unconnected(private_server, name)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(c.connect(), 0.0001)
        assert not c.connected
        caches.append(c)
    loop = asyncio.get_running_loop()
    with private_server.client() as raw:
        settle_by = loop.time() + hang_bound(FAST_TIMEOUT_MS, 0)
        while named_clients(raw, name) and loop.time() < settle_by:
            await asyncio.sleep(0.05)
        assert named_clients(raw, name) == []
    await caches[0].connect()  # the same cache connects later
    try:
        await caches[0].set("user", "1", "Ada")
        assert await caches[0].get("user", "1") == "Ada"
    finally:
        await caches[0].disconnect()


def unconnected(server: RedisServer, name: str) -> AsyncPevensieCache:
    """Return an async cache on ``server`` whose connections carry ``name``, not connected."""
    return cache.new_async(
        driver="redis",
        host=server.host,
        port=server.port,
        client_name=name,
        timeout=FAST_TIMEOUT_MS,
    )


async def test_cancelling_a_task_held_back_by_a_full_write_buffer_cancels_no_other_task(
    private_server: RedisServer,
) -> None:
    """Tasks waiting for the socket to drain each wait on their own: one cancel, one task."""
    c = await connect_async_cache(private_server, pool_size=1, timeout=30_000)
    big = "x" * 300_000
    private_server.pause()
    try:
        # ~12 MB the stalled server does not read: the socket buffers fill and writing pauses.
        filling = [asyncio.create_task(c.set("big", str(n), big)) for n in range(40)]
        pipe = channel_of(c).pipes[0]
        loop = asyncio.get_running_loop()
        paused_by = loop.time() + 10
        while not pipe._paused and loop.time() < paused_by:
            await asyncio.sleep(0.01)
        assert pipe._paused, "the write buffer never filled"
        # More than SPREAD_AT commands wait on the pipe: these batches wait for the drain.
        waiting = [asyncio.create_task(c.set_many("small", {str(n): f"v{n}"})) for n in range(10)]
        await asyncio.sleep(0.05)
        assert pipe._drain is not None, "the batches are not waiting for the drain"
        waiting[3].cancel()
        await asyncio.sleep(0.05)
        assert [task for task in waiting if task.done()] == [waiting[3]]
    finally:
        private_server.resume()
    outcomes = await asyncio.gather(*filling, *waiting, return_exceptions=True)
    try:
        assert isinstance(outcomes[40 + 3], asyncio.CancelledError)
        assert [o for n, o in enumerate(outcomes) if n != 43 and o is not None] == []
        found = await c.get_many("small", [str(n) for n in range(10) if n != 3])
        assert found == {str(n): f"v{n}" for n in range(10) if n != 3}
    finally:
        await c.disconnect()


async def test_a_failed_batch_or_handshake_leaves_no_unretrieved_error_for_asyncio_to_report(
    private_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A stalled batch of several commands, or handshake, fails once, without asyncio noise."""
    c = await connect_async_cache(private_server, timeout=300, retries=0)
    other = cache.new_async(
        driver="redis",
        host=private_server.host,
        port=private_server.port,
        client_name=unique_client_name("handshake"),
        db=1,
        timeout=300,
    )
    private_server.pause()
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            with pytest.raises(RedisTimeoutError):
                await c.set_many("many", {str(n): "v" for n in range(2_500)})  # three MSETs
            with pytest.raises(RedisTimeoutError):
                await other.connect()  # a handshake of two commands: SELECT, CLIENT SETNAME
            gc.collect()
            await asyncio.sleep(0.05)
            gc.collect()
    finally:
        private_server.resume()
    await c.disconnect()
    assert [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()] == []
