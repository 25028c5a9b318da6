"""The Redis inspector on a Cluster: keys and counts from every primary, TTLs by slot."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pevensie_cache import PevensieCache, cache
from pevensie_test_support import LocalCluster

# The outcome depends on the server: what INFO and SCAN report on each node is the server's.
pytestmark = pytest.mark.server_dependent


def url_of(topology: LocalCluster, **query: str) -> str:
    options = "&".join(f"{name}={value}" for name, value in {"cluster": "true", **query}.items())
    return f"redis://127.0.0.1:{topology.port}/0?{options}"


@pytest.fixture(params=["plain", "hash-tagged"])
def tagged(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "hash-tagged")


@pytest.fixture
def cluster_cache(redis_cluster: LocalCluster, tagged: bool) -> Iterator[PevensieCache]:
    redis_cluster.flush()
    query = {"cluster_hash_tag": "true"} if tagged else {}
    with cache.from_url(url_of(redis_cluster, **query)) as c:
        yield c


def test_keys_ttl_and_counts_span_every_primary(
    cluster_cache: PevensieCache, redis_cluster: LocalCluster
) -> None:
    cluster_cache.set_many("a*b", {f"k{i}": "v" for i in range(300)}, ttl_seconds=600)
    cluster_cache.set_many("axb", {f"k{i}": "v" for i in range(20)})
    inspector = cache.inspector(cluster_cache)

    listed = [key for page in inspector.keys("a*b", 50) for key in page]
    assert sorted(set(listed)) == sorted(f"k{i}" for i in range(300))
    assert all(len(page) <= 50 for page in inspector.keys("a*b", 50))

    left = inspector.ttl("a*b", "k7")
    assert left.exists
    assert left.seconds is not None
    assert 500 < left.seconds <= 600
    assert inspector.ttl("axb", "k1").seconds is None
    assert not inspector.ttl("axb", "k999").exists

    info = inspector.server_info()
    assert info.nodes == len(redis_cluster.primaries())
    assert info.keys == 320
    sample = inspector.sample(10_000)
    assert dict(sample.by_resource_type) == {"a*b": 300, "axb": 20}
    assert (sample.sampled, sample.total, sample.foreign) == (320, 320, 0)
    assert inspector.baseline() is None  # the Cluster client routes itself: no --compare


def test_the_librarys_own_keys_count_as_lock_and_tag_in_either_layout(
    cluster_cache: PevensieCache,
) -> None:
    cluster_cache.set("user", "1", "Ada", tags=["team:7"])
    with cluster_cache.lock("user", "job"):
        sample = cache.inspector(cluster_cache).sample(100)
    assert dict(sample.by_resource_type) == {"user": 1, ":tag": 1, ":lock": 1}
    assert sample.foreign == 0


@pytest.mark.parametrize(
    ("stored", "resource_type"),
    [
        ("{users}:1", "users"),
        ("{app:users}:1", "app"),  # a namespace, as on one server: its ':' is inside the tag
        ("{app:}:tag:x", "app"),
        ("{}:tag:t", ":tag"),
        (":lock:{users}:1", ":lock"),
        ("{unclosed", None),
    ],
)
def test_a_hash_tagged_name_is_read_as_its_resource_type(
    stored: str, resource_type: str | None
) -> None:
    from pevensie_redis.inspection import _resource_type_of

    assert _resource_type_of(stored) == resource_type


def test_the_command_line_counts_a_cluster(
    cluster_cache: PevensieCache, redis_cluster: LocalCluster, tagged: bool
) -> None:
    cluster_cache.set_many("user", {str(i): "u" for i in range(40)})
    url = url_of(redis_cluster, **({"cluster_hash_tag": "true"} if tagged else {}))
    script = Path(sys.executable).with_name("pevensie-cache")
    result = subprocess.run(
        [str(script), "stats", url, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["server"]["nodes"] == len(redis_cluster.primaries())
    assert document["sample"]["by_resource_type"] == {"user": 40}
