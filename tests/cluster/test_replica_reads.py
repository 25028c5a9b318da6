"""Replica reads (``read_from_replicas``) on a real 3+3 cluster and a real Sentinel topology.

Where reads and writes land is counted on the servers themselves (``INFO
commandstats`` and ``INFO errorstats``); replicas are killed by PID, and a
replica's link to its primary is cut by giving it credentials its primary
refuses (``masteruser``) and dropping the link (``CLIENT KILL TYPE master``):
it keeps answering reads, with the data it had, and reports the link down.
Each test drives both faces, sync and async, on the same topology.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from redis.crc import key_slot

from pevensie_cache import ConfigError, cache
from pevensie_redis import RedisConfig
from pevensie_redis.replica_choice import AVOID_SECONDS, CHECK_INTERVAL, ReplicaChoice
from pevensie_redis.testing import ProcessServer
from pevensie_test_support import LocalCluster, LocalSentinel, faces, start_cluster, wait_until
from pevensie_test_support.faces import replicated

# The outcome depends on the server: replication, ROLE and replicas' refusals are the server's.
pytestmark = pytest.mark.server_dependent

KEYS = [f"k{i}" for i in range(60)]
READ_COMMANDS = ("get", "mget")
REFUSED_WRITE = {"MOVED", "READONLY", "ASK"}
"""What a replica answers a client's write with: MOVED in a cluster, READONLY elsewhere."""


class Face(faces.Face):
    """A face that also shows how its driver chooses replicas."""

    @property
    def choice(self) -> ReplicaChoice:
        driver = self.cache.driver
        if hasattr(driver, "replica_choice"):
            found = driver.replica_choice
        else:
            found = driver.replica_reads.choice
        assert isinstance(found, ReplicaChoice)
        return found


@asynccontextmanager
async def both_faces(url: str) -> AsyncIterator[list[Face]]:
    async with faces.both_faces(url) as opened:
        yield [Face(face.name, face.cache) for face in opened]


def cluster_url(topology: LocalCluster, **query: str) -> str:
    options = {"cluster": "true", "read_from_replicas": "true", **query}
    return f"redis://127.0.0.1:{topology.port}/0?" + "&".join(
        f"{k}={v}" for k, v in options.items()
    )


def sentinel_url(topology: LocalSentinel, password: str | None, **query: str) -> str:
    options = {"read_from_replicas": "true", **query}
    hosts = ",".join(f"{host}:{port}" for host, port in topology.sentinels)
    userinfo = f":{password}@" if password else ""
    return f"redis+sentinel://{userinfo}{hosts}/{topology.service_name}?" + "&".join(
        f"{k}={v}" for k, v in options.items()
    )


def calls(node: ProcessServer, *commands: str) -> int:
    """How many times ``node`` ran ``commands`` since its statistics were reset."""
    with node.client() as raw:
        stats = raw.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in commands)


def refused_writes(node: ProcessServer) -> dict[str, int]:
    """The MOVED/READONLY/ASK replies ``node`` sent since its statistics were reset."""
    with node.client() as raw:
        stats = raw.info("errorstats")
    found = {name.removeprefix("errorstat_"): int(value["count"]) for name, value in stats.items()}
    return {code: count for code, count in found.items() if code in REFUSED_WRITE}


def reset_stats(nodes: list[ProcessServer]) -> None:
    for node in nodes:
        with node.client() as raw:
            raw.config_resetstat()


def seed_cluster(topology: LocalCluster) -> dict[str, str]:
    """Store ``user:<key>`` for every key, replicated, with every replica listed by CLUSTER SLOTS.

    A cluster lists a replica in CLUSTER SLOTS only once it has replicated
    something, so a fresh cluster must have taken writes first.
    """
    values = {key: f"value of {key}" for key in KEYS}
    with cache.from_url(f"redis://127.0.0.1:{topology.port}/0?cluster=true") as plain:
        plain.set_many("user", values)
    for primary in topology.primaries():
        replicated(primary)

    # A range's entry: start, end, its primary, then each replica. Every node asked (the
    # driver may ask any), every replica listed: with two replicas a primary, Redis 7 once
    # listed only one for a while, and a face that connected then read from that one alone.
    per_range = 3 + len(topology.nodes) // topology.shards - 1

    def listed() -> bool:
        for node in topology.live_nodes():
            with node.client() as raw:
                ranges = raw.execute_command("CLUSTER SLOTS")
            if not all(len(entry) >= per_range for entry in ranges):
                return False
        return True

    wait_until(listed, 30, "every replica listed by CLUSTER SLOTS on every node")
    return values


def cut_link(replica: ProcessServer) -> dict[str, str]:
    """Cut ``replica``'s link to its primary until :func:`mend_link`; return what to restore."""
    with replica.client() as raw:
        saved = {
            name: str(raw.config_get(name).get(name) or "") for name in ("masteruser", "masterauth")
        }
        # Its primary refuses this user from now on (without masterauth, no AUTH is sent).
        raw.config_set("masteruser", "no-such-user")
        raw.config_set("masterauth", saved["masterauth"] or "no-such-password")
        raw.execute_command("CLIENT", "KILL", "TYPE", "master")
    wait_until(lambda: not link_up(replica), 10, f"{replica.name}'s link to go down")
    return saved


def mend_link(replica: ProcessServer, saved: dict[str, str]) -> None:
    with replica.client() as raw:
        for name, value in saved.items():
            raw.config_set(name, value)
    wait_until(lambda: link_up(replica), 30, f"{replica.name}'s link to come back")


def link_up(replica: ProcessServer) -> bool:
    with replica.client() as raw:
        role = raw.execute_command("ROLE")
    return bool(role[0] == "slave" and role[3] == "connected")


# -- configuration -------------------------------------------------------------------------


def test_the_option_reads_from_urls_and_keywords_and_needs_replicas() -> None:
    config = RedisConfig.from_url("redis://h:7000?cluster=true&read_from_replicas=true")
    assert config.read_from_replicas
    assert RedisConfig.from_url(config.display_url()) == config
    assert "read_from_replicas=true" in config.display_url()
    sentinel = RedisConfig.from_url("redis+sentinel://s1,s2/svc?read_from_replicas=yes")
    assert sentinel.read_from_replicas
    assert cache.new(driver="redis", cluster=True, read_from_replicas="true").driver.config == (
        RedisConfig(cluster=True, read_from_replicas=True)
    )
    with pytest.raises(ConfigError, match="read_from_replicas needs cluster=True or sentinels"):
        RedisConfig(read_from_replicas=True)
    with pytest.raises(ConfigError, match="read_from_replicas needs"):
        RedisConfig.from_url("redis://h:6379?read_from_replicas=true")
    with pytest.raises(ConfigError, match="read_from_replicas must be a bool"):
        RedisConfig(cluster=True, read_from_replicas="sometimes")  # type: ignore[arg-type]


def test_rotation_takes_replicas_in_turn_and_skips_those_avoided() -> None:
    choice = ReplicaChoice()
    assert choice.pick([]) is None
    picks = [choice.pick(["a", "b", "c"]) for _ in range(6)]
    assert sorted(picks) == ["a", "a", "b", "b", "c", "c"]
    choice.avoid("b")
    assert {choice.pick(["a", "b", "c"]) for _ in range(10)} == {"a", "c"}
    assert choice.avoided() == ["b"]
    choice.avoid("a")
    choice.avoid("c")
    assert choice.pick(["a", "b", "c"]) is None  # every replica avoided: ask the primary
    assert choice.check_due("a")
    assert not choice.check_due("a")  # checked at most once per interval


# -- Cluster -------------------------------------------------------------------------------


async def test_cluster_reads_go_to_replicas_and_writes_never_do(
    redis_cluster: LocalCluster,
) -> None:
    redis_cluster.flush()
    values = seed_cluster(redis_cluster)
    primaries, replicas = redis_cluster.primaries(), redis_cluster.replicas()
    assert len(replicas) == 3
    slots_of_batch = len({key_slot(f"user:{key}".encode()) for key in KEYS})
    async with both_faces(cluster_url(redis_cluster)) as faces:
        for face in faces:
            reset_stats(redis_cluster.live_nodes())
            for key in KEYS:
                assert await face.get("user", key) == values[key]
            assert await face.get_many("user", [*KEYS, "absent"]) == values
            # One GET per key, then one GET or MGET per slot of the batch: all on replicas.
            assert sum(calls(node, *READ_COMMANDS) for node in replicas) == (
                len(KEYS) + slots_of_batch + 1
            ), face.name
            assert sum(calls(node, *READ_COMMANDS) for node in primaries) == 0, face.name
            assert all(calls(node, "get", "mget") > 0 for node in replicas), face.name
            assert all(calls(node, "role") >= 1 for node in replicas), face.name

            reset_stats(redis_cluster.live_nodes())
            await every_write(face)
            for node in replicas:
                # A client's write to a cluster replica is answered MOVED: none was.
                assert refused_writes(node) == {}, (face.name, node.name)
            assert sum(calls(node, *READ_COMMANDS) for node in replicas) > 0
            for primary in primaries:
                replicated(primary)
            assert await face.get("user", f"written-{face.name}") == "after"


async def every_write(face: Face) -> None:
    """Every write the API offers, each checked against what it should have done."""
    name = face.name
    await face.set("user", f"written-{name}", "before")
    await face.set("user", f"written-{name}", "after", ttl_seconds=600)
    await face.set_many("user", {f"w{name}{i}": str(i) for i in range(30)})
    await face.set_many("user", {f"t{name}{i}": str(i) for i in range(30)}, ttl_seconds=600)
    await face.delete("user", f"w{name}0")
    await face.delete_many("user", [f"w{name}{i}" for i in range(1, 10)])
    assert await face.add("user", f"added-{name}", "once")
    assert not await face.add("user", f"added-{name}", "twice")
    assert await face.incr("user", f"counter-{name}", 5) == 5
    assert await face.touch("user", f"counter-{name}", 60)
    assert await face.clear(f"scratch{name}") == 0
    assert await face.get_or_set("user", f"locked-{name}", lambda: "loaded", lock=True) == (
        "loaded"
    )


async def test_cluster_killed_or_paused_replica_is_skipped_without_a_failed_call(
    fresh_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    timeout = 2.0
    values = seed_cluster(fresh_cluster)
    async with both_faces(cluster_url(fresh_cluster, timeout=f"{timeout:g}s")) as faces:
        for face in faces:  # both faces read from the replicas first
            assert await face.get_many("user", KEYS) == values
        owner = fresh_cluster.primary_for_key("user:k1")
        dead = fresh_cluster.replica_of(owner)
        fresh_cluster.kill(dead)
        worst: dict[str, float] = {}
        for face in faces:
            for key in KEYS:
                started = time.monotonic()
                assert await face.get("user", key) == values[key], face.name
                worst[face.name] = max(worst.get(face.name, 0.0), time.monotonic() - started)
            assert await face.get_many("user", KEYS) == values, face.name
            assert f"127.0.0.1:{dead.port}" in face.choice.avoided(), face.name

        # A replica that hangs: one read waits for the timeout, then the primary answers.
        other = next(p for p in fresh_cluster.primaries() if p is not owner)
        stalled = fresh_cluster.replica_of(other)
        key = next(k for k in KEYS if fresh_cluster.primary_for_key(f"user:{k}") is other)
        assert stalled.pid is not None
        waited: dict[str, float] = {}
        os.kill(stalled.pid, signal.SIGSTOP)
        try:
            for face in faces:
                started = time.monotonic()
                for _ in range(3):  # the one going to the stalled replica waits
                    assert await face.get("user", key) == values[key], face.name
                waited[face.name] = time.monotonic() - started
                assert waited[face.name] < timeout + 2.0, face.name
                assert f"127.0.0.1:{stalled.port}" in face.choice.avoided(), face.name
                started = time.monotonic()
                assert await face.get_many("user", KEYS) == values, face.name
                # Well under one timeout: no read waited for the stalled replica again.
                assert time.monotonic() - started < timeout, face.name
        finally:
            os.kill(stalled.pid, signal.SIGCONT)
    with capsys.disabled():
        print(
            "\n[replica reads] killed replica: slowest read "
            + ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in worst.items())
            + f"; paused replica (timeout {timeout:g} s): 3 reads took "
            + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in waited.items())
        )


async def test_cluster_replica_with_its_link_cut_is_skipped_then_used_again(
    fresh_cluster: LocalCluster,
) -> None:
    values = seed_cluster(fresh_cluster)
    owner = fresh_cluster.primary_for_key("user:k1")
    cut = fresh_cluster.replica_of(owner)
    mine = [key for key in KEYS if fresh_cluster.primary_for_key(f"user:{key}") is owner]
    async with both_faces(cluster_url(fresh_cluster)) as faces:
        for face in faces:
            assert await face.get_many("user", KEYS) == values
        saved = cut_link(cut)
        try:
            for face in faces:
                fresh = {key: f"new {face.name} {key}" for key in mine}
                await face.set_many("user", fresh)
                with cut.client() as raw:  # the cut replica still holds the old values
                    raw.execute_command("READONLY")
                    assert raw.get(f"user:{mine[0]}") == values[mine[0]]
                await asyncio.sleep(CHECK_INTERVAL + 0.2)  # its next read carries a check
                for key in mine:
                    assert await face.get("user", key) == fresh[key], face.name
                assert await face.get_many("user", mine) == fresh, face.name
                assert f"127.0.0.1:{cut.port}" in face.choice.avoided(), face.name
        finally:
            mend_link(cut, saved)
        replicated(owner)
        await asyncio.sleep(AVOID_SECONDS + 0.2)  # the driver's own clock: its avoidance ends
        reset_stats([cut])
        for face in faces:
            await face.get_many("user", mine)
            assert f"127.0.0.1:{cut.port}" not in face.choice.avoided(), face.name
        assert calls(cut, *READ_COMMANDS) > 0  # in sync again: read from again


async def test_reads_rotate_over_every_replica_of_a_primary() -> None:
    topology = start_cluster(replicas=2)
    try:
        values = seed_cluster(topology)
        owner = topology.primary_for_key("user:k1")
        mine = [key for key in KEYS if topology.primary_for_key(f"user:{key}") is owner]
        its_replicas = [node for node in topology.replicas() if primary_of(node) == owner.port]
        assert len(its_replicas) == 2
        async with both_faces(cluster_url(topology)) as faces:
            for face in faces:
                reset_stats(its_replicas)
                for _ in range(10):
                    for key in mine:
                        assert await face.get("user", key) == values[key]
                counts = [calls(node, "get") for node in its_replicas]
                assert sum(counts) == 10 * len(mine), face.name
                assert min(counts) >= 0.4 * sum(counts), (face.name, counts)
    finally:
        topology.stop()


def primary_of(replica: ProcessServer) -> int:
    with replica.client() as raw:
        return int(raw.execute_command("ROLE")[2])


# -- Sentinel ------------------------------------------------------------------------------


async def test_sentinel_reads_go_to_the_replica_and_writes_never_do(
    redis_sentinel: LocalSentinel, topology_password: str
) -> None:
    primary, replica = redis_sentinel.current_primary(), redis_sentinel.replica
    assert replica is not primary
    with primary.client() as raw:
        raw.flushall()
    values = {key: f"value of {key}" for key in KEYS}
    async with both_faces(sentinel_url(redis_sentinel, topology_password)) as faces:
        await faces[0].set_many("user", values)
        replicated(primary)
        for face in faces:
            reset_stats([primary, replica])
            for key in KEYS:
                assert await face.get("user", key) == values[key]
            assert await face.get_many("user", [*KEYS, "absent"]) == values
            assert calls(replica, *READ_COMMANDS) == len(KEYS) + 1, face.name
            assert calls(primary, *READ_COMMANDS) == 0, face.name

            reset_stats([primary, replica])
            await every_write(face)
            # A client's write to a replica is refused with READONLY: none was.
            assert refused_writes(replica) == {}, face.name
            assert calls(replica, *READ_COMMANDS) > 0
            assert calls(primary, "set", "mset", "evalsha", "incrby", "expire") > 0
            replicated(primary)
            assert await face.get("user", f"written-{face.name}") == "after"


async def test_sentinel_killed_replica_is_skipped_without_a_failed_call(
    fresh_sentinel: LocalSentinel,
) -> None:
    values = {key: f"value of {key}" for key in KEYS}
    async with both_faces(sentinel_url(fresh_sentinel, None)) as faces:
        await faces[0].set_many("user", values)
        replicated(fresh_sentinel.primary)
        for face in faces:
            assert await face.get_many("user", KEYS) == values
        fresh_sentinel.replica.kill()
        for face in faces:
            for key in KEYS:
                assert await face.get("user", key) == values[key], face.name
            assert await face.get_many("user", KEYS) == values, face.name
            assert f"127.0.0.1:{fresh_sentinel.replica.port}" in face.choice.avoided()


async def test_sentinel_replica_with_its_link_cut_is_skipped(
    fresh_sentinel: LocalSentinel,
) -> None:
    values = {key: f"value of {key}" for key in KEYS}
    replica = fresh_sentinel.replica
    async with both_faces(sentinel_url(fresh_sentinel, None)) as faces:
        await faces[0].set_many("user", values)
        replicated(fresh_sentinel.primary)
        for face in faces:
            assert await face.get_many("user", KEYS) == values
        saved = cut_link(replica)
        try:
            for face in faces:
                fresh = {key: f"new {face.name} {key}" for key in KEYS}
                await face.set_many("user", fresh)
                await asyncio.sleep(CHECK_INTERVAL + 0.2)  # its next read carries a check
                for key in KEYS:
                    assert await face.get("user", key) == fresh[key], face.name
                assert await face.get_many("user", KEYS) == fresh, face.name
                assert f"127.0.0.1:{replica.port}" in face.choice.avoided(), face.name
        finally:
            mend_link(replica, saved)


async def test_near_cache_fills_come_from_the_primary_even_with_replica_reads(
    redis_sentinel: LocalSentinel, topology_password: str
) -> None:
    primary, replica = redis_sentinel.current_primary(), redis_sentinel.replica
    url = sentinel_url(redis_sentinel, topology_password, near_cache="true")
    reset_stats([primary, replica])
    async with both_faces(url) as faces:
        for face in faces:
            await face.set("user", f"near-{face.name}", "mine")
            assert await face.get("user", f"near-{face.name}") == "mine"  # read-your-writes
            assert await face.get_many("user", [f"near-{face.name}"]) == {
                f"near-{face.name}": "mine"
            }
    assert calls(replica, *READ_COMMANDS) == 0
    assert calls(primary, *READ_COMMANDS) > 0
