"""The test cluster itself: what the Cluster suites rely on really holds."""

from __future__ import annotations

import pytest

from pevensie_test_support import LocalCluster

# They only read the topology (roles, slots): other tests may use it meanwhile.
pytestmark = pytest.mark.shares_topology


def test_cluster_has_three_primaries_each_with_a_replica(redis_cluster: LocalCluster) -> None:
    primaries = redis_cluster.primaries()
    assert len(primaries) == 3
    assert len(redis_cluster.replicas()) == 3
    assert {redis_cluster.replica_of(p).port for p in primaries}.isdisjoint(
        p.port for p in primaries
    )
    assert all(node.address[0] == "127.0.0.1" for node in redis_cluster.nodes)


def test_cluster_spreads_slots_over_the_primaries(redis_cluster: LocalCluster) -> None:
    owners = {redis_cluster.primary_for_key(f"user:{i}").port for i in range(50)}
    assert len(owners) == 3
