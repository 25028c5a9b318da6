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
import time

import pytest
from interrupt_support import Alarms, Interrupt, landed_in
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import TimeoutError as RedisPyTimeoutError
from reliability_support import MARGIN_S, connect_async_cache, connect_cache

from pevensie_cache import DriverError
from pevensie_redis import RedisConnectionError
from pevensie_redis.config import RedisConfig
from pevensie_redis.endpoint import endpoint
from pevensie_redis.pipe_async import open_pipe
from pevensie_redis.protocol.commands import pack_get
from pevensie_redis.testing import RedisServer
from pevensie_test_support import loops

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


@pytest.mark.skipif(
    loops.selected() == "uvloop",
    reason=(
        "open defect on uvloop: a storm of exceptions raised by a signal handler once left "
        "a reader waiting past its timeout (CI rehearsal, 2026-12-06; see RELIABILITY.md); "
        "asyncio's loop passes"
    ),
)
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

        with Alarms(every=0.0007):
            await asyncio.gather(*(reader(n) for n in range(4)))
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


@pytest.mark.parametrize("started_by", ["close", "timer"])
async def test_an_abort_cut_short_by_a_handlers_exception_still_fails_every_waiter_in_time(
    private_server: RedisServer, started_by: str
) -> None:
    """A handler's exception landing as a pipe starts closing never strands its waiters.

    The exception lands before the connection itself is closed (here, exactly
    there: the pipe's first step of closing raises it once); with the server
    stalled, nothing else would ever answer the commands still waiting. The
    pipe's timer finishes the abort: each waiter fails within the timeout.
    Started by ``close()`` (a caller's task gets the exception) or by the
    pipe's own timer (the event loop gets it, in the timer's callback).
    """
    timeout = 1.0
    config = RedisConfig(host=private_server.host, port=private_server.port, timeout=1000)
    pipe = await open_pipe(endpoint(config))
    shut = pipe._shut
    landed: list[Interrupt] = []

    def interrupted_shut() -> None:  # the handler's exception, at the first step of closing
        pipe._shut = shut  # type: ignore[method-assign]
        landed.append(Interrupt("landed as the pipe started closing"))
        raise landed[-1]

    private_server.pause()
    try:
        waiting = pipe.call(pack_get(b"stranded?"))
        pipe._shut = interrupted_shut  # type: ignore[method-assign]
        started = time.monotonic()
        if started_by == "close":
            with pytest.raises(Interrupt):
                pipe.close()
        done, _ = await asyncio.wait({waiting}, timeout=timeout + MARGIN_S + 2)
        took = time.monotonic() - started
    finally:
        private_server.resume()
    assert landed, "the exception never landed"
    assert done, "a waiter of the pipe was stranded past its timeout"
    error = waiting.exception()
    assert isinstance(error, (RedisPyConnectionError, RedisPyTimeoutError)), error
    assert took < timeout + MARGIN_S
    assert pipe.closed
