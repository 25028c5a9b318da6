"""A namespace on a Redis Cluster: keys under it, clear inside it, hash tags per namespace.

With ``cluster_hash_tag`` a resource type's keys share one slot; under a
namespace the tag is ``{<namespace>:<resource_type>}``, so that still holds,
and a batch stays one command on one node.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.crc import key_slot

from pevensie_cache import cache
from pevensie_test_support import LocalCluster


def stored(cluster: LocalCluster) -> set[str]:
    found: set[str] = set()
    for node in cluster.primaries():
        with node.client() as raw:
            found |= {k if isinstance(k, str) else k.decode() for k in raw.scan_iter(count=1000)}
    return found


def url(cluster: LocalCluster, query: str) -> str:
    return f"redis://127.0.0.1:{cluster.port}/0?cluster=true&{query}"


def test_hash_tags_group_by_namespace_and_resource_type(redis_cluster: LocalCluster) -> None:
    redis_cluster.flush()
    with cache.from_url(url(redis_cluster, "cluster_hash_tag=true&namespace=app1")) as c:
        c.set_many("user", {f"k{i}": str(i) for i in range(50)})
        assert c.get_many("user", [f"k{i}" for i in range(50)]) == {
            f"k{i}": str(i) for i in range(50)
        }
        with c.lock("user", "k1", wait_seconds=0) as held:
            held.extend(10)
        keys = stored(redis_cluster)
        assert keys == {f"{{app1:user}}:k{i}" for i in range(50)}
        assert len({key_slot(k.encode()) for k in keys}) == 1
        assert c.ttl("user", "k1") is None
        assert c.clear("user") == 50


def test_a_namespace_keeps_its_keys_apart_and_clear_inside(redis_cluster: LocalCluster) -> None:
    redis_cluster.flush()
    tenant: Any = cache.from_url(url(redis_cluster, "namespace=tenant1")).connect()
    other: Any = cache.from_url(url(redis_cluster, "namespace=tenant2")).connect()
    try:
        tenant.set_many("user", {f"k{i}": "t1" for i in range(20)})
        other.set_many("user", {f"k{i}": "t2" for i in range(20)})
        assert tenant.incr("hits", "home") == 1
        assert tenant.clear("user") == 20
        assert other.get_many("user", ["k0", "k19"]) == {"k0": "t2", "k19": "t2"}
        assert stored(redis_cluster) == {f"tenant2:user:k{i}" for i in range(20)} | {
            "tenant1:hits:home"
        }
    finally:
        tenant.disconnect()
        other.disconnect()


def test_the_async_face_keeps_the_namespace_on_a_cluster(redis_cluster: LocalCluster) -> None:
    redis_cluster.flush()

    async def main() -> None:
        async with cache.from_url_async(url(redis_cluster, "namespace=app1")) as c:
            await c.set("user", "1", "Ada", ttl_seconds=60)
            assert await c.exists("user", "1")
            assert 59 <= (await c.ttl("user", "1") or 0) <= 60

    asyncio.run(main())
    assert stored(redis_cluster) == {"app1:user:1"}
