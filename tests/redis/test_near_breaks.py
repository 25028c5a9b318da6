"""When the near cache's invalidation channel breaks, nothing cached before the break is served.

Each test caches a value (and shows it is served locally), breaks the channel
(CLIENT KILL, server restart, SIGSTOP, Sentinel failover), changes the value
on the server behind the cache's back, and checks that the store was emptied
and disabled, that reads go to the server and never return the old value, and
that tracking comes back: caching resumes and a foreign write is seen again.
Both faces. Every test that breaks a server has a private server (or topology) of
its own; one that cuts only its own listener's connection uses the shared Sentinel.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from fork_support import NEAR_CHILD_BOUND, in_child
from near_support import (
    FACES,
    Face,
    hold,
    listener_clients,
    near_url,
    open_face,
    settle,
    settled_hit,
    wait_for_invalidations,
    wait_until,
)

from pevensie_redis import RedisDriverError, RedisTimeoutError
from pevensie_redis.testing import RedisServer
from pevensie_redis.testing.errors import ServerUnavailable
from pevensie_test_support import LocalSentinel, start_sentinel

# The outcome depends on the server: key tracking and its invalidations are the server's.
pytestmark = pytest.mark.server_dependent

ServerFactory = Callable[..., RedisServer]

NOTICED = 0.5
"""Seconds within which a closed invalidation connection must be noticed (it is at once)."""

RESUMED = 10.0
"""Seconds within which tracking must be back once the server answers again."""

READERS = 3
"""Threads reading in a loop while the listener connects again (a busy application)."""


@pytest.fixture(params=FACES)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def cache_before(face: Face, raw: redis.Redis) -> int:
    """Cache ``u:1 = before`` locally; return the flush count at that point."""
    raw.set("u:1", "before")
    raw.set("u:2", "untouched")
    assert hold(face, raw, "u", "1") == "before"
    assert face.get_many("u", ["1", "2"]) == {"1": "before", "2": "untouched"}
    return face.stats().flushes


def wait_for_the_flush(face: Face, flushes: int, bound: float) -> None:
    """Wait until the store was flushed after a break; check it is empty."""
    wait_until(lambda: face.stats().flushes > flushes, "the store to be flushed", bound)
    assert face.stats().entries == 0


def check_tracking_resumed(face: Face, raw: redis.Redis, expected: str) -> None:
    """Tracking is back: values are cached again, and a foreign write reaches the cache."""
    wait_until(lambda: face.stats().enabled, "tracking to be re-established", RESUMED)
    assert face.get("u", "1", None) == expected
    assert hold(face, raw, "u", "1") == expected
    before = face.stats().invalidations
    raw.set("u:1", "written after the break")
    wait_for_invalidations(face, before)
    assert face.get("u", "1", None) == "written after the break"
    assert len(listener_clients(raw)) == 1


def test_client_kill_of_the_listener_flushes_and_tracking_resumes(
    kind: str, pevensie_redis_server_factory: ServerFactory
) -> None:
    server = pevensie_redis_server_factory()
    with server.client() as raw:
        face = open_face(kind, near_url(server.url))
        try:
            flushes = cache_before(face, raw)
            [listener] = listener_clients(raw)
            killed = time.monotonic()
            raw.client_kill_filter(_id=listener["id"])
            raw.set("u:1", "after")  # nobody listens: no invalidation for this one
            wait_for_the_flush(face, flushes, RESUMED)
            took = time.monotonic() - killed
            assert took < NOTICED, f"a closed invalidation connection went unnoticed {took:.2f} s"
            print(f"\n[{kind}] killed listener noticed after {took * 1000:.1f} ms")
            assert face.get("u", "1", None) == "after"
            check_tracking_resumed(face, raw, "after")
            assert listener_clients(raw)[0]["id"] != listener["id"]
        finally:
            face.close()


def test_killing_the_data_connections_leaves_no_value_unwatched(
    kind: str, pevensie_redis_server_factory: ServerFactory
) -> None:
    """The reads' connections die (CLIENT KILL TYPE normal, or the server's idle timeout):
    values they read must still be invalidated when another client changes them."""
    server = pevensie_redis_server_factory()
    with server.client() as raw:
        face = open_face(kind, near_url(server.url))
        try:
            cache_before(face, raw)
            raw.client_kill_filter(_type="normal", skipme=True)
            before = face.stats().invalidations
            raw.set("u:1", "after")
            wait_for_invalidations(face, before)
            assert face.get("u", "1", None) == "after"
            assert settled_hit(face, "u", "1") == "after"
        finally:
            face.close()


def test_a_server_restart_flushes_and_tracking_resumes(
    kind: str, pevensie_redis_server_factory: ServerFactory
) -> None:
    server = pevensie_redis_server_factory()
    raw = server.client()
    face = open_face(kind, near_url(server.url))
    try:
        flushes = cache_before(face, raw)
        raw.close()
        killed = time.monotonic()
        server.kill()
        wait_for_the_flush(face, flushes, RESUMED)
        took = time.monotonic() - killed
        assert took < NOTICED, f"a closed invalidation connection went unnoticed {took:.2f} s"
        print(f"\n[{kind}] killed server noticed after {took * 1000:.1f} ms")
        server.restart()  # empty: nothing is persisted
        raw = server.client()
        raw.set("u:1", "after")
        # Until tracking is back every read goes to the server; none returns "before".
        deadline = time.monotonic() + RESUMED
        while not face.stats().enabled and time.monotonic() < deadline:
            try:
                assert face.get("u", "1", None) == "after"
            except RedisDriverError:
                time.sleep(0.01)  # the first reads may meet the old, closed connections
        assert face.get("u", "1", None) == "after"
        check_tracking_resumed(face, raw, "after")
    finally:
        face.close()
        raw.close()


def test_a_silent_server_is_noticed_within_two_heartbeats_and_tracking_resumes(
    kind: str, pevensie_redis_server_factory: ServerFactory
) -> None:
    """SIGSTOP: the connection stays open but nothing answers, as when the network drops."""
    timeout_ms = 3000
    heartbeat = 1.0  # min(1 s, timeout)
    server = pevensie_redis_server_factory()
    with server.client() as raw:
        face = open_face(
            kind, near_url(server.url, f"near_cache=true&timeout={timeout_ms}&retries=0")
        )
        try:
            flushes = cache_before(face, raw)
            paused = time.monotonic()
            server.pause()
            try:
                wait_for_the_flush(face, flushes, 2 * heartbeat + 1.0)
                took = time.monotonic() - paused
                assert not face.stats().enabled
                # Reads go to the (silent) server: a timeout, never the value cached before.
                with pytest.raises(RedisTimeoutError):
                    face.get("u", "1")
            finally:
                server.resume()
            print(f"\n[{kind}] silent server noticed after {took:.2f} s")
            raw.set("u:1", "after")
            assert face.get("u", "1", None) == "after"
            check_tracking_resumed(face, raw, "after")
        finally:
            face.close()


# -- Sentinel ------------------------------------------------------------------------------


@pytest.fixture
def own_sentinel() -> Iterator[LocalSentinel]:
    """A primary, a replica and three sentinels of this test's own (it kills the primary)."""
    try:
        topology = start_sentinel()
    except ServerUnavailable as exc:
        pytest.skip(f"no server binary for sentinels: {exc}")
    try:
        yield topology
    finally:
        topology.stop()


def test_a_sentinel_failover_flushes_and_tracking_resumes_on_the_new_primary(
    kind: str, own_sentinel: LocalSentinel
) -> None:
    hosts = ",".join(f"{host}:{port}" for host, port in own_sentinel.sentinels)
    url = f"redis+sentinel://{hosts}/{own_sentinel.service_name}?near_cache=true&timeout=1000"
    face = open_face(kind, url)
    try:
        old = own_sentinel.current_primary()
        with old.client(socket_timeout=20) as raw:
            flushes = cache_before(face, raw)
            # The replication barrier for raw's own writes: WAIT returns once a replica
            # has acknowledged them (faces.replicated's event; 15 s inside the socket's 20).
            assert raw.execute_command("WAIT", 1, 15000) >= 1
        own_sentinel.kill_primary()
        wait_for_the_flush(face, flushes, RESUMED)
        new = own_sentinel.wait_for_failover(old)
        with new.client() as raw:
            raw.set("u:1", "after")  # on the new primary, which never tracked for us
            # Polls until the driver has followed the failover and its listener tracks on
            # the new primary (a few seconds); 30 s only catches tracking that never resumes.
            deadline = time.monotonic() + 30
            while not face.stats().enabled:
                assert time.monotonic() < deadline, "tracking did not come back"
                try:
                    assert face.get("u", "1", None) == "after"
                except RedisDriverError:
                    time.sleep(0.05)
            assert face.get("u", "1", None) == "after"
            assert face.get("u", "2", None) == "untouched"  # replicated before the kill
            check_tracking_resumed(face, raw, "after")
    finally:
        face.close()


def test_tracking_resumes_on_sentinel_while_reads_never_pause(
    kind: str, redis_sentinel: LocalSentinel, topology_password: str
) -> None:
    """A busy application: its reads go on while the listener connects again. A read
    made while nobody listens is not kept, and it must not cut the listener's new
    connection: it once did, on every read, so under steady reads tracking never came
    back (a failover left the near cache off for good on a busy server)."""
    hosts = ",".join(f"{host}:{port}" for host, port in redis_sentinel.sentinels)
    url = (
        f"redis+sentinel://:{topology_password}@{hosts}/{redis_sentinel.service_name}"
        "?near_cache=true&timeout=1000"
    )
    face = open_face(kind, url)
    stop = threading.Event()
    reads = [0] * READERS
    errors: list[BaseException] = []

    def read(index: int) -> None:
        while not stop.is_set():
            try:
                face.get("steady", "1", None)
            except BaseException as exc:
                errors.append(exc)
                return
            reads[index] += 1

    readers = [threading.Thread(target=read, args=(index,)) for index in range(READERS)]
    try:
        with redis_sentinel.current_primary().client() as raw:
            raw.set("steady:1", "kept")
            wait_until(lambda: face.stats().enabled, "tracking", RESUMED)
            [listener] = listener_clients(raw)
            flushes = face.stats().flushes
            for reader in readers:
                reader.start()
            wait_until(lambda: min(reads) > 0, "every reader to read", RESUMED)
            raw.client_kill_filter(_id=listener["id"])
            wait_until(lambda: face.stats().flushes > flushes, "the store to be flushed", RESUMED)
            during = sum(reads)
            wait_until(lambda: face.stats().enabled, "tracking to come back under reads", RESUMED)
            # One flush for the break (one more for each attempt to connect again that
            # failed), never one per read: a read does not cut the new connection.
            assert face.stats().flushes - flushes <= 3, face.stats()
            # The reads went on all along (else this would not test what it names).
            wait_until(lambda: sum(reads) > during, "reads after tracking came back", RESUMED)
            stop.set()
            for reader in readers:
                reader.join(RESUMED)
            assert errors == []
            raw.set("steady:1", "changed")
            settle(face, raw)
            assert face.get("steady", "1", None) == "changed"
            assert len(listener_clients(raw)) == 1
    finally:
        stop.set()
        for reader in readers:
            if reader.is_alive():
                reader.join(RESUMED)
        face.close()


def test_a_read_from_another_server_than_the_listeners_is_never_kept(
    kind: str, own_sentinel: LocalSentinel
) -> None:
    """After SENTINEL FAILOVER the old primary keeps taking writes for about 10 s. If the
    listener follows the new primary while a data connection still reads the old one, a
    value read there would never be invalidated: it must not be kept."""
    hosts = ",".join(f"{host}:{port}" for host, port in own_sentinel.sentinels)
    url = f"redis+sentinel://{hosts}/{own_sentinel.service_name}?near_cache=true&timeout=1000"
    face = open_face(kind, url)
    old = own_sentinel.current_primary()
    try:
        assert face.get("u", "1", None) is None  # a data connection to the old primary
        with own_sentinel.sentinel_nodes[0].client() as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", own_sentinel.service_name)
        wait_until(lambda: own_sentinel.reported_primary() != old.address, "the new primary", 10)
        new = own_sentinel.current_primary()
        with old.client() as on_old, new.client() as on_new:
            # The listener moves (its connection is killed); the data connections stay.
            [listener] = listener_clients(on_old)
            on_old.client_kill_filter(_id=listener["id"])
            wait_until(lambda: len(listener_clients(on_new)) == 1, "the listener to move", 10)
            wait_until(lambda: face.stats().enabled, "tracking on the new primary")
            on_old.set("u:1", "before")  # not replicated: the new primary never sees it
            for _ in range(3):
                face.get("u", "1", None)  # read wherever the data connections are
            if on_old.execute_command("ROLE")[0] != "master":
                pytest.skip("the old primary was demoted before the test could write to it")
            on_old.set("u:1", "after")
            time.sleep(0.5)  # far above the invalidation latency, were it heard
            for _ in range(20):
                assert face.get("u", "1", None) in ("after", None)  # old or new primary's value
    finally:
        face.close()


def _child_report(face: Face, server: RedisServer) -> dict[str, object]:
    """The child's whole life: change the key, read it through the inherited cache."""
    with server.client() as raw:
        raw.set("u:1", "written in the child")
        time.sleep(0.5)  # far above the invalidation latency, had anyone here listened
        report = {"read": face.get("u", "1", None)}
        wait_until(lambda: face.stats().enabled, "tracking in the child")
        report["held"] = hold(face, raw, "u", "1")
        raw.set("u:1", "written again in the child")
        settle(face, raw)
        report["read again"] = face.get("u", "1", None)
    return report


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_serves_nothing_it_inherited_and_listens_on_its_own(
    pevensie_redis_server_factory: ServerFactory,
) -> None:
    """The sync face after os.fork() (a pre-forking server): the parent's listener thread
    does not exist in the child, so what the child inherited must not be served."""
    server = pevensie_redis_server_factory()
    face = open_face("sync", near_url(server.url))
    try:
        with server.client() as raw:
            cache_before(face, raw)
        report = in_child(lambda: _child_report(face, server), bound=NEAR_CHILD_BOUND)
        assert report == {
            "read": "written in the child",
            "held": "written in the child",
            "read again": "written again in the child",
        }
        with server.client() as raw:  # the parent's own listener still works
            settle(face, raw)
            assert face.get("u", "1", None) == "written again in the child"
            assert len(listener_clients(raw)) == 1  # the child's went with it
    finally:
        face.close()
