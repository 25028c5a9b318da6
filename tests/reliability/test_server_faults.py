"""The server dies, stalls, drops connections, refuses credentials or fills up.

Each test runs against a server of its own (a real process or container) and
checks the typed error a caller gets, that the call never hangs past the
configured bound, and that the same cache object recovers on its own.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from reliability_support import (
    MARGIN_S,
    ServerFactory,
    Stalls,
    chain_text,
    connect_cache,
    hang_bound,
    named_clients,
    unique_client_name,
)

from pevensie_cache import CacheMiss, PevensieCache
from pevensie_redis import (
    RedisAuthenticationError,
    RedisConnectionError,
    RedisServerError,
    RedisTimeoutError,
)
from pevensie_redis.testing import RedisServer
from pevensie_redis.testing.binaries import wait_until_ready

Operation = Callable[[PevensieCache], Any]

OPERATIONS: dict[str, Operation] = {
    "get": lambda c: c.get("user", "1"),
    "set": lambda c: c.set("user", "1", "Ada"),
    "set_ttl": lambda c: c.set("user", "1", "Ada", ttl_seconds=60),
    "delete": lambda c: c.delete("user", "1"),
    "get_many": lambda c: c.get_many("user", ["1", "2"]),
    "set_many": lambda c: c.set_many("user", {"1": "a", "2": "b"}),
    "set_many_ttl": lambda c: c.set_many("user", {"1": "a", "2": "b"}, ttl_seconds=60),
    "delete_many": lambda c: c.delete_many("user", ["1", "2"]),
}


def timed(call: Callable[[], Any]) -> tuple[BaseException | None, float, float]:
    """Run ``call``; return the exception it raised (or None), the seconds it took, and
    the seconds of those the machine did not run this process at all (:class:`Stalls`).

    Upper bounds are about the driver, not the CI machine's load: they compare the
    seconds taken less the stalls.
    """
    error: BaseException | None = None
    with Stalls() as stalls:
        start = time.monotonic()
        try:
            call()
        except Exception as exc:
            error = exc
        took = time.monotonic() - start
    return error, took, stalls.seconds


@pytest.fixture
def cache_on(private_server: RedisServer) -> Iterator[Callable[..., PevensieCache]]:
    """Build connected caches on the private server; disconnect them at teardown."""
    opened: list[PevensieCache] = []

    def build(**fields: Any) -> PevensieCache:
        built = connect_cache(private_server, **fields)
        opened.append(built)
        return built

    yield build
    for each in opened:
        if each.connected:
            each.disconnect()


def later(seconds: float, action: Callable[[], None]) -> threading.Thread:
    """Run ``action`` in a thread after ``seconds``; join the returned thread."""

    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- the server is killed -----------------------------------------------------------


@pytest.mark.parametrize("retries", [0, 2])
def test_killed_server_gives_connection_error_then_the_same_cache_recovers(
    private_server: RedisServer, cache_on: Callable[..., PevensieCache], retries: int
) -> None:
    timeout_ms = 500
    c = cache_on(timeout=timeout_ms, retries=retries)
    c.set("user", "1", "before the crash")

    private_server.kill()
    for name, operation in OPERATIONS.items():
        error, elapsed, stalled = timed(functools.partial(operation, c))
        assert isinstance(error, RedisConnectionError), (name, error)
        assert elapsed - stalled < hang_bound(timeout_ms, retries), (name, elapsed, stalled)
    assert c.connected

    private_server.restart()  # same address, empty data set
    for name, operation in OPERATIONS.items():
        if name != "get":
            operation(c)  # every operation works again, no reconnect call
    c.set("user", "1", "after the restart")
    assert c.get("user", "1") == "after the restart"


def test_reconnect_is_retried_with_backoff_until_the_server_is_back(
    private_server: RedisServer, cache_on: Callable[..., PevensieCache]
) -> None:
    without = cache_on(retries=0)
    with_retries = cache_on(retries=30)  # backoff up to 0.512 s each: a window of ~14 s
    without.set("user", "1", "x")
    with_retries.set("user", "1", "x")

    private_server.kill()
    error, _, _ = timed(lambda: without.get("user", "1"))
    assert isinstance(error, RedisConnectionError)

    restarter = later(0.3, private_server.restart)
    try:
        with_retries.set("user", "2", "written once the server was back")
    finally:
        restarter.join(timeout=30)
    assert with_retries.get("user", "2") == "written once the server was back"
    with private_server.client() as raw:
        assert raw.get("user:2") == "written once the server was back"


# -- the server is paused ------------------------------------------------------------


@pytest.mark.parametrize("retries", [0, 2])
def test_paused_server_gives_timeout_error_within_timeout_times_attempts(
    private_server: RedisServer, cache_on: Callable[..., PevensieCache], retries: int
) -> None:
    timeout_ms = 400
    c = cache_on(timeout=timeout_ms, retries=retries)
    c.set("user", "1", "before the pause")

    private_server.pause()
    try:
        for name in ("get", "set_ttl", "get_many", "set_many_ttl"):
            error, elapsed, stalled = timed(functools.partial(OPERATIONS[name], c))
            assert isinstance(error, RedisTimeoutError), (name, error)
            # Every attempt waited the full timeout (so the retries happened) ...
            assert elapsed >= timeout_ms / 1000 * (retries + 1) * 0.95, (name, elapsed)
            # ... and the call never hangs past the bound.
            assert elapsed - stalled < hang_bound(timeout_ms, retries), (name, elapsed, stalled)
    finally:
        private_server.resume()
    assert c.get("user", "1") == "before the pause"
    c.set("user", "1", "after the pause")
    assert c.get("user", "1") == "after the pause"


def test_a_timed_out_command_is_retried_and_succeeds_once_the_server_answers(
    private_server: RedisServer, cache_on: Callable[..., PevensieCache]
) -> None:
    timeout_ms = 300
    without = cache_on(timeout=timeout_ms, retries=0)
    with_retries = cache_on(timeout=timeout_ms, retries=3)
    without.set("user", "1", "stored")

    private_server.pause()
    resumer: threading.Thread | None = None
    try:
        error, _, _ = timed(lambda: without.get("user", "1"))
        assert isinstance(error, RedisTimeoutError)
        # Resumed once the next call's first try has timed out, however loaded the machine
        # (the clock starts before the resumer does: a loaded machine may run the resumer's
        # countdown before this thread reads the clock).
        start = time.monotonic()
        resumer = later(timeout_ms / 1000 * 1.5, private_server.resume)
        assert with_retries.get("user", "1") == "stored"
        assert time.monotonic() - start >= timeout_ms / 1000 * 0.95  # the first try timed out
    finally:
        if resumer is not None:
            resumer.join(timeout=10)
        private_server.resume()


# -- the server drops the connection --------------------------------------------------


@pytest.mark.parametrize("retries", [0, 1])
def test_client_kill_between_two_calls_the_next_call_succeeds(
    private_server: RedisServer, cache_on: Callable[..., PevensieCache], retries: int
) -> None:
    name = unique_client_name("killed")
    c = cache_on(retries=retries, client_name=name, pool_size=4)
    c.set("user", "1", "Ada")
    c.set_many("user", {"2": "Bob"})
    with private_server.client() as raw:
        victims = named_clients(raw, name)
        assert victims
        for victim in victims:
            raw.execute_command("CLIENT", "KILL", "ID", victim["id"])
        assert named_clients(raw, name) == []

        assert c.get("user", "1") == "Ada"
        for victim in named_clients(raw, name):
            raw.execute_command("CLIENT", "KILL", "ID", victim["id"])
        assert c.get_many("user", ["1", "2"]) == {"1": "Ada", "2": "Bob"}
        for victim in named_clients(raw, name):
            raw.execute_command("CLIENT", "KILL", "ID", victim["id"])
        c.set_many("user", {"3": "Cy"}, ttl_seconds=60)
        assert c.get("user", "3") == "Cy"


# -- credentials ------------------------------------------------------------------------

SECRET = "Auth-Sentinel-5521"


@pytest.fixture
def auth_server(pevensie_redis_server_factory: ServerFactory) -> RedisServer:
    """A server that wants SECRET for the default user and knows the ACL user ``app``."""
    server = pevensie_redis_server_factory(["--requirepass", SECRET])
    with server.client(password=SECRET) as raw:
        raw.execute_command("ACL", "SETUSER", "app", "on", f">{SECRET}", "~*", "+@all")
    return server


AUTH_TIMEOUT_MS = 5000
"""The refusal of bad credentials comes at once, so this timeout only bounds a hang (at
1000 ms, a loaded machine's stalls could turn the refusal into a connect timeout)."""


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
def test_bad_credentials_fail_at_connect_with_authentication_error_and_no_secret(
    auth_server: RedisServer, username: str | None, password: str | None
) -> None:
    from pevensie_cache import cache

    c = cache.new(
        driver="redis",
        host=auth_server.host,
        port=auth_server.port,
        username=username,
        password=password,
        timeout=AUTH_TIMEOUT_MS,
    )
    error, elapsed, stalled = timed(c.connect)
    assert isinstance(error, RedisAuthenticationError), error
    assert elapsed - stalled < hang_bound(AUTH_TIMEOUT_MS, 0), (elapsed, stalled)
    assert not c.connected
    text = chain_text(error)
    assert SECRET not in text
    assert SECRET not in repr(c)


@pytest.mark.server_dependent
def test_good_credentials_work_for_password_and_acl_user(auth_server: RedisServer) -> None:
    for username in (None, "app"):
        c = connect_cache(auth_server, username=username, password=SECRET)
        try:
            c.set("user", "1", "authenticated")
            assert c.get("user", "1") == "authenticated"
        finally:
            c.disconnect()


# -- the server is full ----------------------------------------------------------------


def fill_until_rejected(c: PevensieCache, chunk: str) -> tuple[int, RedisServerError]:
    """Write ``chunk`` under new keys until the server refuses; return the count and error."""
    for written in range(1000):
        try:
            c.set("fill", str(written), chunk)
        except RedisServerError as exc:
            return written, exc
    raise AssertionError("the server never refused a write")


@pytest.mark.server_dependent
def test_noeviction_server_at_maxmemory_rejects_writes_with_its_message_and_keeps_reads(
    pevensie_redis_server_factory: ServerFactory,
) -> None:
    server = pevensie_redis_server_factory(
        ["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]
    )
    c = connect_cache(server)
    try:
        chunk = "x" * 50_000
        written, error = fill_until_rejected(c, chunk)
        assert written > 0
        assert error.server_message.startswith("OOM"), error.server_message
        assert "maxmemory" in error.server_message
        assert error.server_message in str(error)

        # Reads keep working, single and batch.
        assert c.get("fill", "0") == chunk
        assert c.get_many("fill", ["0", "1"]) == {"0": chunk, "1": chunk}
        with pytest.raises(CacheMiss):
            c.get("fill", "absent")

        # Batch writes get the same error, with and without a TTL.
        writes: list[Callable[[], None]] = [
            lambda: c.set_many("more", {"a": chunk, "b": chunk}),
            lambda: c.set_many("more", {"a": chunk, "b": chunk}, ttl_seconds=60),
            lambda: c.set("more", "a", chunk, ttl_seconds=60),
        ]
        for write in writes:
            with pytest.raises(RedisServerError) as batch:
                write()
            assert batch.value.server_message.startswith("OOM"), batch.value.server_message

        # Deleting frees memory, and writes work again on the same cache.
        c.delete_many("fill", [str(i) for i in range(written)])
        c.set("more", "a", "fits again")
        assert c.get("more", "a") == "fits again"
    finally:
        c.disconnect()


@pytest.mark.server_dependent
def test_a_server_error_on_a_retried_command_is_still_a_server_error(
    pevensie_redis_server_factory: ServerFactory,
) -> None:
    """The first attempt times out, the retry gets the server's error reply: RedisServerError."""
    server = pevensie_redis_server_factory(
        ["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]
    )
    c = connect_cache(server, timeout=300, retries=3)
    try:
        chunk = "x" * 50_000
        fill_until_rejected(c, chunk)
        writes: list[Callable[[], None]] = [
            lambda: c.set("more", "a", chunk),
            lambda: c.set_many("more", {"a": chunk}, ttl_seconds=60),
        ]
        for write in writes:
            server.pause()
            resumer = later(0.5, server.resume)
            try:
                with pytest.raises(RedisServerError) as caught:
                    write()
            finally:
                resumer.join(timeout=10)
                server.resume()
            assert caught.value.server_message.startswith("OOM")
    finally:
        c.disconnect()


@pytest.mark.parametrize("retries", [1, 2])
def test_paused_server_with_a_full_accept_queue_still_fails_within_timeout_times_attempts(
    pevensie_redis_server_factory: ServerFactory, retries: int
) -> None:
    """Reconnects hang in connect() too (the kernel drops SYNs): still one timeout per attempt.

    A stalled server under load stops accepting: new TCP connections time out in
    connect instead of completing. Each retry must cost one timeout, not one per
    connect retry inside it.
    """
    server = pevensie_redis_server_factory(["--tcp-backlog", "1"])
    timeout_ms = 300
    c = connect_cache(server, timeout=timeout_ms, retries=retries)
    fillers: list[socket.socket] = []
    try:
        c.set("user", "1", "Ada")
        server.pause()
        for _ in range(8):  # fill the accept queue of the stalled server
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((server.host, server.port))
            fillers.append(filler)
        # The fillers' handshakes land in (or are dropped by) the one-slot accept queue:
        # loopback takes microseconds; no event says when, so a short pause.
        time.sleep(0.1)
        error, elapsed, stalled = timed(lambda: c.get("user", "1"))
        assert isinstance(error, RedisTimeoutError), error
        assert elapsed - stalled < hang_bound(timeout_ms, retries), (
            elapsed,
            stalled,
        )  # per attempt
    finally:
        server.resume()
        for filler in fillers:
            filler.close()
    assert c.get("user", "1") == "Ada"
    c.disconnect()


@pytest.mark.parametrize("full_queue", [False, True], ids=["paused", "paused-full-queue"])
def test_connect_to_a_server_that_never_answers_times_out_within_one_timeout(
    pevensie_redis_server_factory: ServerFactory, full_queue: bool
) -> None:
    """connect() probes the server once: a stalled server costs one timeout, retries or not."""
    from pevensie_cache import cache

    server = pevensie_redis_server_factory(["--tcp-backlog", "1"])
    timeout_ms = 400
    fillers: list[socket.socket] = []
    c = cache.new(driver="redis", host=server.host, port=server.port, timeout=timeout_ms, retries=3)
    server.pause()
    try:
        if full_queue:
            for _ in range(8):
                filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect((server.host, server.port))
                fillers.append(filler)
            time.sleep(0.1)  # the fillers' handshakes reach the accept queue (as above)
        error, elapsed, stalled = timed(c.connect)
    finally:
        server.resume()
        for filler in fillers:
            filler.close()
    assert isinstance(error, RedisTimeoutError), error
    assert elapsed - stalled < timeout_ms / 1000 + MARGIN_S  # one timeout, retries or not
    assert not c.connected
    # Just after SIGCONT the accept queue may still be full and drop a SYN (retried
    # by the kernel after 1 s, longer than the timeout): wait until the server answers.
    wait_until_ready(server.host, server.port, timeout=10)
    c.connect()  # the server answers again: the same cache connects
    try:
        c.set("user", "1", "connected after all")
        assert c.get("user", "1") == "connected after all"
    finally:
        c.disconnect()
