"""Sessions: tests (default), integrations, lint, typecheck, generate, demo, bench,
bench_frameworks.

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


# The framework releases `integrations` runs on: "lowest" is the lower bound of each
# extra in pevensie_cache/pyproject.toml, "newest" the newest release (on Python 3.11:
# Django 6 needs 3.12, hence the extra's <6). Keep both in step with the extras.
FRAMEWORKS = {
    "lowest": ["django==4.2", "Flask-Caching==2.0.2", "dogpile.cache==1.3.0"],
    "newest": ["django==5.2.19", "Flask-Caching==2.5.1", "dogpile.cache==1.5.0"],
}


@nox.session
@nox.parametrize("frameworks", list(FRAMEWORKS))
def integrations(session: nox.Session, frameworks: str) -> None:
    """The frameworks' own backend suites on the Django, Flask-Caching and dogpile.cache backends.

    Django's BaseCacheTests and Flask-Caching's GenericCacheTests come from the
    source distribution of the installed release (downloaded once, kept in the
    nox cache directory); dogpile.cache's suites ship in its wheel. Each runs on
    the Redis driver (a real server the tests start) and the memory driver,
    with tests/integrations' own tests of what the suites leave out.
    """
    _install(session, "test")
    session.install("./pevensie_cache[django,flask,dogpile]", *FRAMEWORKS[frameworks])
    env = {"PEVENSIE_INTEGRATIONS": "1", "PEVENSIE_SDIST_CACHE": str(session.cache_dir / "sdists")}
    session.run("pytest", "tests/integrations", *session.posargs, env=env)


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
    # The framework backends are checked against the newest frameworks they support.
    session.install(TEST_SUPPORT, "./pevensie_cache[django,flask,dogpile]", *FRAMEWORKS["newest"])
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
    """The side-by-side benchmark, then its cluster rows (pass --quick for the CI smoke run)."""
    _install(session, "test", "bench")
    session.install(TEST_SUPPORT)
    session.run("python", "benchmarks/run.py", *session.posargs)
    quick = ["--quick"] if "--quick" in session.posargs else []
    session.run("python", "benchmarks/cluster_bench.py", *quick)


@nox.session
def bench_frameworks(session: nox.Session) -> None:
    """The framework backends against Django's, django-redis's, Flask-Caching's and dogpile's."""
    _install(session, "test", "bench-frameworks")
    session.install("./pevensie_cache[django,flask,dogpile]", *FRAMEWORKS["newest"])
    session.run("python", "benchmarks/frameworks_bench.py", *session.posargs)
