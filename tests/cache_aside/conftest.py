"""Fixtures of the cache-aside suite: the same test on one server and on a Cluster.

``target`` runs a test twice: on the run's shared server (flushed first) and
on the 3-primary / 3-replica cluster the run shares (``redis_cluster`` of
:mod:`pevensie_test_support.pytest_plugin`: the test holds it alone, so it
may flush it first).
Both offer the cache's URL and raw access for checks that must not go through
the code under test: SCAN on every primary, and bulk writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aside_support import Target, cluster_url

from pevensie_redis.testing import RedisServer
from pevensie_test_support import LocalCluster


@pytest.fixture
def private_server(pevensie_redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A server of this test's own (to restart), stopped at teardown."""
    return pevensie_redis_server_factory()


@pytest.fixture
def server_target(pevensie_redis_server: RedisServer) -> Target:
    """The run's shared server, flushed."""
    pevensie_redis_server.ensure_running()
    with pevensie_redis_server.client() as raw:
        raw.flushdb()
    return Target("server", pevensie_redis_server.url, _server=pevensie_redis_server)


@pytest.fixture
def cluster_target(redis_cluster: LocalCluster) -> Target:
    """The run's shared cluster, flushed (the test holds it alone meanwhile)."""
    redis_cluster.flush()
    return Target("cluster", cluster_url(redis_cluster.startup_nodes), _cluster=redis_cluster)


@pytest.fixture(params=["server", "cluster"])
def target(request: pytest.FixtureRequest) -> Target:
    """The test runs on one server, then on a cluster."""
    return request.getfixturevalue(f"{request.param}_target")  # type: ignore[no-any-return]


@pytest.fixture
def calls_file(tmp_path: Any) -> Any:
    """The file the worker processes record their loader calls in."""
    return tmp_path / "calls.jsonl"


@pytest.fixture(params=["memory", "server", "cluster"])
def store(request: pytest.FixtureRequest) -> Target:
    """The test runs on the memory driver, then on one server, then on a cluster."""
    if request.param == "memory":
        return Target("memory", "memory://")
    return request.getfixturevalue(f"{request.param}_target")  # type: ignore[no-any-return]
