"""Sessions: tests (default), lint, typecheck, generate, demo, bench.

Each session installs the two distributions from this checkout into its own
virtual environment, with the development dependencies named in the root
pyproject.toml's dependency groups; tests, typecheck and bench add the
development-only support package in tests/support (Cluster and Sentinel
topologies).
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
PACKAGES = ["./pevensie_cache", "./pevensie_redis[hiredis]"]
PLUGIN_FIXTURES = sorted(str(p) for p in (ROOT / "tests" / "plugins").iterdir() if p.is_dir())
# Development-only support (Cluster and Sentinel topologies) for the tests and benchmarks.
TEST_SUPPORT = "./tests/support"


def _install(session: nox.Session, *groups: str) -> None:
    requirements = [r for g in groups for r in nox.project.dependency_groups(PYPROJECT, g)]
    session.install(*PACKAGES, *requirements)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite against real servers the tests start themselves."""
    _install(session, "test")
    # Small plugin distributions (a good one, a broken one, a duplicate) installed
    # for real, so plugin discovery is tested through genuine entry points.
    session.install(*PLUGIN_FIXTURES, TEST_SUPPORT)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (lint and formatting), and the generated sync modules match their async sources."""
    _install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("python", ".ci/unasync.py", "--check")


@nox.session
def generate(session: nox.Session) -> None:
    """Write the sync twin of every async source module (see .ci/unasync.py)."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("python", ".ci/unasync.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Mypy --strict on both packages and the test-support package."""
    _install(session, "typecheck", "test")
    session.install(TEST_SUPPORT)
    session.run(
        "mypy",
        "--strict",
        "pevensie_cache/src/pevensie_cache",
        "pevensie_redis/src/pevensie_redis",
        "tests/support/src/pevensie_test_support",
    )


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: the demo against a real Redis-compatible server."""
    _install(session, "test")
    session.run("python", "-m", "pevensie_redis", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The side-by-side benchmark, its cluster, async and cache-aside rows (--quick: CI smoke)."""
    _install(session, "test", "bench")
    session.install(TEST_SUPPORT)
    session.run("python", "benchmarks/run.py", *session.posargs)
    quick = ["--quick"] if "--quick" in session.posargs else []
    session.run("python", "benchmarks/cluster_bench.py", *quick)
    session.run("python", "benchmarks/async_bench.py", *quick)
    session.run("python", "benchmarks/cache_aside_bench.py", *quick)
