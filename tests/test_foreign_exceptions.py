"""Exceptions that are not the driver's reach the caller unchanged.

A signal handler's exception (Celery's ``SoftTimeLimitExceeded`` is an
ordinary ``Exception``) lands in whatever code runs, often inside a driver; the
caller's ``except`` for it must run, so the facade never wraps it in a
``DriverError``. A driver's own failure still becomes a ``DriverError``
(tests/test_facade.py pins that safety net).
"""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType

import pytest
from interrupt_support import (
    Alarms,
    Interrupt,
    interrupt_after,
    interrupt_after_release,
    landed_in,
    stall_after,
)

from pevensie_cache import AsyncPevensieCache, DriverError, PevensieCache, cache
from pevensie_cache.errors import raised_by_signal_handler

STORM_EVERY = 0.0007
"""Seconds between two alarms, as in issue 19's storm."""
LANDINGS = 30
"""Interrupts that must land inside the driver's own code for a storm to count."""
ALARMS_LIMIT = 5000
"""Alarms handled before the test gives up waiting for enough landings (about 150 do).

Counted in alarms, not seconds: a process that gets little CPU (a loaded CI machine)
handles few of them, since the kernel keeps one pending SIGALRM, not one per period; a
starved run of this test once saw about 100 alarms in 10 seconds."""
STORM_LIMIT = 300.0
"""Seconds after which a storm whose alarms no longer come at all is given up."""


def sync_calls(c: PevensieCache) -> Iterator[Callable[[], object]]:
    while True:
        yield lambda: c.set("user", "1", "Ada", 60)
        yield lambda: c.get("user", "1")
        yield lambda: c.get_many("user", ["1", "2", "3"])
        yield lambda: c.set_many("user", {"2": "Bo", "3": "Cy"})
        yield lambda: c.get_or_set("user", "4", lambda: "Di")
        yield lambda: c.delete("user", "2")


def async_calls(c: AsyncPevensieCache) -> Iterator[Callable[[], Awaitable[object]]]:
    while True:
        yield lambda: c.set("user", "1", "Ada", 60)
        yield lambda: c.get("user", "1")
        yield lambda: c.get_many("user", ["1", "2", "3"])
        yield lambda: c.set_many("user", {"2": "Bo", "3": "Cy"})
        yield lambda: c.get_or_set("user", "4", lambda: "Di")
        yield lambda: c.delete("user", "2")


def test_a_signal_handlers_exception_reaches_the_sync_caller_unchanged() -> None:
    with cache.new(driver="memory") as c:
        caught: list[BaseException] = []
        wrapped: list[BaseException] = []
        started = time.monotonic()
        # Stored before the storm: an interrupted set of it then leaves the earlier value,
        # and every get of it hits. (Stored inside, an alarm landing in the first set, as
        # one can when the process is descheduled between arming the timer and that set,
        # made the next get a CacheMiss.)
        c.set("user", "1", "Ada", 60)
        calls = sync_calls(c)
        with Alarms(STORM_EVERY) as alarms:
            while alarms.fired < ALARMS_LIMIT and time.monotonic() - started < STORM_LIMIT:
                try:
                    next(calls)()
                except Interrupt as exc:
                    caught.append(exc)
                    if sum(landed_in(e, "memory.py") for e in caught) >= LANDINGS:
                        break
                except DriverError as exc:
                    wrapped.append(exc)
        assert wrapped == [], f"{len(wrapped)} of the handler's exceptions came back wrapped"
        inside = [e for e in caught if landed_in(e, "memory.py")]
        assert len(inside) >= LANDINGS, (alarms.fired, len(caught))
        assert all(type(e) is Interrupt and e.__cause__ is None for e in caught)
        # The cache is whole afterwards.
        c.set("user", "1", "Ada")
        assert c.get("user", "1") == "Ada"


async def test_a_signal_handlers_exception_reaches_the_async_caller_unchanged() -> None:
    async with cache.new_async(driver="memory") as c:
        caught: list[BaseException] = []
        wrapped: list[BaseException] = []
        started = time.monotonic()
        await c.set("user", "1", "Ada", 60)  # as in the sync test: every get of it hits
        calls = async_calls(c)
        # The memory driver never waits, so the loop never gets to its selector: every
        # interrupt lands in this task's code.
        with Alarms(STORM_EVERY) as alarms:
            while alarms.fired < ALARMS_LIMIT and time.monotonic() - started < STORM_LIMIT:
                try:
                    await next(calls)()
                except Interrupt as exc:
                    caught.append(exc)
                    if sum(landed_in(e, "memory.py") for e in caught) >= LANDINGS:
                        break
                except DriverError as exc:
                    wrapped.append(exc)
        assert wrapped == [], f"{len(wrapped)} of the handler's exceptions came back wrapped"
        inside = [e for e in caught if landed_in(e, "memory.py")]
        assert len(inside) >= LANDINGS, (alarms.fired, len(caught))
        await c.set("user", "1", "Ada")
        assert await c.get("user", "1") == "Ada"


class Broken:
    """A third-party driver with a bug: every read raises a foreign exception of its own."""

    def connect(self) -> None:
        pass

    def disconnect(self) -> None:
        pass

    def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        pass

    def get(self, resource_type: str, key: str) -> str | None:
        raise ZeroDivisionError("a bug in the driver")

    def delete(self, resource_type: str, key: str) -> None:
        pass


def test_a_drivers_own_failure_is_still_a_driver_error_while_a_handler_is_installed() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupt("never fired")

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        c = cache.new(driver=Broken()).connect()
        with pytest.raises(DriverError, match="ZeroDivisionError") as caught:
            c.get("user", "1")
        assert isinstance(caught.value.__cause__, ZeroDivisionError)
    finally:
        signal.signal(signal.SIGALRM, previous)


class Handlers:
    """Handlers of every shape ``signal.signal`` accepts: method, partial, callable object."""

    def method(self, signum: int, frame: FrameType | None) -> None:
        raise Interrupt("from a method")

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        raise Interrupt("from a callable object")


def _raising(signum: int, frame: FrameType | None, *, why: str) -> None:
    raise Interrupt(why)


@pytest.mark.parametrize(
    "handler",
    [Handlers().method, Handlers(), functools.partial(_raising, why="from a partial")],
    ids=["bound-method", "callable-object", "partial"],
)
def test_a_handler_of_any_shape_is_recognised(handler: Callable[..., None]) -> None:
    previous = signal.signal(signal.SIGALRM, handler)
    try:
        with pytest.raises(Interrupt) as caught:
            signal.raise_signal(signal.SIGALRM)  # the handler runs before it returns
        assert raised_by_signal_handler(caught.value)
        assert not raised_by_signal_handler(ValueError("raised by ordinary code"))
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_an_exception_from_a_handler_no_longer_installed_is_not_recognised() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupt("old")

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        with pytest.raises(Interrupt) as caught:
            signal.raise_signal(signal.SIGALRM)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert not raised_by_signal_handler(caught.value)


class InterruptedAfterRelease:
    """A lock after whose ``release_at``-th release an ``Interrupt`` is raised.

    As a signal handler's exception is: the interpreter runs a handler right after
    a call returns, the lock's release at the end of a ``with`` block included.
    """

    def __init__(self, release_at: int) -> None:
        self._lock = threading.Lock()
        self.release_at = release_at
        self.releases = 0

    def __enter__(self) -> InterruptedAfterRelease:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        self.releases += 1
        if self.releases == self.release_at:
            raise Interrupt(f"landed after release {self.releases}")


def in_a_thread(call: Callable[[], object]) -> Callable[[], object]:
    """Start ``call`` in a daemon thread; return a function giving its result (10 s at most)."""
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    thread.start()

    def result() -> object:
        thread.join(10)
        assert not thread.is_alive(), "still waiting for an in-process flight that never ends"
        return outcome[0]

    return result


def test_an_interrupt_as_get_or_set_joins_its_flight_leaves_no_flight_to_wait_on() -> None:
    with cache.new(driver="memory") as c:
        # Right after get_or_set has registered its in-process flight for the key.
        c._flights._lock = InterruptedAfterRelease(release_at=1)  # type: ignore[assignment]
        with pytest.raises(Interrupt):
            c.get_or_set("user", "4", lambda: "Di")
        # Later callers for the key load it, instead of waiting for that flight forever.
        assert in_a_thread(lambda: c.get_or_set("user", "4", lambda: "Eve"))() == "Eve"
        assert c.get("user", "4") == "Eve"


def test_an_interrupt_as_a_flight_ends_still_wakes_the_callers_waiting_on_it() -> None:
    with cache.new(driver="memory") as c:
        # Releases: the loading caller's registration, the waiting caller's lookup, then
        # the loading caller's ending of its flight, where the interrupt lands.
        lock = c._flights._lock = InterruptedAfterRelease(release_at=3)  # type: ignore[assignment]
        waiting: list[Callable[[], object]] = []

        def loader() -> str:
            waiting.append(in_a_thread(lambda: c.get_or_set("user", "4", lambda: "Eve")))
            deadline = time.monotonic() + 10
            while lock.releases < 2 and time.monotonic() < deadline:
                time.sleep(0.001)  # until the other caller has found this flight
            return "Di"

        with pytest.raises(Interrupt):
            c.get_or_set("user", "4", loader)
        assert waiting[0]() == "Di"  # woken with the flight's value
        assert c.get("user", "4") == "Di"


class SetWithoutWaking(threading.Event):
    """An event whose ``set`` is interrupted after its flag is up, before it wakes anyone.

    As a signal handler's exception can interrupt ``Event.set``: between the flag and
    the notification of the threads already waiting, which then sleep on.
    """

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        return super().wait(timeout)

    def set(self) -> None:
        with self._cond:  # type: ignore[attr-defined]
            self._flag = True  # type: ignore[attr-defined]
        raise Interrupt("landed inside Event.set")


def test_an_interrupt_inside_a_flights_wakeup_leaves_no_caller_asleep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pevensie_cache import primitives

    events: list[SetWithoutWaking] = []

    class _InterruptedRun(primitives._Run):
        __slots__ = ()

        def __init__(self) -> None:
            super().__init__()
            self.done = SetWithoutWaking()
            events.append(self.done)

    monkeypatch.setattr(primitives, "_Run", _InterruptedRun)
    with cache.new(driver="memory") as c:
        waiting: list[Callable[[], object]] = []

        def loader() -> str:
            waiting.append(in_a_thread(lambda: c.get_or_set("user", "4", lambda: "Eve")))
            deadline = time.monotonic() + 10
            while events[0].waits == 0 and time.monotonic() < deadline:
                time.sleep(0.001)  # until the other caller waits on this flight
            time.sleep(0.05)  # and is asleep in it
            return "Di"

        with pytest.raises(Interrupt):
            c.get_or_set("user", "4", loader)
        assert events[0].waits > 0
        assert waiting[0]() == "Di"  # not asleep for good: the flight's value


# -- the lifecycle: an interrupt anywhere leaves the cache connected, or closed -----------


def test_an_interrupt_as_with_connects_leaves_the_cache_disconnected() -> None:
    c = cache.new(driver="memory")
    with interrupt_after_release(c), pytest.raises(Interrupt), c:  # as connect() unlocks
        pytest.fail("the block ran although entering it was interrupted")
    assert not c.connected  # the block that opened it will not close it: enter did
    with c:
        c.set("user", "1", "Ada")
    assert not c.connected


async def test_an_interrupt_as_async_with_connects_leaves_the_cache_disconnected() -> None:
    c = cache.new_async(driver="memory")
    with interrupt_after_release(c), pytest.raises(Interrupt):
        async with c:
            pytest.fail("the block ran although entering it was interrupted")
    assert not c.connected
    async with c:
        await c.set("user", "1", "Ada")
    assert not c.connected


def test_an_interrupt_as_disconnect_ends_the_refreshes_still_closes_the_driver() -> None:
    c = cache.new(driver="memory").connect()
    c.set("user", "1", "Ada")
    with interrupt_after(c._fresh.background, "close"), pytest.raises(Interrupt):
        c.disconnect()
    assert not c.connected
    assert c.driver.get("user", "1") is None  # the driver disconnected: its memory released
    c.connect()
    c.disconnect()


async def test_a_cancellation_as_disconnect_ends_the_refreshes_still_closes_the_driver() -> None:
    c = await cache.new_async(driver="memory").connect()
    await c.set("user", "1", "Ada")
    closing = stall_after(c._fresh.background, "close")  # refreshes ended, caller waits
    disconnecting = asyncio.create_task(c.disconnect())
    await closing.wait()
    disconnecting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await disconnecting
    assert not c.connected
    assert await c.driver.get("user", "1") is None
    await c.connect()
    await c.disconnect()


def test_an_interrupt_as_a_background_refresh_is_queued_leaves_its_key_free_once_it_ends() -> None:
    from pevensie_cache.primitives import Background

    background = Background()
    # Right after start() has queued the run and released its lock.
    background._lock = InterruptedAfterRelease(release_at=1)  # type: ignore[assignment]
    ran = threading.Event()
    try:
        with pytest.raises(Interrupt):
            background.start("user:4", ran.set)
        assert ran.wait(10)
        deadline = time.monotonic() + 10
        while background.running() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert background.running() == 0  # the run ended: nothing marks its key any more
        refreshed = threading.Event()
        assert background.start("user:4", refreshed.set)  # the next refresh is queued
        assert refreshed.wait(10)
    finally:
        background.close()


def test_an_interrupt_as_background_refreshes_close_leaves_no_key_marked() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from pevensie_cache.primitives import Background

    background = Background(threads=1)
    running, release = threading.Event(), threading.Event()

    def blocked() -> None:
        running.set()
        release.wait(10)

    assert background.start("user:1", blocked)
    assert running.wait(10)
    for key in ("user:2", "user:3", "user:4"):  # queued behind it
        assert background.start(key, lambda: None)
    pool = background._pool
    assert pool is not None

    def interrupted_shutdown(wait: bool = True, *, cancel_futures: bool = False) -> None:
        # The queued runs are dropped; the wait for the running one is interrupted.
        ThreadPoolExecutor.shutdown(pool, wait=False, cancel_futures=cancel_futures)
        raise Interrupt("landed while close() waited for the running refresh")

    pool.shutdown = interrupted_shutdown  # type: ignore[method-assign]
    with pytest.raises(Interrupt):
        background.close()
    release.set()
    deadline = time.monotonic() + 10
    while background.running() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert background.running() == 0  # no dropped run's mark is left behind
    refreshed = threading.Event()
    assert background.start("user:3", refreshed.set)  # a later refresh of the key is queued
    assert refreshed.wait(10)
    background.close()


class JoiningThread(threading.Thread):
    """A thread calling ``get_or_set("user", "4", ...)`` whose ``joined`` is set once it
    has found the load under way (its run of the in-process flight, seen by a tracer)."""

    def __init__(self, c: PevensieCache) -> None:
        super().__init__(daemon=True)
        self.c = c
        self.joined = threading.Event()
        self.outcome: object = None

    def run(self) -> None:
        from pevensie_cache.primitives import SingleFlight

        flight = SingleFlight.run.__code__

        def note_the_join(frame: FrameType, event: str, arg: object) -> object:
            if event == "line" and frame.f_locals.get("running") is not None:
                self.joined.set()
            return note_the_join

        sys.settrace(lambda frame, *_: note_the_join if frame.f_code is flight else None)
        try:
            self.outcome = self.c.get_or_set("user", "4", lambda: "Eve")
        except BaseException as exc:
            self.outcome = exc
        finally:
            sys.settrace(None)


@pytest.mark.parametrize("interrupt", ["KeyboardInterrupt", "signal handler"])
def test_an_interrupt_of_the_loading_thread_is_not_raised_in_the_threads_waiting_for_it(
    interrupt: str,
) -> None:
    """Ctrl-C, a gevent.Timeout, a handler's exception: meant for the loading thread alone.

    The threads waiting for its load were not interrupted: they load the value
    themselves (one of them), as tasks do when the loading task is cancelled.
    """
    with cache.new(driver="memory") as c:
        waiter = JoiningThread(c)
        previous = signal.signal(signal.SIGALRM, _raise_interrupt)
        try:

            def interrupted() -> str:
                waiter.start()
                waiter.joined.wait()  # the other thread waits for this load now
                if interrupt == "KeyboardInterrupt":
                    raise KeyboardInterrupt
                signal.raise_signal(signal.SIGALRM)  # its handler raises Interrupt here
                return "Di"

            expected = KeyboardInterrupt if interrupt == "KeyboardInterrupt" else Interrupt
            with pytest.raises(expected):
                c.get_or_set("user", "4", interrupted)
        finally:
            signal.signal(signal.SIGALRM, previous)
        waiter.join(10)
        assert waiter.outcome == "Eve"
        assert c.get("user", "4") == "Eve"


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupt("meant for the thread that was loading")


async def test_an_interrupt_of_the_loading_task_is_not_raised_in_the_tasks_waiting_for_it() -> None:
    async with cache.new_async(driver="memory") as c:
        waiters: list[asyncio.Task[str]] = []
        previous = signal.signal(signal.SIGALRM, _raise_interrupt)
        try:

            async def interrupted() -> str:
                waiters.append(asyncio.create_task(c.get_or_set("user", "4", lambda: "Eve")))
                await asyncio.sleep(0)  # the other task misses, and waits for this load
                signal.raise_signal(signal.SIGALRM)  # its handler raises Interrupt here
                return "Di"

            with pytest.raises(Interrupt):
                await c.get_or_set("user", "4", interrupted)
        finally:
            signal.signal(signal.SIGALRM, previous)
        assert await waiters[0] == "Eve"
        assert await c.get("user", "4") == "Eve"
