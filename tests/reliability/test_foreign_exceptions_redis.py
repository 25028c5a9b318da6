"""A signal handler's exception raised into a Redis cache call reaches the caller unchanged.

The handler (tests/interrupt_support.py) raises an ordinary ``Exception``, as
Celery's soft time limit does, and only while a cache call runs. The caller
must get that exception, never a ``DriverError``; every value read meanwhile
is the one stored under its key, and the cache answers afterwards.

Sync face: one alarm while a call waits on a paused server (the storms on the
sync face's shared pipes are in test_interrupt_storms.py). Async face: a storm
of alarms over four tasks' reads. A handler can only raise into a task's own
code: while the loop waits in its selector the exception leaves the event loop
instead (asyncio's rule; ``loop.add_signal_handler`` is the async way).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings
from typing import Any

import pytest
import redis
from interrupt_support import (
    Alarms,
    Interrupt,
    interrupt_after,
    interrupt_after_release,
    landed_in,
    stall_after,
)
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import TimeoutError as RedisPyTimeoutError
from reliability_support import MARGIN_S, connect_async_cache, connect_cache

from pevensie_cache import AsyncPevensieCache, DriverError, PevensieCache, cache
from pevensie_redis import RedisConnectionError
from pevensie_redis.config import RedisConfig
from pevensie_redis.endpoint import endpoint
from pevensie_redis.pipe_async import open_pipe
from pevensie_redis.protocol.commands import pack_get, pack_set
from pevensie_redis.testing import RedisServer

TIMEOUT_MS = 5000
KEYS = [str(n) for n in range(50)]
STORM_SECONDS = 3.0


def value_of(key: str) -> str:
    return f"value of {key} " + "x" * (int(key) * 7)


def test_a_sync_call_waiting_on_the_server_gets_the_handlers_exception(
    private_server: RedisServer,
) -> None:
    c = connect_cache(private_server, timeout=TIMEOUT_MS)
    try:
        c.set("user", "1", "Ada")
        private_server.pause()
        try:
            started = time.monotonic()
            with Alarms(every=0, first=0.3) as alarms:
                try:
                    c.get("user", "1")
                except Interrupt as exc:
                    caught: BaseException = exc
                except DriverError as exc:
                    caught = exc
            took = time.monotonic() - started
        finally:
            private_server.resume()
        assert type(caught) is Interrupt, caught
        assert caught.__cause__ is None
        assert alarms.raised == 1
        assert took < TIMEOUT_MS / 1000  # the handler's exception ended the wait, not the timeout
        # The interrupted connection is not reused with its unread reply.
        assert c.get("user", "1") == "Ada"
        c.set("user", "2", "Bo")
        assert c.get_many("user", ["1", "2"]) == {"1": "Ada", "2": "Bo"}
    finally:
        c.disconnect()


async def test_a_storm_of_handler_exceptions_reaches_async_callers_and_no_value_is_wrong(
    private_server: RedisServer,
) -> None:
    """Four tasks read while SIGALRM fires every 0.7 ms for 3 s.

    An interrupt that lands in a task's own code (the facade, the driver,
    its pipe) reaches that task unchanged. One that lands inside the event
    loop's transport code is the loop's: asyncio closes the connection and the
    calls waiting on it fail with ``RedisConnectionError`` or are retried
    (a reply half routed is such a case). A command and its waiter are
    queued in one step, or the pipe is closed, so no caller ever reads
    another key's value, and no call waits past its timeout.
    """
    c = await connect_async_cache(private_server, timeout=TIMEOUT_MS)
    readers: list[asyncio.Future[None]] = []
    try:
        await c.set_many("user", {key: value_of(key) for key in KEYS})
        caught: list[BaseException] = []
        other: list[BaseException] = []
        wrong: list[tuple[str, object]] = []
        longest = 0.0
        started = time.monotonic()

        async def reader(offset: int) -> None:
            nonlocal longest
            n = offset
            while time.monotonic() - started < STORM_SECONDS:
                n += 1
                key = KEYS[n % len(KEYS)]
                began = time.monotonic()
                try:
                    await asyncio.sleep(0)  # the other readers' turn
                    if n % 5 == 4:
                        got: object = await c.get_many("user", [key, KEYS[0]])
                        if got != {key: value_of(key), KEYS[0]: value_of(KEYS[0])}:
                            wrong.append((key, got))
                    else:
                        got = await c.get("user", key)
                        if got != value_of(key):
                            wrong.append((key, got))
                except Interrupt as exc:
                    caught.append(exc)
                except Exception as exc:
                    other.append(exc)
                longest = max(longest, time.monotonic() - began)

        readers += [asyncio.ensure_future(reader(n)) for n in range(4)]
        with Alarms(every=0.0007):
            _, stuck = await asyncio.wait(
                readers, timeout=STORM_SECONDS + TIMEOUT_MS / 1000 + 2 * MARGIN_S
            )
        # A reader left waiting after every call's timeout has passed is one of two things.
        # Its call's future still pending: the driver stranded it (a defect). Its call's
        # future done: the driver answered in time, and the event loop lost the reader's
        # wakeup. asyncio schedules and runs a task's wakeup in Python code (`call_soon`,
        # `Handle._run`), where the handler's exception can land and drop it (seen once
        # in some hundred storm runs); no driver can wake such a task.
        awaited = [getattr(task, "_fut_waiter", None) for task in stuck]
        assert [f for f in awaited if f is not None and not f.done()] == [], (
            "a call waited past its timeout"
        )
        assert len(stuck) <= 1, f"the loop lost {len(stuck)} wakeups of 4 readers"
        assert wrong == []
        # CPython 3.11 drops the inner frames from the traceback of an exception raised
        # while a coroutine chain unwinds an exception an event loop threw into it (a
        # failed future): an interrupt landing then carries no handler frame, cannot be
        # told from the driver's own failure, and is wrapped, with it as __cause__. It
        # is rare (about 1 interrupt in 100 here); before the fix every one was wrapped.
        unrecognised = [
            e for e in other if isinstance(e, DriverError) and type(e.__cause__) is Interrupt
        ]
        assert len(unrecognised) <= max(2, len(caught) // 20), (len(unrecognised), len(caught))
        unexpected = [e for e in other if e not in unrecognised]
        assert [e for e in unexpected if not isinstance(e, RedisConnectionError)] == []
        inside = [e for e in caught if landed_in(e, "channel_async.py", "driver_async.py")]
        assert inside, (len(caught), len(other))
        assert longest < TIMEOUT_MS / 1000 + MARGIN_S
        # The cache answers every key afterwards.
        assert await c.get_many("user", KEYS) == {key: value_of(key) for key in KEYS}
    finally:
        await c.disconnect()
        await _forget_lost(readers)


async def _forget_lost(tasks: list[asyncio.Future[None]]) -> None:
    """Cancel the tasks still pending; forget those whose wakeup the event loop lost.

    Such a task waits on a future that is done, and nothing will ever run it
    again, not even its cancellation: left registered, it would hold the
    closing of the test's event loop (which waits for every task it cancels)
    for ever.
    """
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=1.0)
    for task in tasks:
        if not task.done():
            asyncio.tasks._unregister_task(task)  # type: ignore[attr-defined]


@pytest.mark.parametrize("lands", ["as it starts closing", "while it fails the waiters"])
@pytest.mark.parametrize("started_by", ["close", "timer"])
async def test_an_abort_cut_short_by_a_handlers_exception_still_fails_every_waiter_in_time(
    private_server: RedisServer, started_by: str, lands: str
) -> None:
    """A handler's exception landing as a pipe closes never strands its waiters.

    The exception lands (here, exactly there, once) at the pipe's first step of
    closing, before the connection itself is closed, or as it fails the
    second of three waiters. With the server stalled, nothing else would ever
    answer the commands still waiting: each fails within the timeout.
    Started by ``close()`` (a caller's task gets the exception) or by the
    pipe's own timer (the event loop gets it, in the timer's callback).
    """
    timeout = 1.0
    config = RedisConfig(host=private_server.host, port=private_server.port, timeout=1000)
    pipe = await open_pipe(endpoint(config))
    step = "_shut" if lands == "as it starts closing" else "_fail"
    original = getattr(pipe, step)
    landed: list[Interrupt] = []
    failed = 0

    def interrupted_step(*args: object) -> None:  # the handler's exception, at that step
        nonlocal failed
        failed += 1
        if step == "_fail" and failed < 2:
            original(*args)
            return
        setattr(pipe, step, original)
        landed.append(Interrupt(f"landed {lands}"))
        raise landed[-1]

    private_server.pause()
    try:
        waiting = [pipe.call(pack_get(b"stranded?%d" % n)) for n in range(3)]
        setattr(pipe, step, interrupted_step)
        started = time.monotonic()
        if started_by == "close":
            with pytest.raises(Interrupt):
                pipe.close()
        done, _ = await asyncio.wait(waiting, timeout=timeout + MARGIN_S + 2)
        took = time.monotonic() - started
    finally:
        private_server.resume()
    assert landed, "the exception never landed"
    assert len(done) == len(waiting), "a waiter of the pipe was stranded past its timeout"
    for future in waiting:
        error = future.exception()
        assert isinstance(error, (RedisPyConnectionError, RedisPyTimeoutError)), error
    assert took < timeout + MARGIN_S
    assert pipe.closed


async def test_a_command_queued_half_never_takes_another_commands_reply(
    private_server: RedisServer,
) -> None:
    """A handler's exception in a command's queueing, then again in its clean-up.

    The first lands after the command's waiter was queued and before its bytes
    were written; the second cuts short the clean-up that closes the pipe. The
    pipe, left open with a waiter that has no command, must not hand the next
    commands' replies to the wrong waiters: it closes on its next use, and
    the commands it refuses fail as never sent (the channel sends them
    elsewhere). Every other command gets its own reply, within the timeout.
    """
    config = RedisConfig(host=private_server.host, port=private_server.port, timeout=1000)
    pipe = await open_pipe(endpoint(config))
    for key in (b"a", b"b", b"c"):
        assert await pipe.call(pack_set(key, b"value of " + key)) == b"OK"
    write, clean_up = pipe._write, pipe._interrupted

    def interrupted_write(data: bytes, idle: bool) -> None:
        pipe._write = write  # type: ignore[method-assign]
        raise Interrupt("landed as the command was queued")

    def interrupted_clean_up() -> None:
        pipe._interrupted = clean_up  # type: ignore[method-assign]
        raise Interrupt("landed in the clean-up")

    pipe._write = interrupted_write  # type: ignore[method-assign]
    pipe._interrupted = interrupted_clean_up  # type: ignore[method-assign]
    with pytest.raises(Interrupt):
        pipe.call(pack_get(b"a"))
    sent: dict[bytes, asyncio.Future[object]] = {}
    got: dict[bytes, object] = {}
    for key in (b"b", b"c"):  # queued together: the second's reply must not be the first's
        try:
            sent[key] = pipe.call(pack_get(key))
        except RedisPyConnectionError as exc:
            got[key] = "refused: never sent" if getattr(exc, "pevensie_not_sent", False) else exc
    if sent:
        done, _ = await asyncio.wait(sent.values(), timeout=1 + MARGIN_S)
        assert len(done) == len(sent), "a command waited past its timeout"
    for key, future in sent.items():
        got[key] = future.exception() or future.result()
    for key, outcome in got.items():
        mine = outcome in ("refused: never sent", b"value of " + key)
        failed = isinstance(outcome, RedisPyConnectionError) and key in sent
        assert mine or failed, (key, outcome)
    assert pipe.closed


# -- the lifecycle: an interrupt anywhere leaves the cache connected, or its driver closed --

SETTLE_S = 5.0
"""How long a closed connection may take to leave CLIENT LIST (or a stopped thread to end)."""


def _others(server: RedisServer) -> list[str]:
    """The other connections, each as the server describes it (address, name, last command)."""
    raw = redis.Redis(host=server.host, port=server.port, client_name="observer")
    try:
        return [
            f"{e['addr']} name={e.get('name')!r} cmd={e.get('cmd')} age={e.get('age')}"
            f" idle={e.get('idle')} flags={e.get('flags')}"
            for e in raw.client_list()
            if e.get("name") != "observer"
        ]
    finally:
        raw.close()


def open_connections(server: RedisServer) -> list[str]:
    """The server's connections other than this check's own, once they have gone (or 5 s)."""
    deadline = time.monotonic() + SETTLE_S
    while (left := _others(server)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


async def open_connections_async(server: RedisServer) -> list[str]:
    """The same, letting the event loop run the closing meanwhile."""
    deadline = time.monotonic() + SETTLE_S
    while (left := _others(server)) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return left


def threads_left(before: int) -> int:
    """Threads running beyond ``before``, once the cache's have ended (or 5 s)."""
    deadline = time.monotonic() + SETTLE_S
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    return threading.active_count() - before


async def tasks_left(before: int) -> int:
    """Tasks of this loop beyond ``before``, once the cache's have ended (or 5 s)."""
    deadline = time.monotonic() + SETTLE_S
    while len(asyncio.all_tasks()) > before and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return len(asyncio.all_tasks()) - before


def new_cache(server: RedisServer, **fields: Any) -> PevensieCache:
    return cache.new(
        driver="redis", host=server.host, port=server.port, timeout=TIMEOUT_MS, **fields
    )


def new_async_cache(server: RedisServer, **fields: Any) -> AsyncPevensieCache:
    return cache.new_async(
        driver="redis", host=server.host, port=server.port, timeout=TIMEOUT_MS, **fields
    )


def closing_step(c: Any, step: str) -> tuple[object, str]:
    """The object and method of a step of ``disconnect()``, whose end an interrupt follows."""
    if step == "refreshes":  # the cache's background refreshes end (before the driver closes)
        return c._fresh.background, "close"
    if step == "lock releases":  # the driver's first step: its lock-release subscriber stops
        return c.driver._releases, "stop"
    return c.driver._channel.listener, "stop"  # closing the channel: the near cache's listener


CLOSING_STEPS = [
    pytest.param("refreshes", False, id="refreshes"),
    pytest.param("refreshes", True, id="refreshes-near"),
    pytest.param("lock releases", False, id="lock-releases"),
    pytest.param("lock releases", True, id="lock-releases-near"),
    pytest.param("listener", True, id="near-listener"),
]


@pytest.mark.parametrize("near_cache", [False, True], ids=["plain", "near"])
def test_an_interrupt_as_the_driver_connects_leaves_no_connection_open(
    private_server: RedisServer, near_cache: bool
) -> None:
    threads = threading.active_count()
    c = new_cache(private_server, near_cache=near_cache)
    # The driver has connected, the cache not yet.
    with interrupt_after(c.driver, "connect"), pytest.raises(Interrupt):
        c.connect()
    assert not c.connected
    assert open_connections(private_server) == []
    assert threads_left(threads) == 0
    c.connect()
    assert c.get("user", "1", None) is None
    c.disconnect()


def test_an_interrupt_as_the_near_cache_starts_leaves_no_listener_behind(
    private_server: RedisServer,
) -> None:
    import pevensie_redis.driver as driver_module

    threads = threading.active_count()
    c = new_cache(private_server, near_cache=True)
    # The listener listens (its thread runs), and the driver has not taken it over yet.
    with interrupt_after(driver_module, "start_near_cache"), pytest.raises(Interrupt):
        c.connect()
    assert not c.connected
    assert open_connections(private_server) == []
    assert threads_left(threads) == 0
    c.connect()
    assert c.get("user", "1", None) is None
    c.disconnect()


@pytest.mark.parametrize("near_cache", [False, True], ids=["plain", "near"])
async def test_an_interrupt_as_the_async_driver_connects_leaves_no_connection_open(
    private_server: RedisServer, near_cache: bool
) -> None:
    tasks = len(asyncio.all_tasks())
    c = new_async_cache(private_server, near_cache=near_cache)
    with interrupt_after(c.driver, "connect"), pytest.raises(Interrupt):
        await c.connect()
    assert not c.connected
    assert await open_connections_async(private_server) == []
    assert await tasks_left(tasks) == 0
    await c.connect()
    assert await c.get("user", "1", None) is None
    await c.disconnect()


def test_an_interrupt_as_with_connects_leaves_no_connection_open(
    private_server: RedisServer,
) -> None:
    c = new_cache(private_server)
    with interrupt_after_release(c), pytest.raises(Interrupt), c:  # as connect() unlocks
        pytest.fail("the block ran although entering it was interrupted")
    assert not c.connected
    assert open_connections(private_server) == []
    with c:
        c.set("user", "1", "Ada")
    assert open_connections(private_server) == []


async def test_an_interrupt_as_async_with_connects_leaves_no_connection_open(
    private_server: RedisServer,
) -> None:
    c = new_async_cache(private_server)
    with interrupt_after_release(c), pytest.raises(Interrupt):
        async with c:
            pytest.fail("the block ran although entering it was interrupted")
    assert not c.connected
    assert await open_connections_async(private_server) == []
    async with c:
        await c.set("user", "1", "Ada")
    assert await open_connections_async(private_server) == []


@pytest.mark.parametrize(("step", "near_cache"), CLOSING_STEPS)
def test_an_interrupt_in_disconnect_still_closes_every_connection(
    private_server: RedisServer, step: str, near_cache: bool
) -> None:
    threads = threading.active_count()
    c = new_cache(private_server, near_cache=near_cache).connect()
    c.set("user", "1", "Ada")
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always", ResourceWarning)
        with interrupt_after(*closing_step(c, step)), pytest.raises(Interrupt):
            c.disconnect()
        gc.collect()
    # Closed by the driver, not left to the garbage collector ("unclosed <socket ...>"; the
    # collection may close other tests' leftovers too: only this server's count).
    to_this_server = f"raddr=('{private_server.host}', {private_server.port})"
    assert [str(w.message) for w in warned if to_this_server in str(w.message)] == []
    assert not c.connected
    assert open_connections(private_server) == []
    assert threads_left(threads) == 0
    c.connect()
    assert c.get("user", "1") == "Ada"
    c.disconnect()
    assert open_connections(private_server) == []


@pytest.mark.parametrize(("step", "near_cache"), CLOSING_STEPS)
async def test_a_cancellation_in_disconnect_still_closes_every_connection(
    private_server: RedisServer, step: str, near_cache: bool
) -> None:
    tasks = len(asyncio.all_tasks())
    c = await new_async_cache(private_server, near_cache=near_cache).connect()
    await c.set("user", "1", "Ada")
    reached = stall_after(*closing_step(c, step))  # that step ends, then the caller waits
    disconnecting = asyncio.create_task(c.disconnect())
    await reached.wait()
    disconnecting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await disconnecting
    assert not c.connected
    assert await open_connections_async(private_server) == []
    assert await tasks_left(tasks) == 0
    await c.connect()
    assert await c.get("user", "1") == "Ada"
    await c.disconnect()
    assert await open_connections_async(private_server) == []
