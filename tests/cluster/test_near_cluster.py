"""The near cache on a Redis Cluster stays coherent: every primary heard, through topology changes.

A foreign client (raw redis-py) changes keys behind the cache's back, on every
primary, and while the cluster changes under it: a listener connection lost,
a slot half migrated (to an existing primary and to one just added), a
primary killed and failed over, a manual failover. Each test first shows that
a value (or a miss) is served locally (a hit), so the later assertion can only
pass because the change reached this process. Both faces; a read after a
change must see it within :data:`WAIT` (the bound is generous: a lost
invalidation would leave the old value for good).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fork_support import NEAR_CHILD_BOUND, in_child
from redis.cluster import RedisCluster
from resharding import SlotMigration, add_primary, slot_map

from pevensie_cache import ConfigError
from pevensie_redis import RedisDriverError
from pevensie_redis.near import NearStats
from pevensie_redis.protocol.slots import key_slot
from pevensie_redis.testing import ProcessServer
from pevensie_test_support import LocalCluster, start_cluster
from pevensie_test_support.faces import FACES, Face, new_face, replicated

# The outcome depends on the server: key tracking, slot migration and failover are its own.
pytestmark = pytest.mark.server_dependent

RT = "nc"
WAIT = 10.0
"""Seconds a change may take to reach a read (topology changes include a watch round)."""


def near_url(topology: LocalCluster, query: str = "") -> str:
    return f"redis://127.0.0.1:{topology.port}/0?cluster=true&near_cache=true{query}"


def stats(face: Face) -> NearStats:
    found = face.cache.driver.near_cache_stats()
    assert found is not None
    return found


def name(node: ProcessServer | Any) -> str:
    return f"127.0.0.1:{node.port}"


async def eventually(check: Callable[[], Awaitable[bool]], what: str, bound: float = WAIT) -> float:
    """Poll ``check`` (yielding to the loop) until it is true; return the seconds it took."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > bound:
            raise AssertionError(f"waited {bound} s for {what}")
        await asyncio.sleep(0.002)
    return time.monotonic() - started


async def held(face: Face, key: str) -> str | None:
    """Read ``key`` until a read is a local hit; return that value."""
    got: list[str | None] = []

    async def hit() -> bool:
        before = stats(face).hits
        got[:] = [await face.get(RT, key, None)]
        return stats(face).hits == before + 1

    await eventually(hit, f"{key} to be served locally")
    return got[0]


async def sees(
    face: Face, key: str, expected: str | None, bound: float = WAIT, *, failing: bool = False
) -> float:
    """Wait until a read of ``key`` returns ``expected``; return the seconds it took.

    ``failing``: reads may fail meanwhile (a failover under way: the driver's error).
    """

    async def check() -> bool:
        try:
            return bool(await face.get(RT, key, None) == expected)
        except RedisDriverError:
            if not failing:
                raise
            return False

    return await eventually(check, f"{key} to read {expected!r}", bound)


_markers = itertools.count()


async def settle(face: Face, topology: LocalCluster) -> None:
    """Wait until every invalidation of a change made before now has arrived, from every primary.

    Each primary sends its invalidations in order on its listener's connection. On each,
    a fresh marker key is remembered as a miss, then written there: once a read sees the
    write, every invalidation that primary sent before it has arrived.
    """
    for port, keys in keys_on_each_primary(topology, 1, f"settle{next(_markers)}-").items():
        marker = keys[0]
        assert await held(face, marker) is None
        with topology.node_at(port).client() as direct:
            direct.set(f"{RT}:{marker}", "written")
        await sees(face, marker, "written")


def keys_on_each_primary(
    topology: LocalCluster, count: int = 2, prefix: str = "k"
) -> dict[int, list[str]]:
    """``count`` keys of :data:`RT` per primary (named ``prefix`` and a number), by port."""
    found: dict[int, list[str]] = {node.port: [] for node in topology.primaries()}
    owners = slot_map(topology)
    slot_owner = {slot: port for port, slots in owners.items() for slot in slots}
    n = 0
    while any(len(keys) < count for keys in found.values()):
        n += 1
        key = f"{prefix}{n}"
        keys = found[slot_owner[key_slot(f"{RT}:{key}".encode())]]
        if len(keys) < count:
            keys.append(key)
    return found


@pytest.fixture
def raw(redis_cluster: LocalCluster) -> Iterator[RedisCluster]:
    redis_cluster.flush()
    client = RedisCluster(host="127.0.0.1", port=redis_cluster.port, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(params=FACES)
async def face(request: pytest.FixtureRequest, redis_cluster: LocalCluster) -> AsyncIterator[Face]:
    opened = new_face(request.param, near_url(redis_cluster))
    await opened.connect()
    yield opened
    await opened.disconnect()


# -- every primary is heard -------------------------------------------------------------


async def test_each_primary_is_listened_to_and_its_foreign_changes_reach_the_cache(
    face: Face, raw: RedisCluster, redis_cluster: LocalCluster
) -> None:
    listeners = face.cache.driver.cluster_listeners
    assert sorted(listeners.nodes) == sorted(name(node) for node in redis_cluster.primaries())
    by_node = keys_on_each_primary(redis_cluster)
    keys = [key for keys in by_node.values() for key in keys]
    for key in keys:
        raw.set(f"{RT}:{key}", f"old {key}")
    for key in keys:
        assert await held(face, key) == f"old {key}"
        assert await held(face, f"absent-{key}") is None  # a remembered miss
    for key in keys:
        raw.set(f"{RT}:{key}", f"new {key}")
        raw.set(f"{RT}:absent-{key}", "appeared")
    for key in keys:
        await sees(face, key, f"new {key}")
        await sees(face, f"absent-{key}", "appeared")
    await settle(face, redis_cluster)  # no invalidation of those writes still on its way
    # get_many too: held, changed on every node at once, seen.
    assert await face.get_many(RT, keys) == {key: f"new {key}" for key in keys}
    hits = stats(face).hits
    assert await face.get_many(RT, keys) == {key: f"new {key}" for key in keys}
    assert stats(face).hits == hits + len(keys)
    raw.mset({f"{RT}:{key}": f"third {key}" for key in keys[:1]})
    for key in keys[1:]:
        raw.delete(f"{RT}:{key}")

    async def all_seen() -> bool:
        return bool(await face.get_many(RT, keys) == {keys[0]: f"third {keys[0]}"})

    await eventually(all_seen, "get_many to see every node's changes")


@pytest.mark.parametrize("write", ["set", "set_many", "delete", "delete_many", "add", "incr"])
async def test_own_writes_are_read_back_at_once(
    face: Face, raw: RedisCluster, redis_cluster: LocalCluster, write: str
) -> None:
    keys = [key for keys in keys_on_each_primary(redis_cluster, 1).values() for key in keys]
    for key in keys:
        raw.set(f"{RT}:{key}", "1")
        assert await held(face, key) == "1"
    if write == "set":
        for key in keys:
            await face.set(RT, key, "2")
    elif write == "set_many":
        await face.set_many(RT, dict.fromkeys(keys, "2"))
    elif write == "delete":
        for key in keys:
            await face.delete(RT, key)
    elif write == "delete_many":
        await face.delete_many(RT, keys)
    elif write == "add":
        for key in keys:
            raw.delete(f"{RT}:{key}")
        for key in keys:
            await sees(face, key, None)
            assert await held(face, key) is None
            assert await face.add(RT, key, "2")
    else:
        for key in keys:
            assert await face.incr(RT, key, 1) == 2
    expected = None if write.startswith("delete") else "2"
    assert [await face.get(RT, key, None) for key in keys] == [expected] * len(keys)
    assert await face.get_many(RT, keys) == ({} if expected is None else dict.fromkeys(keys, "2"))


async def test_clear_drops_the_resource_type_locally(face: Face, raw: RedisCluster) -> None:
    raw.set(f"{RT}:a", "1")
    assert await held(face, "a") == "1"
    assert await face.clear(RT) == 1
    assert await face.get(RT, "a", None) is None


# -- a lost invalidation connection --------------------------------------------------------


async def test_a_lost_listener_drops_what_its_node_fed_and_every_miss_and_comes_back(
    face: Face, raw: RedisCluster, redis_cluster: LocalCluster
) -> None:
    by_node = keys_on_each_primary(redis_cluster, 1)
    victim, other = redis_cluster.primaries()[:2]
    on_victim, on_other = by_node[victim.port][0], by_node[other.port][0]
    raw.set(f"{RT}:{on_victim}", "victim's")
    raw.set(f"{RT}:{on_other}", "other's")
    await settle(face, redis_cluster)
    assert await held(face, on_victim) == "victim's"
    assert await held(face, on_other) == "other's"
    assert await held(face, "never-written") is None
    flushes = stats(face).flushes
    with victim.client() as admin:
        assert admin.client_kill_filter(_type="pubsub") >= 1  # the listener of this cache

    async def noticed() -> bool:
        return stats(face).flushes > flushes

    await eventually(noticed, "the lost listener to be noticed", bound=5)
    # Written while the listener is down (or reconnecting): never served stale.
    raw.set(f"{RT}:{on_victim}", "written meanwhile")
    assert await face.get(RT, on_victim, None) == "written meanwhile"
    misses = stats(face).misses
    assert await face.get(RT, "never-written", None) is None
    assert stats(face).misses == misses + 1  # the miss was dropped: asked again
    hits = stats(face).hits
    assert await face.get(RT, on_other, None) == "other's"  # another node's value stays
    assert stats(face).hits == hits + 1
    # The listener comes back: the victim's keys are kept, and heard, again.
    assert await held(face, on_victim) == "written meanwhile"
    raw.set(f"{RT}:{on_victim}", "after")
    await sees(face, on_victim, "after")


# -- slots migrating ---------------------------------------------------------------------------


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A 3-primary cluster of its own, without replicas: the test changes its topology."""
    topology = start_cluster(3, 0)
    try:
        yield topology
    finally:
        topology.stop()


def ask_write(node: ProcessServer, key: str, value: str) -> None:
    """Write ``key`` on ``node`` with ``ASKING``, as a client redirected by ``ASK`` does."""
    with node.client() as client:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("ASKING")
        pipe.set(key, value)
        assert pipe.execute() == [True, True]


@pytest.mark.parametrize("face_name", FACES)
@pytest.mark.parametrize("target_kind", ["a-primary", "a-primary-unheard", "a-new-primary"])
async def test_a_migrating_slot_never_leaves_a_stale_value_or_miss(
    own_cluster: LocalCluster, face_name: str, target_kind: str
) -> None:
    """Slot S moves from its primary to another (or to one just added, which serves no slot
    yet: the cache meets it through the watch). Keys written on either node meanwhile,
    foreign writes included, reach the cache. ``a-primary-unheard``: the target's listener
    is cut just before a key absent from the old node is written on it, so only the rule
    for misses (dropped while a primary is not listened to) keeps the cache right."""
    to_new_primary = target_kind == "a-new-primary"
    raw = RedisCluster(host="127.0.0.1", port=own_cluster.port, decode_responses=True)
    face = new_face(face_name, near_url(own_cluster))
    await face.connect()
    try:
        moved, absent = "{s}moved", "{s}absent"
        raw.set(f"{RT}:{moved}", "before")
        slot = key_slot(f"{RT}:{moved}".encode())
        assert key_slot(f"{RT}:{absent}".encode()) == slot
        assert await held(face, moved) == "before"
        assert await held(face, absent) is None
        if to_new_primary:
            target, _ = add_primary(own_cluster)
            listeners = face.cache.driver.cluster_listeners

            async def heard() -> bool:
                return name(target) in listeners.nodes

            await eventually(heard, "the new primary to be listened to")
        else:
            owner = own_cluster.primary_for_key(f"{RT}:{moved}")
            target = next(node for node in own_cluster.primaries() if node is not owner)
        migration = SlotMigration(own_cluster, slot, target)
        migration.begin()
        if target_kind == "a-primary-unheard":
            flushes = stats(face).flushes
            with target.client() as admin:
                assert admin.client_kill_filter(_type="pubsub") >= 1

            async def cut() -> bool:
                return stats(face).flushes > flushes

            await eventually(cut, "the target's listener to be cut")
        ask_write(target, f"{RT}:{absent}", "written on the importing node")
        await sees(face, absent, "written on the importing node")
        migration.move([f"{RT}:{moved}"])
        ask_write(target, f"{RT}:{moved}", "moved, then written")
        await sees(face, moved, "moved, then written")
        migration.finish()
        assert slot in slot_map(own_cluster)[target.port]
        raw.close()
        raw = RedisCluster(host="127.0.0.1", port=target.port, decode_responses=True)
        raw.set(f"{RT}:{moved}", "after the move")
        await sees(face, moved, "after the move")
        assert await held(face, moved) == "after the move"  # kept again, from the new owner
        raw.set(f"{RT}:{moved}", "changed on the new owner")
        await sees(face, moved, "changed on the new owner")
    finally:
        raw.close()
        await face.disconnect()


# -- failovers -----------------------------------------------------------------------------


@pytest.mark.parametrize("face_name", FACES)
@pytest.mark.parametrize("how", ["killed", "manual"])
async def test_a_failover_never_leaves_a_stale_value(
    fresh_cluster: LocalCluster, face_name: str, how: str
) -> None:
    """The primary of a held key is killed (or hands over by ``CLUSTER FAILOVER``); a foreign
    client writes the key on the new primary: the cache sees it, and listens to the new
    primary and not to the old one."""
    raw = RedisCluster(host="127.0.0.1", port=fresh_cluster.port, decode_responses=True)
    face = new_face(face_name, near_url(fresh_cluster, "&timeout=1000"))
    await face.connect()
    try:
        raw.set(f"{RT}:k", "before")
        old = fresh_cluster.primary_for_key(f"{RT}:k")
        new = fresh_cluster.replica_of(old)
        replicated(old)
        assert await held(face, "k") == "before"
        if how == "killed":
            fresh_cluster.kill(old)
            failover = None
        else:
            failover = fresh_cluster.fail_over_to(new)

        async def new_primary() -> bool:
            if failover is not None:
                return failover.done()
            return fresh_cluster.role(new) == "master"

        await eventually(new_primary, "the replica to take over", bound=30)
        with new.client() as direct:
            direct.set(f"{RT}:k", "written on the new primary")
        await sees(face, "k", "written on the new primary", failing=True)
        listeners = face.cache.driver.cluster_listeners

        async def followed() -> bool:
            nodes = set(listeners.nodes)
            return name(new) in nodes and name(old) not in nodes

        await eventually(followed, "the listeners to follow the failover", bound=30)
        assert await held(face, "k") == "written on the new primary"
        with new.client() as direct:
            direct.set(f"{RT}:k", "again")
        await sees(face, "k", "again")
    finally:
        raw.close()
        await face.disconnect()


# -- refusals, and replica reads -------------------------------------------------------------


@contextmanager
def acl_user(topology: LocalCluster, commands: list[str]) -> Iterator[str]:
    """A user allowed ``commands`` on every node; yield the near cache's URL for it."""
    nodes = topology.live_nodes()
    for node in nodes:
        with node.client() as admin:
            admin.acl_setuser("nearc", enabled=True, passwords=["+pw"], keys=["*"],
                              channels=["*"], commands=commands)  # fmt: skip
    try:
        yield f"redis://nearc:pw@127.0.0.1:{topology.port}/0?cluster=true&near_cache=true"
    finally:
        for node in nodes:
            with node.client() as admin:
                admin.acl_deluser("nearc")


@pytest.mark.parametrize("face_name", FACES)
@pytest.mark.parametrize(
    ("denied", "says"),
    [
        ("-client|tracking", "does not allow this user CLIENT TRACKING"),
        ("-cluster|nodes", "CLUSTER NODES"),
    ],
)
async def test_a_node_refusing_what_the_near_cache_needs_is_a_configuration_error(
    redis_cluster: LocalCluster, face_name: str, denied: str, says: str
) -> None:
    with acl_user(redis_cluster, ["+@all", denied]) as url:
        face = new_face(face_name, url)
        with pytest.raises(ConfigError, match="near_cache") as refused:
            await face.connect()
        assert says in str(refused.value)
        assert "pw" not in str(refused.value).replace("pevensie", "")
        assert not face.cache.connected


async def test_replica_reads_with_the_near_cache_fill_it_from_the_primaries(
    redis_cluster: LocalCluster, raw: RedisCluster
) -> None:
    for face_name in FACES:
        face = new_face(face_name, near_url(redis_cluster, "&read_from_replicas=true"))
        await face.connect()
        try:
            raw.set(f"{RT}:r", "one")
            assert await held(face, "r") == "one"
            raw.set(f"{RT}:r", "two")
            await sees(face, "r", "two")
            assert await held(face, "r") == "two"
        finally:
            await face.disconnect()


def test_the_near_cache_on_a_cluster_is_built_from_a_url_on_both_faces() -> None:
    from pevensie_cache import cache
    from pevensie_redis.cluster import NearRedisClusterDriver
    from pevensie_redis.cluster_async import AsyncNearRedisClusterDriver

    url = "redis://127.0.0.1:7000/0?cluster=true&near_cache=true&near_cache_max_bytes=8MiB"
    assert isinstance(cache.from_url(url).driver, NearRedisClusterDriver)
    assert isinstance(cache.from_url_async(url).driver, AsyncNearRedisClusterDriver)
    assert cache.from_url(url).driver.config.near_cache_max_bytes == 8 << 20


def test_disconnected_stats_are_none(redis_cluster: LocalCluster) -> None:
    from pevensie_cache import cache

    c = cache.from_url(near_url(redis_cluster)).connect()
    assert c.driver.near_cache_stats() is not None
    c.disconnect()
    assert c.driver.near_cache_stats() is None


@pytest.mark.parametrize("face_name", FACES)
async def test_a_frozen_primary_s_entries_are_dropped_within_two_heartbeats(
    steady_cluster: LocalCluster, face_name: str
) -> None:
    """A primary stops answering (SIGSTOP; not failed over: 15 s node timeout). Its listener
    hears nothing: after a heartbeat of silence it sends PING, a heartbeat later it gives
    up, and what that node fed is dropped (another node's values stay). The staleness
    bound of a silent break, as on one server."""
    raw = RedisCluster(host="127.0.0.1", port=steady_cluster.port, decode_responses=True)
    face = new_face(face_name, near_url(steady_cluster, "&timeout=1000"))
    await face.connect()
    by_node = keys_on_each_primary(steady_cluster, 1)
    victim, other = steady_cluster.primaries()[:2]
    on_victim, on_other = by_node[victim.port][0], by_node[other.port][0]
    try:
        raw.set(f"{RT}:{on_victim}", "frozen")
        raw.set(f"{RT}:{on_other}", "alive")
        await settle(face, steady_cluster)
        assert await held(face, on_victim) == "frozen"
        assert await held(face, on_other) == "alive"
        assert victim.pid is not None
        flushes = stats(face).flushes
        os.kill(victim.pid, signal.SIGSTOP)
        try:

            async def dropped() -> bool:
                return stats(face).flushes > flushes

            await eventually(dropped, "the frozen node's entries to be dropped", bound=6)
            hits = stats(face).hits
            assert await face.get(RT, on_other, None) == "alive"
            assert stats(face).hits == hits + 1
        finally:
            os.kill(victim.pid, signal.SIGCONT)
        assert await held(face, on_victim) == "frozen"  # listened to again, kept again
    finally:
        raw.close()
        await face.disconnect()


async def test_the_byte_bound_holds_on_a_cluster_and_instrument_exports_its_figures(
    redis_cluster: LocalCluster, raw: RedisCluster
) -> None:
    """``near_cache_max_bytes`` bounds the one store every primary feeds; ``instrument()``
    exports the same figures ``near_cache_stats()`` gives."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from pevensie_cache import instrument, uninstrument

    bound = 64_000
    value = "x" * 10_000
    keys = [f"big{n}" for n in range(40)]  # about 400 kB in all, over every primary
    raw.mset_nonatomic({f"{RT}:{key}": value for key in keys})
    for face_name in FACES:
        face = new_face(face_name, near_url(redis_cluster, f"&near_cache_max_bytes={bound}"))
        await face.connect()
        reader = InMemoryMetricReader()
        instrument(face.cache, meter_provider=MeterProvider(metric_readers=[reader]))
        try:
            for _ in range(3):
                for key in keys:
                    assert await face.get(RT, key) == value
                    assert stats(face).bytes <= bound
                assert await face.get_many(RT, keys) == dict.fromkeys(keys, value)
                assert stats(face).bytes <= bound
            figures = stats(face)
            assert figures.evictions > 0
            assert 0 < figures.entries < len(keys)
            data = reader.get_metrics_data()
            assert data is not None
            exported = {
                metric.name: metric.data.data_points[0].value
                for resource in data.resource_metrics
                for scope in resource.scope_metrics
                for metric in scope.metrics
                if metric.name
                in ("pevensie.cache.near_cache.entries", "pevensie.cache.near_cache.memory.usage")
            }
            assert exported == {
                "pevensie.cache.near_cache.entries": figures.entries,
                "pevensie.cache.near_cache.memory.usage": figures.bytes,
            }
        finally:
            uninstrument(face.cache)
            await face.disconnect()


def _hit(c: Any, key: str) -> str | None:
    """Read ``key`` through the sync cache ``c`` until a read is a local hit; return it."""
    deadline = time.monotonic() + WAIT
    while True:
        hits = c.driver.near_cache_stats().hits
        value = c.get(RT, key, None)
        if c.driver.near_cache_stats().hits == hits + 1:
            return value  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"{key} was never served locally")
        time.sleep(0.002)


def _until(c: Any, key: str, expected: str) -> None:
    deadline = time.monotonic() + WAIT
    while c.get(RT, key, None) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"{key} never read {expected!r}")
        time.sleep(0.002)


def _child_report(c: Any, port: int) -> dict[str, object]:
    """The child's whole life: change the key, read it through the inherited cache."""
    raw = RedisCluster(host="127.0.0.1", port=port, decode_responses=True)
    raw.set(f"{RT}:f", "written in the child")
    time.sleep(0.5)  # far above the invalidation latency, had anyone here listened
    report = {"read": c.get(RT, "f", None)}
    report["held"] = _hit(c, "f")
    raw.set(f"{RT}:f", "written again in the child")
    _until(c, "f", "written again in the child")
    report["read again"] = c.get(RT, "f", None)
    raw.close()
    return report


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_serves_nothing_it_inherited_and_listens_on_its_own(
    redis_cluster: LocalCluster, raw: RedisCluster
) -> None:
    """The sync face after os.fork(): the parent's listener and watch threads do not exist
    in the child, so what it inherited is not served; its first read starts its own."""
    from pevensie_cache import cache

    c = cache.from_url(near_url(redis_cluster)).connect()
    try:
        raw.set(f"{RT}:f", "before")
        assert _hit(c, "f") == "before"
        report = in_child(lambda: _child_report(c, redis_cluster.port), bound=NEAR_CHILD_BOUND)
        assert report == {
            "read": "written in the child",
            "held": "written in the child",
            "read again": "written again in the child",
        }
        _until(c, "f", "written again in the child")  # the parent's listeners still work
        assert _hit(c, "f") == "written again in the child"
    finally:
        c.disconnect()


def test_an_interrupt_as_the_listeners_start_leaves_none_running(
    redis_cluster: LocalCluster,
) -> None:
    """A signal handler's exception lands as ``connect()`` has started the listeners."""
    import threading

    from interrupt_support import Interrupt, interrupt_after

    import pevensie_redis.cluster_near as cluster_near
    from pevensie_cache import cache

    threads = threading.active_count()
    c = cache.from_url(near_url(redis_cluster))
    start = cluster_near.ClusterListeners.start
    try:
        with interrupt_after(cluster_near.ClusterListeners, "start"), pytest.raises(Interrupt):
            c.connect()
    finally:
        cluster_near.ClusterListeners.start = start  # type: ignore[method-assign]
    assert not c.connected
    deadline = time.monotonic() + 5
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threading.active_count() == threads  # no listener thread left running
    with c:
        assert c.get("user", "near-interrupted", None) is None
