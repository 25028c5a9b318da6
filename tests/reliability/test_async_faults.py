"""The async face when the server dies, stalls, drops connections or refuses credentials.

The twin of ``test_server_faults.py`` and ``test_pool.py`` for
``AsyncPevensieCache``: each test runs against a server of its own and checks
the typed error a task gets, that the await never outlasts the configured
bound, and that the same cache object recovers on its own. The async face has
no pool wait (the commands of concurrent tasks share multiplexed
connections), so "pool exhaustion" becomes: many tasks on a stalled server all
get their error within the bound, and no more than ``pool_size`` connections
are ever open. Also here: a cache used from another event loop, and a
sync-only third-party driver under ``cache.new_async``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from reliability_support import (
    FAST_TIMEOUT_MS,
    MARGIN_S,
    ServerFactory,
    backoff_total,
    chain_text,
    connect_async_cache,
    hang_bound,
    named_clients,
    unique_client_name,
)

from pevensie_cache import AsyncPevensieCache, WrongEventLoop, cache
from pevensie_cache.threaded import ThreadedAsyncDriver
from pevensie_redis import (
    AsyncRedisDriver,
    RedisAuthenticationError,
    RedisConnectionError,
    RedisTimeoutError,
)
from pevensie_redis.channel_async import Channel
from pevensie_redis.testing import RedisServer
from pevensie_redis.testing.binaries import wait_until_ready

pytestmark = pytest.mark.asyncio

AsyncOperation = Callable[[AsyncPevensieCache], Awaitable[Any]]

OPERATIONS: dict[str, AsyncOperation] = {
    "get": lambda c: c.get("user", "1"),
    "set": lambda c: c.set("user", "1", "Ada"),
    "set_ttl": lambda c: c.set("user", "1", "Ada", ttl_seconds=60),
    "delete": lambda c: c.delete("user", "1"),
    "get_many": lambda c: c.get_many("user", ["1", "2"]),
    "set_many": lambda c: c.set_many("user", {"1": "a", "2": "b"}),
    "set_many_ttl": lambda c: c.set_many("user", {"1": "a", "2": "b"}, ttl_seconds=60),
    "delete_many": lambda c: c.delete_many("user", ["1", "2"]),
}

HUNG_AFTER_S = 30.0
"""A call still running after this long hangs: the test fails instead of hanging too."""


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[BaseException | None, float]:
    """Await ``call()``; return the exception it raised (or None) and the seconds it took."""
    start = time.monotonic()
    try:
        await asyncio.wait_for(call(), HUNG_AFTER_S)
    except Exception as exc:
        return exc, time.monotonic() - start
    return None, time.monotonic() - start


def channel_of(c: AsyncPevensieCache) -> Channel:
    driver = c.driver
    assert isinstance(driver, AsyncRedisDriver)
    channel = driver._channel
    assert isinstance(channel, Channel)
    return channel


@pytest_asyncio.fixture
async def cache_on(
    private_server: RedisServer,
) -> AsyncIterator[Callable[..., Awaitable[AsyncPevensieCache]]]:
    """Build connected async caches on the private server; disconnect them at teardown."""
    opened: list[AsyncPevensieCache] = []

    async def build(**fields: Any) -> AsyncPevensieCache:
        built = await connect_async_cache(private_server, **fields)
        opened.append(built)
        return built

    yield build
    for each in opened:
        if each.connected:
            await each.disconnect()


def in_thread_after(seconds: float, action: Callable[[], None]) -> Awaitable[None]:
    """Run ``action`` in a worker thread after ``seconds``; await the result to join it."""

    def run() -> None:
        time.sleep(seconds)
        action()

    return asyncio.ensure_future(asyncio.to_thread(run))


# -- the server is killed -----------------------------------------------------------


@pytest.mark.parametrize("retries", [0, 1, 2])
async def test_killed_server_gives_connection_error_then_the_same_async_cache_recovers(
    private_server: RedisServer,
    cache_on: Callable[..., Awaitable[AsyncPevensieCache]],
    retries: int,
) -> None:
    timeout_ms = 500
    c = await cache_on(timeout=timeout_ms, retries=retries)
    await c.set("user", "1", "before the crash")

    private_server.kill()
    times: dict[str, float] = {}
    for name, operation in OPERATIONS.items():
        error, times[name] = await timed(lambda operation=operation: operation(c))
        assert isinstance(error, RedisConnectionError), (name, error)
        assert times[name] >= backoff_total(retries) * 0.9, (name, times[name])  # retried
        assert times[name] < hang_bound(timeout_ms, retries), (name, times[name])
    print(
        f"killed, retries={retries}: "
        + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in times.items())
    )
    assert c.connected

    private_server.restart()  # same address, empty data set
    # The first call reconnects within its 500 ms; a machine at load 20 once took longer
    # than that to let the fresh server accept. A timeout may repeat for a few seconds,
    # a connection error may not: the server is back.
    deadline = time.monotonic() + 10
    while True:
        try:
            await c.set("user", "1", "reconnected")
            break
        except RedisTimeoutError:
            assert time.monotonic() < deadline, "no call got through for 10 s after the restart"
    for name, operation in OPERATIONS.items():
        if name != "get":
            await operation(c)  # every operation works again, no reconnect call
    await c.set("user", "1", "after the restart")
    assert await c.get("user", "1") == "after the restart"


async def test_async_reconnect_is_retried_with_backoff_until_the_server_is_back(
    private_server: RedisServer, cache_on: Callable[..., Awaitable[AsyncPevensieCache]]
) -> None:
    without = await cache_on(retries=0)
    with_retries = await cache_on(retries=30)  # backoff up to 0.512 s each: a window of ~14 s
    await without.set("user", "1", "x")
    await with_retries.set("user", "1", "x")

    private_server.kill()
    error, _ = await timed(lambda: without.get("user", "1"))
    assert isinstance(error, RedisConnectionError)

    restarter = in_thread_after(0.3, private_server.restart)
    try:
        await with_retries.set("user", "2", "written once the server was back")
    finally:
        await restarter
    assert await with_retries.get("user", "2") == "written once the server was back"
    with private_server.client() as raw:
        assert raw.get("user:2") == "written once the server was back"


# -- the server is paused ------------------------------------------------------------


@pytest.mark.parametrize("retries", [0, 1, 2])
async def test_paused_server_gives_async_timeout_error_within_timeout_times_attempts(
    private_server: RedisServer,
    cache_on: Callable[..., Awaitable[AsyncPevensieCache]],
    retries: int,
) -> None:
    timeout_ms = 500
    c = await cache_on(timeout=timeout_ms, retries=retries)
    await c.set("user", "1", "before the pause")

    private_server.pause()
    times: dict[str, float] = {}
    try:
        for name in ("get", "set_ttl", "get_many", "set_many_ttl"):
            error, times[name] = await timed(lambda name=name: OPERATIONS[name](c))
            assert isinstance(error, RedisTimeoutError), (name, error)
            # Every attempt waited the full timeout (so the retries happened) ...
            assert times[name] >= timeout_ms / 1000 * (retries + 1) * 0.95, (name, times[name])
            # ... and the call never hangs past the bound.
            assert times[name] < hang_bound(timeout_ms, retries), (name, times[name])
    finally:
        private_server.resume()
    print(f"paused, retries={retries}: " + ", ".join(f"{k} {v:.3f} s" for k, v in times.items()))
    # A write that timed out may still be applied once the server resumes (its bytes
    # were in the server's socket buffer): only "it works again" is certain.
    await c.get("user", "1")
    await c.set("user", "1", "after the pause")
    assert await c.get("user", "1") == "after the pause"


async def test_an_async_timed_out_command_is_retried_and_succeeds_once_the_server_answers(
    private_server: RedisServer, cache_on: Callable[..., Awaitable[AsyncPevensieCache]]
) -> None:
    timeout_ms = 300
    without = await cache_on(timeout=timeout_ms, retries=0)
    with_retries = await cache_on(timeout=timeout_ms, retries=3)
    await without.set("user", "1", "stored")

    private_server.pause()
    resumer: Awaitable[None] | None = None
    try:
        error, _ = await timed(lambda: without.get("user", "1"))
        assert isinstance(error, RedisTimeoutError)
        # Resumed once the next call's first try has timed out, however loaded the machine.
        resumer = in_thread_after(timeout_ms / 1000 * 1.5, private_server.resume)
        start = time.monotonic()
        assert await with_retries.get("user", "1") == "stored"
        assert time.monotonic() - start >= timeout_ms / 1000 * 0.95  # the first try timed out
    finally:
        if resumer is not None:
            await resumer
        private_server.resume()


@pytest.mark.parametrize("retries", [1, 2])
async def test_paused_server_with_a_full_accept_queue_fails_async_calls_within_the_bound(
    pevensie_redis_server_factory: ServerFactory, retries: int
) -> None:
    """Reconnects hang in connect() too (the kernel drops SYNs): one timeout per attempt."""
    server = pevensie_redis_server_factory(["--tcp-backlog", "1"])
    timeout_ms = 300
    c = await connect_async_cache(server, timeout=timeout_ms, retries=retries)
    fillers: list[socket.socket] = []
    try:
        await c.set("user", "1", "Ada")
        server.pause()
        for _ in range(8):  # fill the accept queue of the stalled server
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((server.host, server.port))
            fillers.append(filler)
        # The fillers' handshakes land in (or are dropped by) the one-slot accept queue:
        # loopback takes microseconds; no event says when, so a short pause.
        await asyncio.sleep(0.1)
        error, elapsed = await timed(lambda: c.get("user", "1"))
        assert isinstance(error, RedisTimeoutError), error
        assert elapsed < hang_bound(timeout_ms, retries)  # one timeout per attempt
    finally:
        server.resume()
        for filler in fillers:
            filler.close()
    assert await c.get("user", "1") == "Ada"
    await c.disconnect()


@pytest.mark.parametrize("full_queue", [False, True], ids=["paused", "paused-full-queue"])
async def test_async_connect_to_a_server_that_never_answers_times_out_within_one_timeout(
    pevensie_redis_server_factory: ServerFactory, full_queue: bool
) -> None:
    server = pevensie_redis_server_factory(["--tcp-backlog", "1"])
    timeout_ms = 400
    fillers: list[socket.socket] = []
    c = cache.new_async(
        driver="redis", host=server.host, port=server.port, timeout=timeout_ms, retries=3
    )
    server.pause()
    try:
        if full_queue:
            for _ in range(8):
                filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect((server.host, server.port))
                fillers.append(filler)
            await asyncio.sleep(0.1)  # the fillers' handshakes reach the accept queue (as above)
        error, elapsed = await timed(c.connect)
    finally:
        server.resume()
        for filler in fillers:
            filler.close()
    assert isinstance(error, RedisTimeoutError), error
    assert elapsed < timeout_ms / 1000 + MARGIN_S  # one timeout, retries or not
    assert not c.connected
    # Just after SIGCONT the accept queue may still be full and drop a SYN (retried
    # by the kernel after 1 s, longer than the timeout): wait until the server answers.
    await asyncio.to_thread(wait_until_ready, server.host, server.port, timeout=10)
    await c.connect()  # the server answers again: the same cache connects
    try:
        await c.set("user", "1", "connected after all")
        assert await c.get("user", "1") == "connected after all"
    finally:
        await c.disconnect()


# -- many tasks on a stalled server: no pool wait, but bounded ----------------------------


@pytest.mark.parametrize("retries", [0, 1, 2])
async def test_a_stalled_server_fails_every_one_of_64_concurrent_tasks_within_the_bound(
    private_server: RedisServer, retries: int
) -> None:
    pool_size = 4
    timeout_ms = 500
    name = unique_client_name("stalled-many")
    c = await connect_async_cache(
        private_server, pool_size=pool_size, timeout=timeout_ms, retries=retries, client_name=name
    )
    await c.set("user", "1", "Ada")
    channel = channel_of(c)
    names = list(OPERATIONS)
    samples: list[int] = []
    done = asyncio.Event()
    stalled = 0.0  # time the loop was not given a CPU (load), which no timer can beat

    async def sample() -> None:
        nonlocal stalled
        while not done.is_set():
            samples.append(len(channel.pipes))
            before = time.monotonic()
            await asyncio.sleep(0.005)
            late = time.monotonic() - before - 0.005
            if late > 0.02:  # a stall, not a timer's usual overshoot
                stalled += late

    private_server.pause()
    try:
        sampler = asyncio.create_task(sample())
        outcomes = await asyncio.gather(
            *(
                timed(lambda n=n: OPERATIONS[names[n % len(names)]](c))  # type: ignore[misc]
                for n in range(64)
            )
        )
        done.set()
        await sampler
    finally:
        private_server.resume()
    bound = hang_bound(timeout_ms, retries) + stalled
    try:
        for n, (error, elapsed) in enumerate(outcomes):
            assert isinstance(error, RedisTimeoutError), (names[n % len(names)], error)
            assert elapsed < bound, (names[n % len(names)], elapsed, stalled)
        slowest = max(elapsed for _, elapsed in outcomes)
        print(
            f"64 tasks on a paused server, retries={retries}: slowest {slowest:.3f} s "
            f"(the loop stalled {stalled:.3f} s)"
        )
        assert len(samples) > 10
        assert max(samples) <= pool_size
        # The same cache works once the server answers, within pool_size connections.
        # The resumed server first works through what queued up while it was paused;
        # on a loaded machine, with retries=0, a call may still time out meanwhile. So
        # this polls: it ends at the first round of 64 sets that all succeed (at once on
        # a quiet machine); 5 s only bounds a cache that never recovers.
        recover_by = time.monotonic() + 5
        while True:
            try:
                await asyncio.gather(*(c.set("user", str(n), f"v{n}") for n in range(64)))
                break
            except RedisTimeoutError:
                if time.monotonic() > recover_by:
                    raise
        assert await c.get_many("user", ["5", "63"]) == {"5": "v5", "63": "v63"}
        with private_server.client() as raw:
            settle_by = time.monotonic() + 2
            while len(named_clients(raw, name)) > pool_size and time.monotonic() < settle_by:
                await asyncio.sleep(0.05)  # connections aborted while paused are closing
            assert 1 <= len(named_clients(raw, name)) <= pool_size
    finally:
        await c.disconnect()


# -- the server drops the connections --------------------------------------------------


@pytest.mark.parametrize("retries", [0, 1])
async def test_client_kill_between_two_async_calls_the_next_call_succeeds(
    private_server: RedisServer,
    cache_on: Callable[..., Awaitable[AsyncPevensieCache]],
    retries: int,
) -> None:
    """Dropped connections are replaced: by a retry, or without one once the loop saw the drop.

    The event loop learns that the server closed a connection when it next
    polls the socket. A call sent before that finds out by the closed
    connection and needs a retry (``retries=1``, the call comes at once); a
    call made after it opens a fresh connection first (``retries=0``, the
    call comes once the loop had a moment).
    """
    name = unique_client_name("killed")
    c = await cache_on(retries=retries, client_name=name, pool_size=4)
    channel = channel_of(c)
    await c.set("user", "1", "Ada")
    await c.set_many("user", {"2": "Bob"})
    with private_server.client() as raw:

        async def kill_all() -> None:
            victims = named_clients(raw, name)
            assert victims
            for victim in victims:
                raw.execute_command("CLIENT", "KILL", "ID", victim["id"])
            assert named_clients(raw, name) == []
            if retries == 0:
                noticed_by = time.monotonic() + 2
                while not all(p.closed for p in channel.pipes) and time.monotonic() < noticed_by:
                    await asyncio.sleep(0.01)
                assert all(p.closed for p in channel.pipes)

        await kill_all()
        assert await c.get("user", "1") == "Ada"
        await kill_all()
        assert await c.get_many("user", ["1", "2"]) == {"1": "Ada", "2": "Bob"}
        await kill_all()
        await c.set_many("user", {"3": "Cy"}, ttl_seconds=60)
        assert await c.get("user", "3") == "Cy"


# -- credentials ------------------------------------------------------------------------

SECRET = "Auth-Sentinel-7730"
AUTH_TIMEOUT_MS = 5000
"""The refusal of bad credentials comes at once, so this timeout only bounds a hang. At
1000 ms, a rehearsal on a loaded machine (the test's event loop stalled for over a second)
once saw the connect time out before the refusal was read."""


@pytest.fixture
def auth_server(pevensie_redis_server_factory: ServerFactory) -> RedisServer:
    """A server that wants SECRET for the default user and knows the ACL user ``app``."""
    server = pevensie_redis_server_factory(["--requirepass", SECRET])
    with server.client(password=SECRET) as raw:
        raw.execute_command("ACL", "SETUSER", "app", "on", f">{SECRET}", "~*", "+@all")
    return server


@pytest.mark.parametrize(
    ("username", "password"),
    [
        (None, None),  # NOAUTH: the server wants a password
        (None, SECRET + "-wrong"),
        ("app", SECRET + "-wrong"),
        ("nobody", SECRET),  # unknown user, with a real password
    ],
    ids=["no-password", "wrong-password", "acl-user-wrong-password", "unknown-user"],
)
@pytest.mark.server_dependent
async def test_bad_credentials_fail_async_connect_with_authentication_error_and_no_secret(
    auth_server: RedisServer, username: str | None, password: str | None
) -> None:
    c = cache.new_async(
        driver="redis",
        host=auth_server.host,
        port=auth_server.port,
        username=username,
        password=password,
        timeout=AUTH_TIMEOUT_MS,
    )
    error, elapsed = await timed(c.connect)
    assert isinstance(error, RedisAuthenticationError), error
    assert elapsed < hang_bound(AUTH_TIMEOUT_MS, 0)
    assert not c.connected
    text = chain_text(error)
    assert SECRET not in text
    assert SECRET not in repr(c)
    assert SECRET not in repr(c.driver)


@pytest.mark.server_dependent
async def test_a_server_that_starts_wanting_a_password_fails_every_async_call_with_auth_error(
    private_server: RedisServer, cache_on: Callable[..., Awaitable[AsyncPevensieCache]]
) -> None:
    """NOAUTH on a live cache is an error for every operation: no write succeeds silently."""
    name = unique_client_name("noauth")
    c = await cache_on(client_name=name)
    await c.set("user", "1", "Ada")
    with private_server.client() as raw:
        raw.config_set("requirepass", SECRET)
        try:
            for victim in named_clients(raw, name):
                raw.execute_command("CLIENT", "KILL", "ID", victim["id"])
            await asyncio.sleep(0.05)  # the cache reconnects, without a password
            for operation_name, operation in OPERATIONS.items():
                error, elapsed = await timed(lambda operation=operation: operation(c))
                assert isinstance(error, RedisAuthenticationError), (operation_name, error)
                assert elapsed < hang_bound(FAST_TIMEOUT_MS, 1)
            assert SECRET not in chain_text(error)
            assert raw.mget("user:1", "user:2") == ["Ada", None]  # nothing was written
        finally:
            raw.config_set("requirepass", "")


@pytest.mark.server_dependent
async def test_good_credentials_work_on_the_async_face(auth_server: RedisServer) -> None:
    for username in (None, "app"):
        c = await connect_async_cache(auth_server, username=username, password=SECRET)
        try:
            await c.set("user", "1", "authenticated")
            assert await c.get("user", "1") == "authenticated"
        finally:
            await c.disconnect()


# -- another event loop -------------------------------------------------------------------


def run_in_another_loop(c: AsyncPevensieCache) -> dict[str, tuple[BaseException | None, float]]:
    """In a new thread with its own event loop, try every operation on ``c``; return outcomes."""
    outcomes: dict[str, tuple[BaseException | None, float]] = {}

    async def use() -> None:
        for name, operation in OPERATIONS.items():
            outcomes[name] = await timed(lambda operation=operation: operation(c))

    thread = threading.Thread(target=lambda: asyncio.run(use()), daemon=True)
    thread.start()
    thread.join(timeout=HUNG_AFTER_S * len(OPERATIONS))
    assert not thread.is_alive(), "the other event loop hangs"
    return outcomes


async def test_a_cache_used_from_another_event_loop_raises_wrong_event_loop_at_once(
    private_server: RedisServer, cache_on: Callable[..., Awaitable[AsyncPevensieCache]]
) -> None:
    c = await cache_on(timeout=5_000)
    await c.set("user", "1", "Ada")
    # This loop keeps running meanwhile (the other thread is awaited, not joined here).
    outcomes = await asyncio.to_thread(run_in_another_loop, c)
    assert set(outcomes) == set(OPERATIONS)
    for name, (error, elapsed) in outcomes.items():
        assert isinstance(error, WrongEventLoop), (name, error)
        assert "event loop" in str(error)
        assert elapsed < 0.5, (name, elapsed)  # at once, not after a timeout
    assert await c.get("user", "1") == "Ada"  # the cache still works in its own loop


async def test_a_cache_connected_in_a_finished_event_loop_raises_wrong_event_loop(
    private_server: RedisServer,
) -> None:
    """The usual mistake: ``asyncio.run(c.connect())``, then the cache used in another run."""
    c = cache.new_async(driver="redis", host=private_server.host, port=private_server.port)
    await asyncio.to_thread(asyncio.run, c.connect())  # type: ignore[arg-type]
    assert c.connected
    for name, operation in OPERATIONS.items():
        error, elapsed = await timed(lambda operation=operation: operation(c))
        assert isinstance(error, WrongEventLoop), (name, error)
        assert elapsed < 0.5, (name, elapsed)
    await c.disconnect()  # releases the cache; its connections died with their loop
    assert not c.connected


async def test_a_cache_whose_lock_waiters_waited_in_a_finished_event_loop_disconnects_quietly(
    private_server: RedisServer,
) -> None:
    """As above, once a lease waiter has started the lock-release subscriber in that loop."""
    c = cache.new_async(driver="redis", host=private_server.host, port=private_server.port)

    async def connect_and_wait_for_a_lease() -> None:
        await c.connect()
        assert await c.acquire_lock("page", "home", "elsewhere", 0.2)
        # A waiter: it subscribes to the lock releases, then takes the expired lease.
        assert await c.get_or_set("page", "home", lambda: "loaded", lock=True) == "loaded"

    await asyncio.to_thread(asyncio.run, connect_and_wait_for_a_lease())  # type: ignore[arg-type]
    error, _ = await timed(lambda: c.get("page", "home"))
    assert isinstance(error, WrongEventLoop), error
    error, _ = await timed(c.disconnect)
    # It raised DriverError, from the subscriber's task: "Event loop is closed".
    assert error is None, (error, getattr(error, "__cause__", None))
    assert not c.connected


async def test_a_cache_disconnected_from_another_live_event_loop_closes_its_connections(
    private_server: RedisServer,
) -> None:
    name = unique_client_name("foreign-disconnect")
    c = await connect_async_cache(private_server, client_name=name)
    await c.set("user", "1", "Ada")
    assert await c.acquire_lock("user", "2", "elsewhere", 0.2)
    # A lease waiter starts the lock-release subscriber: its connection is closed too.
    assert await c.get_or_set("user", "2", lambda: "Bo", lock=True) == "Bo"
    await asyncio.to_thread(asyncio.run, c.disconnect())  # type: ignore[arg-type]
    assert not c.connected
    with private_server.client() as raw:
        closed_by = time.monotonic() + 2
        while named_clients(raw, name) and time.monotonic() < closed_by:
            await asyncio.sleep(0.01)  # this loop closes them
        assert named_clients(raw, name) == []


# -- a driver without a native async face ----------------------------------------------------


async def test_a_sync_only_plugin_driver_works_through_new_async_in_worker_threads() -> None:
    by_url = cache.from_url_async("echo://anything")
    by_name = cache.new_async(driver="dupe-only")  # the same sync driver class, by name
    loop_thread = threading.get_ident()
    for c in (by_url, by_name):
        driver = c.driver
        assert isinstance(driver, ThreadedAsyncDriver)
        assert type(driver.sync_driver).__module__ == "pevensie_test_echo.driver"
        threads: set[int] = set()
        sync_get = driver.sync_driver.get

        def get_in_thread(
            resource_type: str, key: str, sync_get: Any = sync_get, threads: set[int] = threads
        ) -> Any:
            threads.add(threading.get_ident())
            return sync_get(resource_type, key)

        driver.sync_driver.get = get_in_thread  # type: ignore[method-assign]
        async with c:
            await c.set("user", "1", "Ada", ttl_seconds=60)
            assert await c.get("user", "1") == "Ada"
            await asyncio.gather(*(c.set("user", str(n), f"v{n}") for n in range(20)))
            values = await asyncio.gather(*(c.get("user", str(n)) for n in range(20)))
            assert values == [f"v{n}" for n in range(20)]
            await c.set_many("user", {"a": "1", "b": "2"})
            assert await c.get_many("user", ["a", "b", "absent"]) == {"a": "1", "b": "2"}
            await c.delete_many("user", ["a", "b"])
            assert await c.get("user", "a", default=None) is None
            await c.delete("user", "1")
            assert await c.get("user", "1", default="gone") == "gone"
        assert not c.connected
        assert threads
        assert loop_thread not in threads  # the event loop's thread never ran a sync call


async def test_drivers_report_which_are_natively_async() -> None:
    native = {}
    for info in cache.drivers():
        if info.distribution in ("pevensie-cache", "pevensie-redis", "pevensie-test-echo"):
            native[info.name] = info.native_async
    assert native == {"memory": True, "redis": True, "echo": False}
    assert not any(info.native_async for info in cache.drivers() if info.name == "dupe-only")
