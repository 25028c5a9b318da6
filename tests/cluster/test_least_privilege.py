"""Least privilege: a user holding only ``acl_rule(...)`` can do everything the API offers.

On one server, a 3+3 Cluster and through Sentinel, on both faces: an ACL
user with exactly the rule :func:`pevensie_redis.acl.acl_rule` returns for its
resource types and the features turned on (client name and database, the near
cache, hash tags, replica reads) runs every operation of the API without one
refusal in any node's ``ACL LOG``; the same operations on another resource
type raise :class:`~pevensie_redis.RedisPermissionError` (``NOPERM``), a
:class:`~pevensie_redis.RedisServerError`.
"""

from __future__ import annotations

import inspect
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import redis

from pevensie_cache import cache
from pevensie_redis import (
    RedisAuthenticationError,
    RedisConfig,
    RedisPermissionError,
    RedisServerError,
)
from pevensie_redis.acl import acl_rule, sentinel_acl_rule
from pevensie_redis.testing import ProcessServer, RedisServer
from pevensie_test_support import LocalCluster, LocalSentinel
from pevensie_test_support.faces import Face, both_faces, replicated

# The outcome depends on the server: ACL rules, categories and the ACL LOG are the server's.
pytestmark = pytest.mark.server_dependent

USER, SECRET = "app", "app-secret"
OWN = ["user", "session"]
OTHER = "billing"


def admin(node: ProcessServer | RedisServer) -> Any:
    return node.client()


def has_client_setinfo(node: ProcessServer | RedisServer) -> bool:
    """Whether the server knows ``CLIENT SETINFO`` (Redis 7.2 and newer, Valkey)."""
    with admin(node) as raw:
        try:
            raw.execute_command("CLIENT", "SETINFO", "LIB-NAME", "probe")
        except redis.ResponseError:
            return False
    return True


def rule_for(nodes: list[Any], config: RedisConfig) -> str:
    return acl_rule(OWN, config, client_setinfo=has_client_setinfo(nodes[0]))


def grant(nodes: Iterable[ProcessServer | RedisServer], rule: str) -> None:
    """Give ``USER`` exactly ``rule`` on every node (ACL users are not replicated)."""
    for node in nodes:
        with admin(node) as raw:
            raw.execute_command("ACL", "SETUSER", USER, "reset", "on", f">{SECRET}", *rule.split())
            raw.execute_command("ACL", "LOG", "RESET")


def refusals(nodes: Iterable[ProcessServer | RedisServer]) -> list[str]:
    """What the nodes refused ``USER`` since :func:`grant`: ``object reason``, one per entry."""
    found = []
    for node in nodes:
        with admin(node) as raw:
            for entry in raw.execute_command("ACL", "LOG"):
                entry = dict(entry) if not isinstance(entry, dict) else entry
                found.append(f"{entry['object']} ({entry['reason']}) on {node.port}")
    return found


def nothing() -> None:
    """Reads see every write at once: there are no replica reads."""


async def every_operation(face: Face, resource_type: str, settle: Callable[[], None]) -> None:
    """Everything the API offers, for one resource type, each checked.

    ``settle`` waits until replicas hold the writes made so far, before the
    reads that check them (with replica reads, a read may be older).
    """
    tag = f"{face.name}-{resource_type}"
    await face.set(resource_type, f"a{tag}", "one")
    await face.set(resource_type, f"b{tag}", "two", ttl_seconds=600)
    settle()
    assert await face.get(resource_type, f"a{tag}") == "one"
    assert await face.get(resource_type, "absent", None) is None
    await face.delete(resource_type, f"a{tag}")
    items = {f"m{tag}{i}": str(i) for i in range(40)}
    await face.set_many(resource_type, items)
    await face.set_many(resource_type, {f"t{tag}{i}": str(i) for i in range(40)}, ttl_seconds=600)
    settle()
    assert await face.get_many(resource_type, list(items)) == items
    await face.delete_many(resource_type, list(items)[:20])
    assert await face.add(resource_type, f"add{tag}", "x")
    assert not await face.add(resource_type, f"add{tag}", "y", ttl_seconds=60)
    assert await face.incr(resource_type, f"n{tag}", 2) == 2
    assert await face.incr(resource_type, f"n{tag}", 3, ttl_seconds=60) == 5
    assert await face.touch(resource_type, f"n{tag}", 60)
    assert await face.touch(resource_type, f"n{tag}")
    assert await face.decr(resource_type, f"n{tag}") == 4
    assert await face.exists(resource_type, f"n{tag}")
    assert await face.ttl(resource_type, f"n{tag}") is None
    lock = await face.lock(resource_type, f"job{tag}", ttl_seconds=10, wait_seconds=0)
    for step in (lock.acquire, lambda: lock.extend(20), lock.release):
        done = step()
        if inspect.isawaitable(done):
            await done
    assert await face.get_or_set(resource_type, f"lk{tag}", lambda: "loaded", lock=True) == (
        "loaded"
    )
    settle()
    assert await face.get_or_set(resource_type, f"lk{tag}", lambda: "again", lock=True) == (
        "loaded"
    )
    # A waiter on a lease held elsewhere subscribes to the releases; this one expires.
    assert await face.acquire_lock(resource_type, f"w{tag}", "elsewhere", 0.3)
    assert await face.get_or_set(resource_type, f"w{tag}", lambda: "w", lock=True) == "w"
    # Tags and freshness options: the tag counters, and envelopes.
    await face.set(resource_type, f"tg{tag}", "t", 600, tags=[f"tag-{tag}"])
    assert (
        await face.get_or_set(
            resource_type, f"fr{tag}", lambda: "f", 600, stale_seconds=60, tags=[f"tag-{tag}"]
        )
        == "f"
    )
    settle()
    assert await face.get(resource_type, f"tg{tag}") == "t"
    await face.invalidate_tags(f"tag-{tag}")
    settle()
    assert await face.get_many(resource_type, [f"tg{tag}", f"fr{tag}"]) == {}
    resource = face.cache.resource(resource_type, codec="json")
    result = resource.set(f"j{tag}", {"a": [1, 2]})
    if inspect.isawaitable(result):
        await result
        settle()
        assert await resource.get(f"j{tag}") == {"a": [1, 2]}
    else:
        settle()
        assert resource.get(f"j{tag}") == {"a": [1, 2]}
    assert await face.clear(resource_type) > 0


async def every_refusal(face: Face, seeded_key: str) -> None:
    """Every operation on a resource type the user does not hold: NOPERM, typed."""
    operations: list[tuple[str, tuple[Any, ...]]] = [
        ("get", (OTHER, "k", None)),
        ("set", (OTHER, "k", "v")),
        ("set", (OTHER, "k", "v", 60)),
        ("delete", (OTHER, "k")),
        ("get_many", (OTHER, ["k", "l"])),
        ("set_many", (OTHER, {"k": "v"})),
        ("set_many", (OTHER, {"k": "v", "l": "w"}, 60)),
        ("delete_many", (OTHER, ["k"])),
        ("add", (OTHER, "k", "v")),
        ("incr", (OTHER, "k", 1)),
        ("touch", (OTHER, "k", 60)),
        ("clear", (OTHER,)),  # SCAN lists the seeded key; its UNLINK is refused
        ("get_or_set", (OTHER, seeded_key + "x", lambda: "v")),
    ]
    for method, args in operations:
        with pytest.raises(RedisPermissionError) as caught:
            await getattr(face, method)(*args)
        assert isinstance(caught.value, RedisServerError), (face.name, method)
        assert isinstance(caught.value, RedisAuthenticationError), (face.name, method)
        assert caught.value.server_message.startswith("NOPERM"), (face.name, method)


async def run_as_user(
    url: str,
    data_nodes: list[Any],
    config: RedisConfig,
    *,
    seed: Callable[[], None],
    settle: Callable[[], None] = nothing,
) -> None:
    grant(data_nodes, rule_for(data_nodes, config))
    async with both_faces(url) as faces:
        for face in faces:
            for resource_type in OWN:
                await every_operation(face, resource_type, settle)
        assert refusals(data_nodes) == []
        seed()
        for face in faces:
            await every_refusal(face, f"{OTHER}:seeded")
    assert refusals(data_nodes) != []


# -- one server ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["", "?client_name=least-app&db=3", "?near_cache=true"],
    ids=["plain", "client_name+db", "near_cache"],
)
async def test_one_server(pevensie_redis_server: RedisServer, query: str) -> None:
    host, port = pevensie_redis_server.address
    db = 3 if "db=3" in query else 0
    url = f"redis://{USER}:{SECRET}@{host}:{port}/{db}{query.replace('&db=3', '')}"
    config = RedisConfig.from_url(url)
    assert config.db == db

    def seed() -> None:
        with admin(pevensie_redis_server) as raw:
            raw.execute_command("SELECT", db)
            raw.set(f"{OTHER}:seeded", "x")

    try:
        await run_as_user(url, [pevensie_redis_server], config, seed=seed)
    finally:
        with admin(pevensie_redis_server) as raw:
            raw.execute_command("ACL", "DELUSER", USER)


# -- Cluster -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "",
        "&cluster_hash_tag=true",
        "&read_from_replicas=true",
        "&near_cache=true",
        "&near_cache=true&read_from_replicas=true",
    ],
    ids=str,
)
async def test_cluster(redis_cluster: LocalCluster, query: str) -> None:
    url = f"redis://{USER}:{SECRET}@127.0.0.1:{redis_cluster.port}/0?cluster=true{query}"
    config = RedisConfig.from_url(url)
    nodes = redis_cluster.live_nodes()
    prefix = f"{{{OTHER}}}:" if config.cluster_hash_tag else f"{OTHER}:"

    def seed() -> None:
        owner = redis_cluster.primary_for_key(f"{prefix}seeded")
        with admin(owner) as raw:
            raw.set(f"{prefix}seeded", "x")

    def settle() -> None:
        for primary in redis_cluster.primaries():
            replicated(primary)

    try:
        await run_as_user(url, nodes, config, seed=seed, settle=settle)
    finally:
        for node in nodes:
            with admin(node) as raw:
                raw.execute_command("ACL", "DELUSER", USER)


async def test_replica_reads_without_role_fail_at_connect(redis_cluster: LocalCluster) -> None:
    url = f"redis://{USER}:{SECRET}@127.0.0.1:{redis_cluster.port}/0?cluster=true"
    config = RedisConfig.from_url(url + "&read_from_replicas=true")
    nodes = redis_cluster.live_nodes()
    grant(nodes, rule_for(nodes, config).replace(" +role", ""))
    try:
        with pytest.raises(RedisPermissionError, match="ROLE on the replica"):
            cache.from_url(url + "&read_from_replicas=true").connect()
        with pytest.raises(RedisPermissionError, match="ROLE on the replica"):
            await cache.from_url_async(url + "&read_from_replicas=true").connect()
    finally:
        for node in nodes:
            with admin(node) as raw:
                raw.execute_command("ACL", "DELUSER", USER)


# -- Sentinel ------------------------------------------------------------------------------


SENTINEL_USER, SENTINEL_SECRET = "app-sentinel", "app-sentinel-secret"


@pytest.mark.parametrize("query", ["", "&read_from_replicas=true", "&near_cache=true"], ids=str)
async def test_through_sentinel(redis_sentinel: LocalSentinel, query: str) -> None:
    hosts = ",".join(f"{host}:{port}" for host, port in redis_sentinel.sentinels)
    login = f"sentinel_username={SENTINEL_USER}&sentinel_password={SENTINEL_SECRET}"
    url = f"redis+sentinel://{USER}:{SECRET}@{hosts}/{redis_sentinel.service_name}?{login}{query}"
    config = RedisConfig.from_url(url)
    nodes = redis_sentinel.data_nodes
    sentinels = redis_sentinel.sentinel_nodes
    for sentinel in sentinels:  # the sentinels' own user for this application, least privilege too
        with admin(sentinel) as raw:
            raw.execute_command(
                "ACL", "SETUSER", SENTINEL_USER, "reset", "on", f">{SENTINEL_SECRET}",
                *sentinel_acl_rule(config, client_setinfo=has_client_setinfo(sentinel)).split(),
            )  # fmt: skip
            raw.execute_command("ACL", "LOG", "RESET")

    def seed() -> None:
        with admin(redis_sentinel.current_primary()) as raw:
            raw.set(f"{OTHER}:seeded", "x")

    def settle() -> None:
        replicated(redis_sentinel.current_primary())

    try:
        await run_as_user(url, nodes, config, seed=seed, settle=settle)
        assert refusals(sentinels) == []
    finally:
        for node in nodes:
            with admin(node) as raw:
                raw.execute_command("ACL", "DELUSER", USER)
        for sentinel in sentinels:
            with admin(sentinel) as raw:
                raw.execute_command("ACL", "DELUSER", SENTINEL_USER)


def test_the_rules_name_each_feature_s_commands() -> None:
    plain = acl_rule(["user"])
    assert plain.startswith(
        "resetkeys ~user:* ~:lock:user:* ~:tag:* resetchannels &__pevensie__:lock-released "
        "-@all +ping"
    )
    assert not {"+readonly", "+role", "+cluster|slots", "+client|tracking"} & set(plain.split())
    assert {"+publish", "+subscribe"} <= set(plain.split())  # lease releases wake waiters
    assert [word for word in plain.split() if word.startswith("&")] == [
        "&__pevensie__:lock-released"
    ]
    tagged = acl_rule(["user"], RedisConfig(cluster=True, cluster_hash_tag=True))
    assert "~{user}:* ~:lock:{user}:* ~{}:tag:*" in tagged
    assert "+cluster|slots" in tagged.split()
    replicas = acl_rule(["user"], RedisConfig(cluster=True, read_from_replicas=True))
    assert {"+readonly", "+role"} <= set(replicas.split())
    near_cluster = acl_rule(["user"], RedisConfig(cluster=True, near_cache=True))
    assert {"+cluster|nodes", "+client|tracking", "&__redis__:invalidate"} <= set(
        near_cluster.split()
    )
    assert "+cluster|nodes" not in acl_rule(["user"], RedisConfig(cluster=True)).split()
    near = acl_rule(["user"], RedisConfig(near_cache=True))
    assert {"&__redis__:invalidate", "+client|tracking", "+subscribe"} <= set(near.split())
    assert acl_rule(["a*b"]).startswith(r"resetkeys ~a\*b:* ~:lock:a\*b:* ~:tag:*")
    assert "+client|setname" in sentinel_acl_rule(RedisConfig(client_name="app"))
    assert "+client|setinfo" not in acl_rule(["user"], client_setinfo=False)
    assert "+client|setinfo" not in sentinel_acl_rule(client_setinfo=False)
    with pytest.raises(ValueError, match="at least one resource type"):
        acl_rule([])


def test_the_rule_the_guide_prints_is_the_one_acl_rule_gives() -> None:
    # An application's user created from the page must be able to do what the page's
    # features promise: tags and lock wake-ups were once missing from it.
    page = (Path(__file__).parents[2] / "docs" / "guide" / "scaling-out.md").read_text("utf-8")
    block = page.split("redis-cli ACL SETUSER app on '>secret' ", 1)[1].split("```", 1)[0]
    printed = shlex.split(block.replace("\\\n", " "))
    assert printed == acl_rule(["user", "session"], RedisConfig()).split()
