"""The Redis Cluster mode on a real 3-primary / 3-replica cluster started by the tests."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import ClassVar

import pytest
import pytest_asyncio
import redis
from redis.cluster import RedisCluster

from pevensie_cache import AsyncPevensieCache, cache
from pevensie_cache.cache import PevensieCache
from pevensie_cache.testing import AsyncCacheConformance, CacheConformance
from pevensie_redis import (
    RedisAuthenticationError,
    RedisConnectionError,
    RedisDriverError,
    RedisPoolExhausted,
    RedisServerError,
    RedisTimeoutError,
)
from pevensie_redis.cluster import RedisClusterDriver
from pevensie_redis.protocol.slots import key_slot
from pevensie_redis.testing import TLSMaterial
from pevensie_test_support import LocalCluster, start_cluster, wait_until
from pevensie_test_support.faces import FACES, new_face, replicated

FAILOVER_BOUND = 20.0
"""Seconds within which the same cache object must serve again after a primary dies.

With cluster-node-timeout 1000 ms the promotion itself takes about 2-3 s here;
the bound leaves room for a loaded CI machine.
"""


def cluster_url(topology: LocalCluster, **query: str) -> str:
    options = "&".join(f"{name}={value}" for name, value in {"cluster": "true", **query}.items())
    return f"redis://127.0.0.1:{topology.port}/0?{options}"


@pytest.fixture
def cluster_cache(redis_cluster: LocalCluster) -> Iterator[PevensieCache]:
    redis_cluster.flush()
    c = cache.from_url(cluster_url(redis_cluster)).connect()
    yield c
    if c.connected:
        c.disconnect()


@pytest.mark.server_dependent  # the cluster answers every command the driver sends
class TestClusterConformance(CacheConformance):
    """The whole conformance suite, against the cluster."""

    @pytest.fixture
    def cache_under_test(self, cluster_cache: PevensieCache) -> PevensieCache:
        return cluster_cache

    @pytest.fixture
    def stored_keys(self, redis_cluster: LocalCluster) -> Callable[[], set[str]]:
        return redis_cluster.stored_keys  # every primary, scanned node by node


def untagged(stored: set[str]) -> set[str]:
    """Map ``{resource_type}:key`` back to ``resource_type:key`` (a resource type has no colon)."""
    result = set()
    for full in stored:
        assert full.startswith("{"), full
        resource_type, _, key = full[1:].partition("}:")
        result.add(f"{resource_type}:{key}")
    return result


class TestClusterHashTagConformance(CacheConformance):
    """The whole suite again with ``cluster_hash_tag``: every batch is one slot, one command."""

    @pytest.fixture
    def cache_under_test(self, redis_cluster: LocalCluster) -> Iterator[PevensieCache]:
        redis_cluster.flush()
        c = cache.from_url(cluster_url(redis_cluster, cluster_hash_tag="true")).connect()
        yield c
        if c.connected:
            c.disconnect()

    @pytest.fixture
    def stored_keys(self, redis_cluster: LocalCluster) -> Callable[[], set[str]]:
        return lambda: untagged(redis_cluster.stored_keys())


class TestNearClusterConformance(CacheConformance):
    """The whole suite again with the near cache on: reads served locally, the same behaviour."""

    @pytest.fixture
    def cache_under_test(self, redis_cluster: LocalCluster) -> Iterator[PevensieCache]:
        redis_cluster.flush()
        c = cache.from_url(cluster_url(redis_cluster, near_cache="true")).connect()
        yield c
        if c.connected:
            c.disconnect()

    @pytest.fixture
    def stored_keys(self, redis_cluster: LocalCluster) -> Callable[[], set[str]]:
        return redis_cluster.stored_keys


class AsyncClusterSuite(AsyncCacheConformance):
    """The whole conformance suite on the async face, against the cluster (``query``: options)."""

    query: ClassVar[dict[str, str]] = {}

    @pytest_asyncio.fixture
    async def cache_under_test(
        self, redis_cluster: LocalCluster
    ) -> AsyncIterator[AsyncPevensieCache]:
        redis_cluster.flush()
        c = await cache.from_url_async(cluster_url(redis_cluster, **self.query)).connect()
        yield c
        if c.connected:
            await c.disconnect()

    @pytest.fixture
    def stored_keys(self, redis_cluster: LocalCluster) -> Callable[[], set[str]]:
        if self.query.get("cluster_hash_tag"):
            return lambda: untagged(redis_cluster.stored_keys())
        return redis_cluster.stored_keys


@pytest.mark.server_dependent  # the cluster answers every command the driver sends
class TestAsyncClusterConformance(AsyncClusterSuite):
    """The whole conformance suite on the async face, against the cluster."""


class TestAsyncClusterHashTagConformance(AsyncClusterSuite):
    """The whole suite again with ``cluster_hash_tag``: the same commands, other keys."""

    query: ClassVar[dict[str, str]] = {"cluster_hash_tag": "true"}


class TestAsyncNearClusterConformance(AsyncClusterSuite):
    """The whole suite again with the near cache on (and hash tags: batches in one slot)."""

    query: ClassVar[dict[str, str]] = {"near_cache": "true", "cluster_hash_tag": "true"}


def test_url_and_keywords_build_the_cluster_driver(redis_cluster: LocalCluster) -> None:
    by_url = cache.from_url(cluster_url(redis_cluster))
    by_name = cache.new(driver="redis", host="127.0.0.1", port=redis_cluster.port, cluster=True)
    assert isinstance(by_url.driver, RedisClusterDriver)
    assert isinstance(by_name.driver, RedisClusterDriver)
    assert by_url.driver.config == by_name.driver.config


def test_single_keys_land_on_the_node_that_owns_their_slot(
    cluster_cache: PevensieCache, redis_cluster: LocalCluster
) -> None:
    for i in range(30):
        cluster_cache.set("user", str(i), f"value {i}")
    owners = set()
    for i in range(30):
        node = redis_cluster.primary_for_key(f"user:{i}")
        owners.add(node.port)
        with node.client() as raw:
            assert raw.get(f"user:{i}") == f"value {i}"
    assert len(owners) == 3  # the keys really span the cluster


def test_batches_across_slots_never_hit_crossslot(
    cluster_cache: PevensieCache, redis_cluster: LocalCluster
) -> None:
    keys = [f"k{i}" for i in range(300)]
    # The same keys in one raw MGET are refused by the server: they span slots.
    node = redis_cluster.primaries()[0]
    with node.client() as raw, pytest.raises(redis.ResponseError, match="same slot"):
        raw.mget([f"bulk:{k}" for k in keys[:20]])

    cluster_cache.set_many("bulk", {k: f"v-{k}" for k in keys})
    assert cluster_cache.get_many("bulk", keys) == {k: f"v-{k}" for k in keys}
    cluster_cache.set_many("bulk", {k: f"ttl-{k}" for k in keys[:100]}, ttl_seconds=100)
    cluster_cache.delete_many("bulk", keys[200:])
    expected = {k: f"ttl-{k}" for k in keys[:100]} | {k: f"v-{k}" for k in keys[100:200]}
    assert cluster_cache.get_many("bulk", [*keys, "absent", "k5", "k5"]) == expected
    assert redis_cluster.stored_keys() == {f"bulk:{k}" for k in keys[:200]}
    with redis_cluster.primary_for_key("bulk:k1").client() as raw:
        assert 90 < raw.ttl("bulk:k1") <= 100
    with redis_cluster.primary_for_key("bulk:k150").client() as raw:
        assert raw.ttl("bulk:k150") == -1


def test_batches_give_the_same_results_as_one_server(cluster_cache: PevensieCache) -> None:
    reference = cache.new(driver="memory").connect()
    steps: list[tuple[str, tuple[object, ...]]] = [
        ("set_many", ("user", {f"u{i}": f"user {i}" for i in range(120)})),
        ("set_many", ("team", {f"t{i}": "é" * i for i in range(1, 60)}, 60)),
        ("delete_many", ("user", [f"u{i}" for i in range(0, 120, 3)] + ["nobody"])),
        ("set_many", ("user", {"u0": "back", "u1": "changed"})),
        ("delete_many", ("team", ["t1", "t1", "t2"])),
    ]
    for name, args in steps:
        getattr(cluster_cache, name)(*args)
        getattr(reference, name)(*args)
    for resource_type, keys in (
        ("user", [f"u{i}" for i in range(130)]),
        ("team", [f"t{i}" for i in range(70)]),
    ):
        assert cluster_cache.get_many(resource_type, keys) == reference.get_many(
            resource_type, keys
        )
    reference.disconnect()


def test_threads_share_small_node_pools_in_batches_without_deadlock(
    redis_cluster: LocalCluster,
) -> None:
    redis_cluster.flush()
    c = cache.from_url(cluster_url(redis_cluster, pool_size="2", timeout="5000")).connect()
    errors: list[str] = []

    def work(worker: int) -> None:
        try:
            for i in range(30):
                items = {f"w{worker}-{i}-{k}": f"{worker}.{i}.{k}" for k in range(40)}
                c.set_many("threads", items, ttl_seconds=60 if i % 2 else None)
                got = c.get_many("threads", list(items))
                if got != items:
                    errors.append(f"worker {worker} round {i}: {len(got)} of {len(items)}")
                c.delete_many("threads", list(items)[:20])
        except Exception as exc:
            errors.append(f"worker {worker}: {exc!r}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert len(redis_cluster.stored_keys()) == 8 * 30 * 20
    finally:
        c.disconnect()


def test_keys_are_readable_by_a_plain_cluster_client(
    cluster_cache: PevensieCache, redis_cluster: LocalCluster
) -> None:
    cluster_cache.set("user", "42", "Ada")
    cluster_cache.set_many("user", {"1": "one", "2": "two"})
    raw = RedisCluster(host="127.0.0.1", port=redis_cluster.port, decode_responses=True)
    try:
        assert raw.get("user:42") == "Ada"
        assert raw.mget_nonatomic(["user:1", "user:2"]) == ["one", "two"]
        raw.set("user:7", "from raw")
    finally:
        raw.close()
    assert cluster_cache.get("user", "7") == "from raw"


def test_hash_tag_option_puts_a_resource_type_in_one_slot(redis_cluster: LocalCluster) -> None:
    redis_cluster.flush()
    c = cache.from_url(cluster_url(redis_cluster, cluster_hash_tag="true")).connect()
    try:
        items = {f"k{i}": f"v{i}" for i in range(100)}
        c.set_many("user", items)
        c.set("team", "1", "one")
        assert c.get_many("user", list(items)) == items
        assert c.get("team", "1") == "one"
        stored = redis_cluster.stored_keys()
        assert stored == {f"{{user}}:{k}" for k in items} | {"{team}:1"}
        with redis_cluster.nodes[0].client() as raw:
            slots = {raw.execute_command("CLUSTER KEYSLOT", key) for key in stored - {"{team}:1"}}
            assert slots == {raw.execute_command("CLUSTER KEYSLOT", "user")}
        owner = redis_cluster.primary_for_key("{user}:k1")
        with owner.client() as raw:
            assert raw.dbsize() >= 100  # every user key on that one node
        c.delete_many("user", list(items))
        assert c.get_many("user", list(items)) == {}
    finally:
        c.disconnect()


def test_default_layout_has_no_hash_tag(
    cluster_cache: PevensieCache, redis_cluster: LocalCluster
) -> None:
    cluster_cache.set_many("user", {"a": "1", "b": "2"})
    assert redis_cluster.stored_keys() == {"user:a", "user:b"}


@pytest.mark.server_dependent
def test_set_many_with_ttl_works_for_a_user_denied_scripts(redis_cluster: LocalCluster) -> None:
    for node in redis_cluster.live_nodes():
        with node.client() as raw:
            raw.execute_command(
                "ACL", "SETUSER", "noscripts", "on", ">noscripts-pw", "~*", "&*", "+@all",
                "-@scripting",
            )  # fmt: skip
    redis_cluster.flush()
    as_user = redis.Redis(
        host="127.0.0.1", port=redis_cluster.port, username="noscripts", password="noscripts-pw"
    )
    with as_user, pytest.raises(redis.exceptions.NoPermissionError):
        as_user.execute_command("EVAL", "return 1", 0)
    url = f"redis://noscripts:noscripts-pw@127.0.0.1:{redis_cluster.port}/0?cluster=true"
    c = cache.from_url(url).connect()
    try:
        items = {f"k{i}": f"v{i}" for i in range(120)}
        c.set_many("bulk", items, ttl_seconds=60)  # falls back to SET ... EX per key
        c.set_many("bulk", {"a": "1", "b": "2"}, ttl_seconds=60)  # and stays there
        assert c.get_many("bulk", [*items, "a", "b"]) == items | {"a": "1", "b": "2"}
        with redis_cluster.primary_for_key("bulk:k7").client() as raw:
            assert 50 < raw.ttl("bulk:k7") <= 60
    finally:
        c.disconnect()


@pytest.mark.server_dependent
def test_password_protected_cluster(auth_cluster: LocalCluster, topology_password: str) -> None:
    url = f"redis://:{topology_password}@127.0.0.1:{auth_cluster.port}/0?cluster=true"
    c = cache.from_url(url).connect()
    try:
        c.set_many("user", {str(i): str(i) for i in range(50)}, ttl_seconds=60)
        assert c.get_many("user", [str(i) for i in range(50)]) == {
            str(i): str(i) for i in range(50)
        }
        assert topology_password not in repr(c)
        assert topology_password not in repr(c.driver)
    finally:
        c.disconnect()


@pytest.mark.server_dependent
@pytest.mark.parametrize("password", [None, "wrong-password"])
def test_wrong_or_missing_password_is_an_authentication_error(
    auth_cluster: LocalCluster, password: str | None
) -> None:
    c = cache.new(
        driver="redis", host="127.0.0.1", port=auth_cluster.port, cluster=True, password=password
    )
    with pytest.raises(RedisAuthenticationError) as caught:
        c.connect()
    assert "wrong-password" not in str(caught.value)
    assert not c.connected


@pytest.mark.server_dependent
def test_tls_cluster_with_a_trusted_ca(
    tls_cluster: LocalCluster, tls_material: TLSMaterial
) -> None:
    url = f"rediss://127.0.0.1:{tls_cluster.port}/0?cluster=true&tls_ca_file={tls_material.ca_file}"
    c = cache.from_url(url).connect()
    try:
        items = {f"k{i}": f"v{i}" for i in range(100)}
        c.set_many("bulk", items, ttl_seconds=60)
        c.set("user", "42", "Ada")
        assert c.get_many("bulk", list(items)) == items
        assert c.get("user", "42") == "Ada"
        c.delete_many("bulk", list(items))
        assert tls_cluster.stored_keys() >= {"user:42"}
        assert not any(key.startswith("bulk:") for key in tls_cluster.stored_keys())
    finally:
        c.disconnect()


@pytest.mark.server_dependent
def test_tls_cluster_with_an_untrusted_ca_is_refused(
    tls_cluster: LocalCluster, tls_material: TLSMaterial
) -> None:
    c = cache.new(
        driver="redis",
        host="127.0.0.1",
        port=tls_cluster.port,
        cluster=True,
        tls=True,
        tls_ca_file=str(tls_material.untrusted_ca_file),
    )
    with pytest.raises(RedisConnectionError, match="certificate verification failed"):
        c.connect()


def test_a_busy_node_pool_is_pool_exhausted(redis_cluster: LocalCluster) -> None:
    c = cache.from_url(cluster_url(redis_cluster, pool_size="1", timeout="300")).connect()
    try:
        driver = c.driver
        assert isinstance(driver, RedisClusterDriver)
        router = driver.router
        assert router is not None
        node = router.node_of(key_slot(b"user:42"))
        assert node is not None
        pool = router.channel(node).pool
        held = pool.get_connection()  # the node's only connection, taken by someone else
        try:
            with pytest.raises(RedisPoolExhausted):
                c.get("user", "42")
            with pytest.raises(RedisPoolExhausted):
                c.get_many("user", ["42", "43"])
        finally:
            pool.release(held)
        assert c.get("user", "42", None) is None
    finally:
        c.disconnect()


def test_no_cluster_there_is_a_connection_error() -> None:
    from pevensie_redis.testing.binaries import free_port

    c = cache.new(driver="redis", host="127.0.0.1", port=free_port(), cluster=True, timeout=500)
    started = time.monotonic()
    with pytest.raises(RedisConnectionError):
        c.connect()
    assert time.monotonic() - started < 10


def test_an_unresponsive_node_times_out_and_is_served_again_after(
    steady_cluster: LocalCluster,
) -> None:
    timeout_ms, retries = 500, 1
    c = cache.from_url(
        cluster_url(steady_cluster, timeout=str(timeout_ms), retries=str(retries))
    ).connect()
    try:
        c.set("user", "42", "Ada")
        victim = steady_cluster.primary_for_key("user:42")
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGSTOP)
        try:
            # The thin path's attempt, then RedisCluster's attempt and its retries.
            bound = (retries + 2) * timeout_ms / 1000 + 2.0
            for call in (
                lambda: c.get("user", "42"),
                lambda: c.get_many("user", [str(i) for i in range(50)]),
                lambda: c.set_many("user", {str(i): "x" for i in range(50)}, ttl_seconds=5),
            ):
                started = time.monotonic()
                with pytest.raises(RedisTimeoutError):
                    call()
                assert time.monotonic() - started < bound
        finally:
            os.kill(victim.pid, signal.SIGCONT)
        assert c.get("user", "42") == "Ada"
    finally:
        c.disconnect()


@pytest.mark.server_dependent
def test_set_many_reloads_the_script_after_script_flush(
    cluster_cache: PevensieCache, redis_cluster: LocalCluster
) -> None:
    same_slot = {f"{{tag}}{i}": f"first {i}" for i in range(20)}  # one slot: one EVALSHA
    cluster_cache.set_many("s", same_slot, ttl_seconds=60)
    for primary in redis_cluster.primaries():
        with primary.client() as raw:
            raw.script_flush()
    cluster_cache.set_many("s", {k: f"second {k}" for k in same_slot}, ttl_seconds=60)
    assert cluster_cache.get_many("s", list(same_slot)) == {k: f"second {k}" for k in same_slot}
    with redis_cluster.primary_for_key("s:{tag}1").client() as raw:
        assert 50 < raw.ttl("s:{tag}1") <= 60


NEAR = pytest.mark.parametrize("near", [{}, {"near_cache": "true"}], ids=["plain", "near_cache"])
"""A test again with the near cache on."""


@pytest.mark.server_dependent
@NEAR
def test_a_manual_failover_is_followed_through_moved_redirects(
    fresh_cluster: LocalCluster, near: dict[str, str]
) -> None:
    c = cache.from_url(cluster_url(fresh_cluster, **near)).connect()
    try:
        items = {f"k{i}": f"v{i}" for i in range(200)}
        c.set_many("bulk", items)
        c.set("user", "42", "Ada")
        old = fresh_cluster.primary_for_key("user:42")
        new = fresh_cluster.replica_of(old)
        replicated(old)  # the replica holds every write before it takes over
        failover = fresh_cluster.fail_over_to(new)
        # Polls until the replica has caught up, won the vote and the roles are gossiped:
        # about a second; the bound only catches a failover that never completes.
        wait_until(
            lambda: failover.done() and fresh_cluster.role(old) == "slave",
            30,
            "the manual failover",
        )
        # The driver's slot map still names the old primary: every call meets MOVED first.
        assert c.get("user", "42") == "Ada"
        assert c.get_many("bulk", list(items)) == items
        c.set_many("bulk", {k: "new" for k in items}, ttl_seconds=60)
        c.set("user", "43", "after")
        c.delete_many("bulk", list(items)[:100])
        assert c.get_many("bulk", list(items)) == {k: "new" for k in list(items)[100:]}
        assert c.get("user", "43") == "after"
        with new.client() as raw:
            assert raw.get("user:43") == "after"
    finally:
        c.disconnect()


@pytest.mark.server_dependent
@NEAR
def test_failover_keeps_serving_replicated_keys(
    fresh_cluster: LocalCluster, capsys: pytest.CaptureFixture[str], near: dict[str, str]
) -> None:
    c = cache.from_url(cluster_url(fresh_cluster, timeout="1000", **near)).connect()
    try:
        items = {f"k{i}": f"v{i}" for i in range(200)}
        c.set_many("bulk", items)
        c.set("user", "42", "Ada")
        victim = fresh_cluster.primary_for_key("user:42")
        replica = fresh_cluster.replica_of(victim)
        for primary in fresh_cluster.primaries():
            replicated(primary)  # every write reached a replica

        fresh_cluster.kill(victim)
        killed_at = time.monotonic()
        failures = 0
        while True:
            try:
                assert c.get("user", "42") == "Ada"
                break
            except RedisDriverError:
                failures += 1
                assert time.monotonic() - killed_at < FAILOVER_BOUND, "no failover in time"
                time.sleep(0.05)
        served_after = time.monotonic() - killed_at

        assert fresh_cluster.role(replica) == "master"
        # Every node agrees the cluster is up again (one answered already: Redis 7's
        # others can still say CLUSTERDOWN for a moment), then nothing was lost.
        fresh_cluster.wait_until_ok()
        assert c.get_many("bulk", list(items)) == items
        c.set("user", "43", "written after the failover")
        assert c.get("user", "43") == "written after the failover"
        c.set_many("bulk", {k: "new" for k in items}, ttl_seconds=60)
        assert set(c.get_many("bulk", list(items)).values()) == {"new"}
        with capsys.disabled():
            print(
                f"\n[cluster failover{', near cache' if near else ''}] primary killed -> "
                "same cache served again after "
                f"{served_after:.2f} s ({failures} failed calls meanwhile)"
            )
    finally:
        c.disconnect()


@pytest.mark.parametrize("face", FACES)
async def test_a_slot_no_node_serves_fails_typed_and_is_served_once_assigned(face: str) -> None:
    """Every node forgets one slot (``CLUSTER DELSLOTS``): calls for it fail typed, in bounds.

    The driver's slot map still names the owner, which now answers
    ``CLUSTERDOWN``; once the map is read again the slot has no node. When
    the owner takes the slot back (``CLUSTER ADDSLOTS``), the same cache
    serves it again, without reconnecting.
    """
    topology = start_cluster(3, 0)
    c = new_face(face, cluster_url(topology, timeout="500"))
    try:
        await c.connect()
        await c.set("user", "42", "Ada")
        slot = key_slot(b"user:42")
        owner = topology.primary_for_key("user:42")
        for node in topology.primaries():
            with node.client() as raw:
                raw.execute_command("CLUSTER", "DELSLOTS", slot)
        retries, timeout = 1, 0.5
        bound = (retries + 1) * 2 * timeout + 2.0
        for call in (lambda: c.get("user", "42"), lambda: c.get_many("user", ["42", "43"])):
            started = time.monotonic()
            with pytest.raises((RedisConnectionError, RedisServerError)):
                await call()
            assert time.monotonic() - started < bound
        with owner.client() as raw:
            raw.execute_command("CLUSTER", "ADDSLOTS", slot)
        topology.wait_until_ok()
        assert await c.get("user", "42") == "Ada"
        assert await c.get_many("user", ["42", "43"]) == {"42": "Ada"}
    finally:
        await c.disconnect()
        topology.stop()
