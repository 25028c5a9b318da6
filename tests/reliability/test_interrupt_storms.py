"""Interrupt storms: exceptions raised into cache calls from outside, thousands of times.

gevent applications wrap calls in ``gevent.Timeout``, Celery raises
``SoftTimeLimitExceeded`` from a signal handler, Ctrl-C raises
``KeyboardInterrupt``: each lands in the middle of a call. Whatever the call
was doing (waiting for its reply, reading replies for others, writing), the
caller gets the exception raised into it, unchanged; no call waits past its
timeout; no call ever returns another key's value; and once the storm is over
the same cache answers every key correctly.

Each storm runs in a process of its own (gevent must patch the standard
library before anything else imports it; a signal storm must not reach the
test runner). The signal storms call the driver directly: the facade's own
handling of foreign exceptions is the facade's business.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from reliability_support import hang_bound

from pevensie_redis.testing import RedisServer

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")

TIMEOUT_MS = 500
RETRIES = 1
STORM_TIMEOUTS = (0.002, 0.0005, 0.0)
"""The timeouts of the storms' calls, in turn: mid-flight, early, and at the first wait.

With 2 ms alone, a quiet machine answered every call in time now and then, and a
storm then interrupted nothing; one call in three with no time at all always is.
"""

_COMMON = """
import json, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
KEYS = [f"k{i}" for i in range(64)]

def expected(key):
    return "value of " + key

def report(**fields):
    print(json.dumps(fields), flush=True)
"""

_GEVENT = """
from gevent import monkey

monkey.patch_all()

import gevent
from pevensie_cache import cache
from pevensie_redis import RedisDriverError
{common}
c = cache.new(
    driver="redis", host=host, port=port, pool_size=4, timeout={timeout_ms}, retries={retries}
).connect()
for key in KEYS:
    c.set("storm", key, expected(key))
counts = {{"ok": 0, "timeout": 0, "driver error": 0}}
wrong, foreign, slowest = [], [], [0.0]
end = time.monotonic() + seconds

def worker(n):
    i = n
    while time.monotonic() < end:
        key = KEYS[i % len(KEYS)]
        i += 7
        started = time.monotonic()
        try:
            with gevent.Timeout({storm_timeouts}[i % 3]):
                value = c.get("storm", key)
            if value != expected(key):
                wrong.append(f"{{key}}: {{value!r}}")
            counts["ok"] += 1
        except gevent.Timeout:
            counts["timeout"] += 1
        except RedisDriverError:
            counts["driver error"] += 1
        except BaseException as exc:
            foreign.append(repr(exc))
        slowest[0] = max(slowest[0], time.monotonic() - started)

gevent.joinall([gevent.spawn(worker, n) for n in range(20)])
after_started = time.monotonic()
after = {{key: c.get("storm", key) for key in KEYS}}
after_took = time.monotonic() - after_started
c.disconnect()
report(
    counts=counts,
    wrong=wrong,
    foreign=foreign,
    slowest=slowest[0],
    after_wrong=[key for key in KEYS if after[key] != expected(key)],
    after_took=after_took,
)
"""

_SIGNALS_SYNC = """
import signal
from pevensie_cache import cache
from pevensie_redis import RedisDriverError
{common}

class Stop(Exception):
    pass

armed = False

def handler(signum, frame):
    global armed
    if armed:  # raised into a cache call only, and once per call
        armed = False
        raise Stop()

c = cache.new(
    driver="redis", host=host, port=port, pool_size=4, timeout={timeout_ms}, retries={retries}
).connect()
for key in KEYS:
    c.set("storm", key, expected(key))
driver = c.driver
counts = {{"ok": 0, "stop": 0, "driver error": 0}}
wrong, foreign, slowest = [], [], 0.0
signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0007, 0.0007)
end = time.monotonic() + seconds
i = 0
while time.monotonic() < end:
    key = KEYS[i % len(KEYS)]
    i += 1
    started = time.monotonic()
    try:
        try:
            armed = True
            value = driver.get("storm", key)
        finally:
            armed = False  # first thing: no exception is raised outside a call
        if value != expected(key):
            wrong.append(f"{{key}}: {{value!r}}")
        counts["ok"] += 1
    except Stop:
        counts["stop"] += 1
    except RedisDriverError:
        counts["driver error"] += 1
    except BaseException as exc:
        foreign.append(repr(exc))
    slowest = max(slowest, time.monotonic() - started)
signal.setitimer(signal.ITIMER_REAL, 0, 0)
armed = False
after_started = time.monotonic()
after = {{key: driver.get("storm", key) for key in KEYS}}
after_took = time.monotonic() - after_started
c.disconnect()
report(
    counts=counts,
    wrong=wrong,
    foreign=foreign,
    slowest=slowest,
    after_wrong=[key for key in KEYS if after[key] != expected(key)],
    after_took=after_took,
)
"""

_SIGNALS_ASYNC = """
import asyncio, signal
from pevensie_cache import cache
from pevensie_redis import RedisDriverError
{common}

class Stop(Exception):
    pass

armed = set()

def handler(signum, frame):
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return
    if task is not None and task in armed:  # raised into a cache call's own step only
        armed.discard(task)
        raise Stop()

async def main():
    c = await cache.new_async(
        driver="redis", host=host, port=port, pool_size=4, timeout={timeout_ms}, retries={retries}
    ).connect()
    for key in KEYS:
        await c.set("storm", key, expected(key))
    driver = c.driver
    counts = {{"ok": 0, "stop": 0, "driver error": 0}}
    wrong, foreign, slowest = [], [], [0.0]
    end = time.monotonic() + seconds

    async def worker(n):
        i = n
        me = asyncio.current_task()
        while time.monotonic() < end:
            key = KEYS[i % len(KEYS)]
            i += 7
            started = time.monotonic()
            try:
                try:
                    armed.add(me)
                    value = await driver.get("storm", key)
                finally:
                    armed.discard(me)  # first thing: no exception is raised outside a call
                if value != expected(key):
                    wrong.append(f"{{key}}: {{value!r}}")
                counts["ok"] += 1
            except Stop:
                counts["stop"] += 1
            except RedisDriverError:
                # Among them: a signal handler's exception raised inside asyncio's own
                # transport.write, which asyncio takes for a fatal write error (it logs
                # it and closes the connection): the call then fails as a connection error.
                counts["driver error"] += 1
            except BaseException as exc:
                foreign.append(repr(exc))
            slowest[0] = max(slowest[0], time.monotonic() - started)
            await asyncio.sleep(0)

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.0007, 0.0007)
    try:
        await asyncio.gather(*(worker(n) for n in range(20)))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        armed.clear()
    after_started = time.monotonic()
    after = {{key: await driver.get("storm", key) for key in KEYS}}
    after_took = time.monotonic() - after_started
    await c.disconnect()
    report(
        counts=counts,
        wrong=wrong,
        foreign=foreign,
        slowest=slowest[0],
        after_wrong=[key for key in KEYS if after[key] != expected(key)],
        after_took=after_took,
    )

asyncio.run(main())
"""


def run_storm(script: str, server: RedisServer, seconds: float) -> dict[str, Any]:
    source = textwrap.dedent(script).format(
        common=_COMMON, timeout_ms=TIMEOUT_MS, retries=RETRIES, storm_timeouts=STORM_TIMEOUTS
    )
    done = subprocess.run(
        [sys.executable, "-c", source, server.host, str(server.port), str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n{result['counts']}; slowest call {result['slowest']:.3f} s")
    return result


def check(result: dict[str, Any], interrupts: str) -> None:
    counts = result["counts"]
    # The exception raised into a call, and nothing else; never another key's value.
    assert result["foreign"] == [], result
    assert result["wrong"] == [], result
    assert counts[interrupts] > 0, result  # the storm did interrupt calls
    assert result["slowest"] < hang_bound(TIMEOUT_MS, RETRIES), result  # none past its bound
    assert result["after_wrong"] == [], result  # the same cache answers every key correctly
    assert result["after_took"] < hang_bound(TIMEOUT_MS, RETRIES) * len(counts), result


def test_a_gevent_timeout_storm_on_a_small_pool_leaves_the_cache_answering_correctly(
    private_server: RedisServer,
) -> None:
    """20 greenlets on a pool of 4, each ``get`` wrapped in a ``gevent.Timeout``, for 3 s."""
    pytest.importorskip("gevent")
    check(run_storm(_GEVENT, private_server, 3.0), "timeout")


def test_a_signal_handlers_exception_storm_reaches_each_sync_caller_unchanged(
    private_server: RedisServer,
) -> None:
    """A ``SIGALRM`` handler raises an ordinary exception into ``get``s every 0.7 ms, for 4 s."""
    check(run_storm(_SIGNALS_SYNC, private_server, 4.0), "stop")


def test_a_signal_handlers_exception_storm_reaches_each_async_caller_unchanged(
    private_server: RedisServer,
) -> None:
    """The same storm raised into the steps of 20 tasks' ``get``s on a pool of 4, for 4 s."""
    check(run_storm(_SIGNALS_ASYNC, private_server, 4.0), "stop")


async def test_an_asyncio_timeout_storm_on_a_small_pool_leaves_the_cache_answering_correctly(
    private_server: RedisServer,
) -> None:
    """The gevent storm's async twin: each ``get`` wrapped in ``asyncio.timeout``."""
    import asyncio
    import time

    from reliability_support import connect_async_cache

    from pevensie_redis import RedisDriverError

    c = await connect_async_cache(private_server, pool_size=4, retries=RETRIES)
    keys = [f"k{i}" for i in range(64)]
    for key in keys:
        await c.set("storm", key, "value of " + key)
    counts = {"ok": 0, "timeout": 0, "driver error": 0}
    wrong: list[str] = []
    slowest = 0.0
    end = time.monotonic() + 3.0

    async def worker(n: int) -> None:
        nonlocal slowest
        i = n
        while time.monotonic() < end:
            key = keys[i % len(keys)]
            i += 7
            started = time.monotonic()
            try:
                async with asyncio.timeout(STORM_TIMEOUTS[i % 3]):
                    value = await c.get("storm", key)
                if value != "value of " + key:
                    wrong.append(f"{key}: {value!r}")
                counts["ok"] += 1
            except TimeoutError:
                counts["timeout"] += 1
            except RedisDriverError:
                counts["driver error"] += 1
            slowest = max(slowest, time.monotonic() - started)

    try:
        await asyncio.gather(*(worker(n) for n in range(20)))
        print(f"\n{counts}; slowest call {slowest:.3f} s")
        assert wrong == []
        assert counts["timeout"] > 0
        assert slowest < hang_bound(TIMEOUT_MS, RETRIES)
        for key in keys:
            assert await c.get("storm", key) == "value of " + key
    finally:
        await c.disconnect()
