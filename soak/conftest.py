"""The soak suite's options and its servers (``nox -s soak``; never part of ``nox -s tests``).

``--soak-seconds S``: traffic per variant; ``--soak-total S``: that many seconds
of traffic shared by every selected variant (CI: 60); ``--soak-report FILE``:
write the results table there (Markdown). The topologies (one server, a
Sentinel set, a Cluster) start once per run and serve every variant.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from results import RESULTS, ROW_PROPERTY, table
from variants import all_variants

from pevensie_redis.testing import ProcessServer, find_server_binary
from pevensie_test_support import LocalCluster, LocalSentinel, start_cluster, start_sentinel


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("soak")
    group.addoption("--soak-seconds", type=float, default=None, help="traffic per variant (s)")
    group.addoption(
        "--soak-total", type=float, default=None, help="traffic shared by every variant (s)"
    )
    group.addoption("--soak-report", default=None, help="write the results table here")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: the soak suite (soak/, run by nox -s soak)")
    config.stash[_STARTED] = time.monotonic()


_STARTED = pytest.StashKey[float]()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect each variant's row from its report (in the controller, under pytest-xdist)."""
    if report.when == "call":
        RESULTS.extend(value for name, value in report.user_properties if name == ROW_PROPERTY)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Show the results table (and write it to ``--soak-report``)."""
    if not RESULTS:
        return
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    took = time.monotonic() - config.stash[_STARTED]
    order = {variant.id: index for index, variant in enumerate(all_variants())}
    RESULTS.sort(key=lambda row: order.get(row["variant"], len(order)))
    text = f"{table(RESULTS)}\n\n{len(RESULTS)} variants in {took:.0f} s; load average now {load}"
    terminalreporter.section("soak")
    terminalreporter.write_line(text)
    path = config.getoption("--soak-report")
    if path:
        Path(path).write_text(text + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def seconds_per_variant(request: pytest.FixtureRequest) -> float:
    per = request.config.getoption("--soak-seconds")
    total = request.config.getoption("--soak-total")
    if per is not None:
        return float(per)
    selected = len(request.session.items)
    if total is not None:
        return max(2.0, float(total) / max(selected, 1))
    return 60.0


@pytest.fixture(scope="session")
def single_server() -> Iterator[ProcessServer]:
    server = ProcessServer(find_server_binary(), []).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sentinel_topology() -> Iterator[LocalSentinel]:
    topology = start_sentinel()
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture(scope="session")
def cluster_topology() -> Iterator[LocalCluster]:
    topology = start_cluster()
    try:
        yield topology
    finally:
        topology.stop()
