"""pytest plugin (entry point ``pytest11``): the Cluster and Sentinel topologies as fixtures.

Loaded wherever this package is installed, so ``tests/cluster``,
``tests/sentinel`` and any other suite reach the same fixtures.

The shared topologies (``redis_cluster``, ``auth_cluster``, ``tls_cluster``,
``redis_sentinel``, ``guarded_sentinel``, ``acl_sentinel``, ``tls_sentinel``)
are started once per run and shared by every test process (pytest-xdist
workers included; see :mod:`pevensie_test_support.shared`). A test holds a
copy of the topology alone while it runs (an exclusive lease: tests take turns
on each copy, across processes; a second copy starts only when the first is
busy, up to one per test process), so it may flush it, count every key or read
server-wide statistics; a test marked
``shares_topology`` touches only keys no other test uses and reads nothing
server-wide, and runs alongside others on the first copy (a shared lease). Tests that kill,
pause or reshard get a topology of their own (``fresh_cluster``,
``steady_sentinel``...), so a failover never leaks into another test; a shared
node refuses to be killed. Every process is killed by PID at the end of the
run, pass or fail: by the xdist controller, or the one pytest process.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import pytest

from pevensie_redis.testing import ServerUnavailable, TLSMaterial, TLSUnavailable, make_tls_material
from pevensie_test_support.cluster import LocalCluster, start_cluster
from pevensie_test_support.leases import hold
from pevensie_test_support.nodes import TopologyError
from pevensie_test_support.sentinel import LocalSentinel, start_sentinel
from pevensie_test_support.shared import SharedRun, stop_recorded

PASSWORD = "cluster-test-secret"  # a throwaway password for throwaway servers

SHARES_TOPOLOGY = "shares_topology"
"""The marker of a test that may use a shared topology alongside other tests."""

LEASE_WAIT = 600.0
"""Seconds a test waits for its turn on a shared topology (the others' tests are short)."""

_RUN_DIRECTORY = "pevensie_topologies"  # the key of the run directory in xdist's workerinput
_RUN = pytest.StashKey[SharedRun]()
_CONTROLLER = pytest.StashKey[bool]()

Topology = TypeVar("Topology", LocalCluster, LocalSentinel)


def _terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C: pytest then ends the run as interrupted, and cleans up."""
    raise KeyboardInterrupt(f"terminated by {signal.Signals(signum).name}")


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker; find (worker) or make (controller) the run's directory.

    A SIGTERM (a CI job's timeout, ``kill``) ends each test process as Ctrl-C
    does, unless something else already handles it: fixtures are torn down, the
    controller stops the shared topologies and every process stops the servers it
    started, where the default action ended the process on the spot and left them
    running.
    """
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _terminated)
    config.addinivalue_line(
        "markers",
        f"{SHARES_TOPOLOGY}: the test touches only keys of its own on a shared Cluster or "
        "Sentinel topology and reads nothing server-wide, so it runs alongside other tests there",
    )
    worker_input: dict[str, Any] | None = getattr(config, "workerinput", None)
    if worker_input is not None and _RUN_DIRECTORY in worker_input:
        config.stash[_RUN] = SharedRun(Path(worker_input[_RUN_DIRECTORY]))
        config.stash[_CONTROLLER] = False
    else:
        config.stash[_RUN] = SharedRun(Path(tempfile.mkdtemp(prefix="pevensie-topologies-")))
        config.stash[_CONTROLLER] = True


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Hand the run's directory to each xdist worker (a pytest-xdist hook)."""
    node.workerinput[_RUN_DIRECTORY] = str(node.config.stash[_RUN].directory)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Name the shared topologies the run started and how long tests waited for turns."""
    run = config.stash.get(_RUN, None)
    if run is None or not config.stash.get(_CONTROLLER, False):
        return
    started, waits = run.summary()
    if not started:
        return
    terminalreporter.write_sep("-", "pevensie shared topologies")
    terminalreporter.write_line(f"started for the run (name.N: a copy): {', '.join(started)}")
    for name, (count, total, longest) in sorted(waits.items()):
        terminalreporter.write_line(
            f"{name}: {count} tests waited for a turn, {total:.1f} s in all "
            f"(longest {longest:.1f} s)"
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    """On the controller: stop every shared topology by PID, pass or fail."""
    if config.stash.get(_CONTROLLER, False):
        stop_recorded(config.stash[_RUN].directory)


def _run(request: pytest.FixtureRequest) -> SharedRun:
    return request.config.stash[_RUN]


def _leased(
    request: pytest.FixtureRequest, name: str, start: Callable[[], Topology]
) -> Iterator[Topology]:
    """Yield the run's topology ``name`` for one test, holding its lease meanwhile.

    A test marked :data:`SHARES_TOPOLOGY` shares the first copy with the others so
    marked; any other test gets a copy alone, of at most one copy per test process.
    """
    run = _run(request)
    asked = time.monotonic()
    if request.node.get_closest_marker(SHARES_TOPOLOGY) is not None:
        topology = run.topology(name, start)
        with hold(
            run.directory / f"{name}.lease",
            exclusive=False,
            timeout=LEASE_WAIT,
            what=f"a turn on the shared {name}",
        ):
            run.note_wait(name, time.monotonic() - asked)
            yield topology
        return
    copies = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    with run.alone_on(name, start, copies=max(1, copies), timeout=LEASE_WAIT) as topology:
        run.note_wait(name, time.monotonic() - asked)
        yield topology


def _start_cluster(**options: Any) -> LocalCluster:
    try:
        return start_cluster(**options)
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


def _start_sentinel(**options: Any) -> LocalSentinel:
    try:
        return start_sentinel(**options)
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


@pytest.fixture
def redis_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """A 3-primary / 3-replica cluster shared by the run, for tests that leave its nodes alone."""
    yield from _leased(request, "redis_cluster", _start_cluster)


@pytest.fixture
def auth_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """A shared cluster whose nodes all require :data:`PASSWORD`."""
    yield from _leased(request, "auth_cluster", lambda: _start_cluster(password=PASSWORD))


@pytest.fixture(scope="session")
def tls_material(request: pytest.FixtureRequest) -> TLSMaterial:
    """A throwaway CA and certificates for the TLS topologies, the same in every test process."""
    return _run(request).tls_material(make_tls_material)


@pytest.fixture
def tls_cluster(
    request: pytest.FixtureRequest, tls_material: TLSMaterial
) -> Iterator[LocalCluster]:
    """A shared cluster that speaks only TLS (clients, replication, bus): needs a TLS binary."""
    yield from _leased(request, "tls_cluster", lambda: _start_cluster(tls=tls_material))


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


@pytest.fixture
def redis_sentinel(request: pytest.FixtureRequest) -> Iterator[LocalSentinel]:
    """A primary, a replica and three sentinels shared by the run, for tests that kill nothing."""
    yield from _leased(request, "redis_sentinel", lambda: _start_sentinel(password=PASSWORD))


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


@pytest.fixture
def guarded_sentinel(request: pytest.FixtureRequest) -> Iterator[LocalSentinel]:
    """Shared sentinels that require their own password (requirepass), data nodes the usual one."""
    yield from _leased(
        request,
        "guarded_sentinel",
        lambda: _start_sentinel(password=PASSWORD, sentinel_password=SENTINEL_SECRET),
    )


@pytest.fixture
def acl_sentinel(request: pytest.FixtureRequest) -> Iterator[LocalSentinel]:
    """Shared sentinels that only an ACL user gets into (the default user is off)."""
    yield from _leased(
        request, "acl_sentinel", lambda: _start_sentinel(sentinel_user=SENTINEL_USER)
    )


@pytest.fixture
def tls_sentinel(
    request: pytest.FixtureRequest, tls_material: TLSMaterial
) -> Iterator[LocalSentinel]:
    """A shared primary, replica and three sentinels that all speak only TLS."""
    yield from _leased(request, "tls_sentinel", lambda: _start_sentinel(tls=tls_material))


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
