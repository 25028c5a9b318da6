"""Development-only support for this repository's tests and benchmarks.

Throwaway Redis Cluster and Sentinel topologies on loopback, made of the
server processes of :mod:`pevensie_redis.testing` (one
:class:`~pevensie_redis.testing.ProcessServer` per node). They serve only
this repository, so they live here rather than in the pevensie-redis wheel;
``nox`` installs this package for the tests, the type check and the
benchmarks (by hand: ``pip install -e tests/support``).
"""

from __future__ import annotations

from pevensie_test_support.cluster import LocalCluster, start_cluster
from pevensie_test_support.nodes import TopologyError, retry_on_port_clash, wait_until
from pevensie_test_support.sentinel import LocalSentinel, start_sentinel

__all__ = [
    "LocalCluster",
    "LocalSentinel",
    "TopologyError",
    "retry_on_port_clash",
    "start_cluster",
    "start_sentinel",
    "wait_until",
]
