"""After ``os.fork()`` the child opens connections of its own: no socket is shared."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fork_support import in_child
from reliability_support import connect_cache, named_clients, unique_client_name

from pevensie_cache import DriverError, LockTimeout, PevensieCache, cache
from pevensie_cache.contrib.shared import SharedCache
from pevensie_cache.failures import FailureLog
from pevensie_cache.memory import MemoryDriver
from pevensie_cache.primitives import Background, SingleFlight
from pevensie_cache.telemetry import ResourceTypes
from pevensie_redis import RedisClusterDriver, RedisConnectionError, RedisDriver, runtime
from pevensie_redis.channel import open_channel
from pevensie_redis.config import RedisConfig
from pevensie_redis.endpoint import Endpoint, endpoint
from pevensie_redis.primary_check import PRIMARY_CHECK_INTERVAL
from pevensie_redis.protocol.commands import pack
from pevensie_redis.sentinel import Sentinels
from pevensie_redis.testing import RedisServer
from pevensie_test_support import LocalCluster, LocalSentinel

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def connection_identity(c: PevensieCache) -> dict[str, Any]:
    """Return the server-side client id and local address of a pooled connection of ``c``."""
    driver = c.driver
    assert isinstance(driver, RedisDriver)
    pool = driver.connection_pool
    assert pool is not None
    connection = pool.get_connection()
    try:
        connection.send_command("CLIENT", "ID")
        client_id = int(connection.read_response())
        sock = connection.pipe.socket
        host, port = sock.getsockname()[:2]
        return {"id": client_id, "laddr": f"{host}:{port}", "fd": sock.fileno()}
    finally:
        pool.release(connection)


def child_report(c: PevensieCache) -> dict[str, Any]:
    """The child's whole life: use the inherited cache and say what it saw."""
    c.set("fork", "child", "written by the child")
    return {
        "read": c.get("fork", "child"),
        "parent_value": c.get("fork", "parent"),
        "connection": connection_identity(c),
    }


def test_a_forked_child_uses_its_own_connections_and_the_parent_keeps_working(
    private_server: RedisServer,
) -> None:
    name = unique_client_name("fork")
    c = connect_cache(private_server, client_name=name, timeout=2000)
    try:
        c.set("fork", "parent", "written by the parent")
        parent_before = connection_identity(c)

        report: Any = in_child(lambda: child_report(c))

        assert report["read"] == "written by the child"
        assert report["parent_value"] == "written by the parent"
        child = report["connection"]
        assert child["id"] != parent_before["id"]  # a different client on the server
        assert child["laddr"] != parent_before["laddr"]  # a different socket

        # The parent's connection is untouched by the child: same client, still working.
        assert c.get("fork", "child") == "written by the child"
        parent_after = connection_identity(c)
        assert parent_after["id"] == parent_before["id"]
        assert parent_after["laddr"] == parent_before["laddr"]
        with private_server.client() as raw:
            addresses = {entry["addr"] for entry in named_clients(raw, name)}
            assert parent_before["laddr"] in addresses
            # The child exited: its connection goes, the parent's stays.
            deadline = time.monotonic() + 5
            while child["laddr"] in addresses and time.monotonic() < deadline:
                time.sleep(0.05)
                addresses = {entry["addr"] for entry in named_clients(raw, name)}
            assert child["laddr"] not in addresses
            assert parent_before["laddr"] in addresses
    finally:
        c.disconnect()


def test_a_connection_lent_across_a_fork_is_never_used_by_the_child(
    private_server: RedisServer,
) -> None:
    """The forking thread holds a lent connection (``connection_pool.get_connection()``).

    Its socket is the parent's: in the child, a command on it is refused
    (``RedisConnectionError``), where it went out on the parent's connection
    and took its reply from there, and giving it back does not make it one of
    the child's connections.
    """
    c = connect_cache(private_server, timeout=2000)
    try:
        driver = c.driver
        assert isinstance(driver, RedisDriver)
        pool = driver.connection_pool
        assert pool is not None
        lent = pool.get_connection()
        lent.send_command("CLIENT", "ID")
        parent_id = int(lent.read_response())

        def child() -> object:
            try:
                lent.send_command("CLIENT", "ID")
                on_lent: object = int(lent.read_response())
            except RedisConnectionError as exc:
                on_lent = f"refused: {exc}"
            pool.release(lent)
            return {"on_lent": on_lent, "pooled": connection_identity(c)["id"]}

        report: Any = in_child(child)
        assert report["on_lent"] != parent_id, "the child used the parent's lent connection"
        assert str(report["on_lent"]).startswith("refused: "), report
        assert report["pooled"] != parent_id, "the child took the parent's connection back"
        # The parent's lent connection is untouched.
        lent.send_command("CLIENT", "ID")
        assert int(lent.read_response()) == parent_id
        pool.release(lent)
    finally:
        c.disconnect()


# -- a lock another thread holds at the fork ---------------------------------------------
#
# os.fork() copies only the forking thread: a lock another thread holds at that instant
# stays held in the child for good. Each test below holds one from another thread in the
# parent (or has work of that thread under way), forks, and has the child use the path
# that takes it: the child must finish, where it hung (or, for a non-blocking acquire,
# never got its turn again) before each object renewed its locks after a fork.


@contextmanager
def held_by_another_thread(lock: Any) -> Iterator[None]:
    """Hold ``lock`` from a thread of its own while the block runs (a fork in it, say)."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(60)

    thread = threading.Thread(target=hold, name="holds-a-lock", daemon=True)
    thread.start()
    try:
        assert taken.wait(10), "the other thread never took the lock"
        yield
    finally:
        release.set()
        thread.join(10)


def test_a_memory_store_written_by_another_thread_at_the_fork_takes_the_childs_writes() -> None:
    """The memory driver's lock: another thread is half-way through a write (its clock stalls)."""
    stalled, resume = threading.Event(), threading.Event()
    writer: list[threading.Thread] = []

    def clock() -> float:
        if writer and threading.current_thread() is writer[0]:
            stalled.set()
            resume.wait(60)
        return time.monotonic()

    driver = MemoryDriver(clock=clock)
    c = PevensieCache(driver).connect()
    c.set("fork", "kept", "from before the fork")
    writer.append(threading.Thread(target=lambda: driver.add("fork", "racing", "x", 60)))
    writer[0].start()
    try:
        assert stalled.wait(10)  # the writer holds the store's lock, inside add()

        def child() -> object:
            c.set("fork", "child", "written by the child", 60)
            return [c.get("fork", "child"), c.get("fork", "kept"), c.incr("fork", "n")]

        assert in_child(child) == ["written by the child", "from before the fork", 1]
    finally:
        resume.set()
        writer[0].join(10)
    assert c.get("fork", "racing") == "x"  # the parent's writer finished


def test_a_load_under_way_in_another_thread_at_the_fork_does_not_stop_the_childs() -> None:
    """``get_or_set``'s single flight: the other thread's load never ends in the child."""
    c = PevensieCache(MemoryDriver()).connect()
    loading, finish = threading.Event(), threading.Event()

    def slow_loader() -> str:
        loading.set()
        finish.wait(60)
        return "loaded by the parent"

    loader = threading.Thread(target=lambda: c.get_or_set("fork", "flight", slow_loader))
    loader.start()
    try:
        assert loading.wait(10)
        result = in_child(lambda: c.get_or_set("fork", "flight", lambda: "loaded by the child"))
        assert result == "loaded by the child"
    finally:
        finish.set()
        loader.join(10)
    assert c.get("fork", "flight") == "loaded by the parent"


def test_a_lease_held_by_another_thread_at_the_fork_is_free_in_the_child() -> None:
    """The memory store's lease locks: no thread of the child would release another's.

    The child once waited out the whole lease (10 s by default) for a lock, or a
    ``get_or_set(lock=True)``, that another thread of the parent held at the fork.
    A lease of the thread that forks is still held in the child, which releases it.
    """
    c = PevensieCache(MemoryDriver()).connect()
    holding, finish = threading.Event(), threading.Event()

    def hold() -> None:
        with c.lock("fork", "report", ttl_seconds=60):
            holding.set()
            finish.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)

        def child() -> object:
            began = time.monotonic()
            with c.lock("fork", "report", ttl_seconds=60, wait_seconds=30):
                took = time.monotonic() - began
            loaded = c.get_or_set("fork", "v", lambda: "child", 60, lock=True, lock_wait=30)
            return [took < 5, loaded]

        with c.lock("fork", "mine", ttl_seconds=60):

            def child_of_holder() -> object:
                mine = c.lock("fork", "mine", ttl_seconds=60, wait_seconds=0)
                try:
                    mine.acquire()
                except LockTimeout:
                    return "still held"
                return "taken"

            assert in_child(child_of_holder) == "still held"
        assert in_child(child) == [True, "child"]
        taken = c.lock("fork", "report", wait_seconds=0)
        with pytest.raises(LockTimeout):  # the parent's lease is untouched
            taken.acquire()
    finally:
        finish.set()
        holder.join(10)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: SingleFlight(), id="SingleFlight"),
        pytest.param(lambda: Background(), id="Background"),
        pytest.param(lambda: ResourceTypes(), id="ResourceTypes"),
        pytest.param(lambda: FailureLog(), id="FailureLog"),
        pytest.param(lambda: SharedCache("memory://", {}), id="SharedCache"),
        pytest.param(lambda: cache.new(driver="memory"), id="cache lifecycle"),
        pytest.param(lambda: cache.new(driver="memory", fail_open=True), id="fail_open"),
    ],
)
def test_a_core_lock_held_by_another_thread_at_the_fork_is_free_in_the_child(
    make: Callable[[], Any],
) -> None:
    """Each core object whose lock any thread takes: the child's first use of it finishes."""
    owner = make()
    lock = owner._lock
    if isinstance(owner, PevensieCache) and owner.fail_open:
        # Its reconnect lock, held by a thread reconnecting a store that was down: the
        # child must still reconnect (it would serve misses for good).
        owner.connect()
        owner._ops.offline(DriverError("down at the fork"))
        owner._ops._retry_at = 0.0
        lock = owner._ops._connecting

    def use() -> object:
        if isinstance(owner, PevensieCache):
            if owner.fail_open:
                owner.set("fork", "open", "ran")  # reconnects the store first
                assert not owner._ops.is_offline
                return owner.get("fork", "open")
            with owner:  # connect() takes the lock another thread held in the parent
                owner.set("fork", "lifecycle", "ran")
                return owner.get("fork", "lifecycle")
        if isinstance(owner, SingleFlight):
            return owner.run("key", lambda: "ran")
        if isinstance(owner, Background):
            ran: list[str] = []
            assert owner.start("key", lambda: ran.append("ran"))
            owner.idle()
            owner.close()
            return ran[0]
        if isinstance(owner, ResourceTypes):
            return owner.label("users")
        if isinstance(owner, SharedCache):  # a framework backend's cache, connected on first use
            owner.sync().set("fork", "shared", "ran")
            return owner.sync().get("fork", "shared")
        owner.failed("get", "users", DriverError("down"))
        return owner.total

    with held_by_another_thread(lock):
        result = in_child(use)
    assert result in ("ran", "users", 1)


@pytest.mark.server_dependent
def test_a_sentinel_question_under_way_at_the_fork_does_not_stop_the_childs(
    private_server: RedisServer,
) -> None:
    """The Sentinel channel's primary check: the parent's question never ends in the child.

    A channel that follows the primary asks where it is about once a second
    (in the background); the parent forks while such a question is under way.
    The child must ask again within a few seconds of use (its ``resolve``
    counted), where it never asked again.
    """
    config = RedisConfig(host=private_server.host, port=private_server.port, timeout=2000)
    parent = os.getpid()
    asked, answer = threading.Event(), threading.Event()
    calls = [0]

    def resolve() -> Endpoint:
        calls[0] += 1
        if os.getpid() == parent and calls[0] > 1:  # the parent's background question stalls
            asked.set()
            answer.wait(60)
        return endpoint(config)

    channel = open_channel(resolve, config, follows_primary=True)
    try:
        deadline = time.monotonic() + 10
        while not asked.is_set() and time.monotonic() < deadline:
            channel.execute(pack(["PING"]), "PING")
            time.sleep(0.05)
        assert asked.is_set(), "the channel never asked for the primary"

        def child() -> object:
            channel.execute(pack(["PING"]), "PING")  # opens the child's own pipe
            before = calls[0]
            end = time.monotonic() + 3 * PRIMARY_CHECK_INTERVAL + 2
            while calls[0] == before and time.monotonic() < end:
                channel.execute(pack(["PING"]), "PING")
                time.sleep(0.05)
            return calls[0] > before

        assert in_child(child) is True, "the child never asked for the primary again"
    finally:
        answer.set()
        channel.close()


@pytest.mark.server_dependent
@pytest.mark.shares_topology
def test_the_sentinels_lock_held_at_the_fork_lets_the_child_find_the_primary(
    redis_sentinel: LocalSentinel, topology_password: str
) -> None:
    """``Sentinels``: the child's first command asks the sentinels, under their lock."""
    hosts = ",".join(f"{host}:{port}" for host, port in redis_sentinel.sentinels)
    url = f"redis+sentinel://:{topology_password}@{hosts}/{redis_sentinel.service_name}"
    c = cache.from_url(url, timeout=2000).connect()
    key = unique_client_name("fork-sentinel")
    try:
        c.set("fork", key, "from the parent", 60)
        locator = c.driver._locator  # type: ignore[attr-defined]
        assert isinstance(locator, Sentinels)

        def child() -> object:
            c.set("fork", key, "from the child", 60)
            return c.get("fork", key)

        with held_by_another_thread(locator._lock):
            assert in_child(child) == "from the child"
        c.delete("fork", key)
    finally:
        c.disconnect()


@pytest.mark.server_dependent
@pytest.mark.shares_topology
def test_the_cluster_router_locked_and_refreshing_at_the_fork_refreshes_in_the_child(
    redis_cluster: LocalCluster,
) -> None:
    """The Cluster router's lock, its refresh under way, and the replica choice's lock.

    The parent's refresh runs in a thread the child does not have; a thread
    holds the router's lock and another the replica choice's. The child's
    first replica read must ask for the replicas again (a refresh: the
    router's generation moves on) and answer.
    """
    url = f"redis://127.0.0.1:{redis_cluster.port}/0?cluster=true&read_from_replicas=true"
    c = cache.from_url(url, timeout=2000).connect()
    key = unique_client_name("fork-cluster")
    stuck = threading.Event()
    try:
        c.set("fork", key, "from the parent", 60)
        driver = c.driver
        assert isinstance(driver, RedisClusterDriver)
        router, choice = driver.router, driver.replica_choice
        assert router is not None
        assert choice is not None
        router._refreshing = runtime.start(lambda: stuck.wait(60))  # a refresh under way

        def child() -> object:
            before = router.generation
            found = c.get("fork", key, None)  # a replica read: due to refresh the replicas
            return [router.generation > before, found in ("from the parent", None)]

        with held_by_another_thread(router._lock), held_by_another_thread(choice._refreshing):
            assert in_child(child) == [True, True]
        c.delete("fork", key)
    finally:
        stuck.set()
        c.disconnect()
