"""pytest plugin (entry point ``pytest11``): the Cluster and Sentinel topologies as fixtures.

Loaded wherever this package is installed, so ``tests/cluster``,
``tests/sentinel`` and any other suite reach the same fixtures. The shared
topologies are session-scoped (starting one takes about 2-3 s). Tests that
kill a node get a fresh topology of their own, so a failover never leaks into
another test. Every process is killed by PID at the end, pass or fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from pevensie_redis.testing import ServerUnavailable, TLSMaterial, TLSUnavailable, make_tls_material
from pevensie_test_support import (
    LocalCluster,
    LocalSentinel,
    TopologyError,
    start_cluster,
    start_sentinel,
)

PASSWORD = "cluster-test-secret"  # a throwaway password for throwaway servers


def _start_cluster(**options: object) -> LocalCluster:
    try:
        return start_cluster(**options)  # type: ignore[arg-type]
    except TLSUnavailable as exc:
        if os.environ.get("PEVENSIE_TEST_REQUIRE_TLS") == "1":
            raise
        pytest.skip(f"no TLS-capable server binary for a TLS cluster: {exc}")
    except ServerUnavailable as exc:
        pytest.skip(f"no server binary for a cluster: {exc}")
    except TopologyError as exc:
        if "no valkey-cli" in str(exc):
            pytest.skip(str(exc))
        raise


def _start_sentinel(**options: object) -> LocalSentinel:
    try:
        return start_sentinel(**options)  # type: ignore[arg-type]
    except TLSUnavailable as exc:
        if os.environ.get("PEVENSIE_TEST_REQUIRE_TLS") == "1":
            raise
        pytest.skip(f"no TLS-capable server binary for TLS sentinels: {exc}")
    except ServerUnavailable as exc:
        pytest.skip(f"no server binary for sentinels: {exc}")


@pytest.fixture(scope="session")
def topology_password() -> str:
    """The password of :func:`auth_cluster` and :func:`redis_sentinel`'s data nodes."""
    return PASSWORD


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A 3-primary / 3-replica cluster shared by the tests that leave its topology alone."""
    topology = _start_cluster()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def auth_cluster() -> Iterator[LocalCluster]:
    """A cluster whose nodes all require :data:`PASSWORD`."""
    topology = _start_cluster(password=PASSWORD)
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def tls_material() -> Iterator[TLSMaterial]:
    """A throwaway CA and certificates for the TLS topologies."""
    material = make_tls_material()
    try:
        yield material
    finally:
        shutil.rmtree(material.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_cluster(tls_material: TLSMaterial) -> Iterator[LocalCluster]:
    """A cluster that speaks only TLS (clients, replication, bus): needs a TLS-capable binary."""
    topology = _start_cluster(tls=tls_material)
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def fresh_cluster() -> Iterator[LocalCluster]:
    """A cluster of its own, for a test that kills nodes."""
    topology = _start_cluster()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def steady_cluster() -> Iterator[LocalCluster]:
    """A cluster of its own with a 15 s node timeout: a briefly paused node is not failed over."""
    topology = _start_cluster(node_timeout_ms=15000)
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[LocalSentinel]:
    """A primary, a replica and three sentinels shared by tests that kill nothing."""
    topology = _start_sentinel(password=PASSWORD)
    try:
        yield topology
    finally:
        topology.stop()


SENTINEL_SECRET = "sentinel-only-secret"  # the sentinels' own, not the data nodes'
SENTINEL_USER = ("sentinel-admin", "sentinel-user-secret")


@pytest.fixture(scope="session")
def sentinel_secret() -> str:
    """The password the sentinels of :func:`guarded_sentinel` require."""
    return SENTINEL_SECRET


@pytest.fixture(scope="session")
def sentinel_user() -> tuple[str, str]:
    """The ACL user (name, password) the sentinels of :func:`acl_sentinel` let in."""
    return SENTINEL_USER


@pytest.fixture(scope="session")
def guarded_sentinel() -> Iterator[LocalSentinel]:
    """Sentinels that require their own password (requirepass), data nodes the usual one."""
    topology = _start_sentinel(password=PASSWORD, sentinel_password=SENTINEL_SECRET)
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def acl_sentinel() -> Iterator[LocalSentinel]:
    """Sentinels that only an ACL user gets into (the default user is off)."""
    topology = _start_sentinel(sentinel_user=SENTINEL_USER)
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def tls_sentinel(tls_material: TLSMaterial) -> Iterator[LocalSentinel]:
    """A primary, a replica and three sentinels that all speak only TLS."""
    topology = _start_sentinel(tls=tls_material)
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def steady_sentinel() -> Iterator[LocalSentinel]:
    """A sentinel topology of its own whose sentinels wait 15 s before calling a primary down."""
    topology = _start_sentinel(down_after_ms=15000)
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def fresh_sentinel() -> Iterator[LocalSentinel]:
    """A sentinel topology of its own, for a test that kills the primary."""
    topology = _start_sentinel()
    try:
        yield topology
    finally:
        topology.stop()
