"""pytest plugin (entry point ``pytest11``): real Redis-compatible servers as fixtures.

Fixtures (all named ``pevensie_*``):

``pevensie_redis_server`` (session)
    A :class:`~pevensie_redis.testing.servers.RedisServer` handle for the run.
``pevensie_redis_url`` (session)
    Its URL, ``redis://127.0.0.1:PORT/0``.
``pevensie_redis_cache`` (function)
    ``pevensie_cache.cache.from_url(url).connect()`` on a flushed database,
    disconnected afterwards.
``pevensie_redis_server_factory`` (function)
    ``factory(args=(...), provider=None)`` starts a private server with extra
    arguments (``--requirepass``, ``--maxmemory``...); all stopped at teardown.
``pevensie_redis_tls_server`` (session)
    A TLS-only server (``rediss://``) with ``ca_file``, ``client_cert_file``,
    ``client_key_file`` and ``untrusted_ca_file``; skipped when no binary
    supports TLS (a failure instead when ``PEVENSIE_TEST_REQUIRE_TLS=1``).

The plugin is inert until used: a run in which no test requests one of these
fixtures prints nothing of ours, contacts no Docker engine and runs no
process. The provider (environment URL, container or binary) is chosen once,
when a fixture first needs a server; the terminal summary names the providers
that started servers. To name the provider in the report header as well, set
the ini option ``pevensie_redis_report_header = true`` (this repository does);
that choice is then made at start-up. Importing this module imports neither
redis-py nor testcontainers; they are imported when a fixture first needs them.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from pevensie_cache.cache import PevensieCache
    from pevensie_redis.testing.providers import ProviderChoice
    from pevensie_redis.testing.servers import RedisServer
    from pevensie_redis.testing.tls import TLSMaterial, TLSServer

__all__ = [
    "pevensie_redis_cache",
    "pevensie_redis_server",
    "pevensie_redis_server_factory",
    "pevensie_redis_tls_material",
    "pevensie_redis_tls_server",
    "pevensie_redis_url",
]

ServerFactory = Callable[..., "RedisServer"]

_CHOICE = pytest.StashKey["ProviderChoice | str"]()
_STARTED = pytest.StashKey["Counter[str]"]()


def _choice(config: pytest.Config) -> ProviderChoice | str:
    """Return the provider for this run (or why there is none), decided once."""
    if _CHOICE not in config.stash:
        from pevensie_redis.testing.errors import ServerUnavailable
        from pevensie_redis.testing.providers import choose_provider

        try:
            config.stash[_CHOICE] = choose_provider()
        except ServerUnavailable as exc:
            config.stash[_CHOICE] = str(exc)
    return config.stash[_CHOICE]


def _note_started(config: pytest.Config, server: RedisServer) -> None:
    config.stash.setdefault(_STARTED, Counter())[server.provider] += 1


HEADER_INI = "pevensie_redis_report_header"
"""The ini option that asks for the provider in the report header (off by default)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ini option :data:`HEADER_INI`."""
    parser.addini(
        HEADER_INI,
        "name the pevensie-redis test-server provider in the report header "
        "(chooses it at start-up: may contact a Docker engine and run a server binary)",
        type="bool",
        default=False,
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Name the test-server provider, when the ini option :data:`HEADER_INI` asks for it."""
    if not config.getini(HEADER_INI):
        return []
    choice = _choice(config)
    if isinstance(choice, str):
        return [f"pevensie-redis test server: none available ({choice})"]
    lines = [f"pevensie-redis test server: {choice.description}"]
    if choice.note:
        lines.append(f"pevensie-redis test server note: {choice.note}")
    from pevensie_redis.testing.tls import find_tls_binaries

    tls = find_tls_binaries()
    lines.append(
        "pevensie-redis TLS server: "
        + (f"{tls[0].describe()} (if built with TLS)" if tls else "no candidate binary (skipped)")
    )
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say which providers actually ran servers in this session."""
    started = config.stash.get(_STARTED, Counter())
    if not started:
        return
    terminalreporter.write_sep("-", "pevensie-redis test servers")
    for provider, count in sorted(started.items()):
        terminalreporter.write_line(f"pevensie-redis: {count} x {provider}")


@pytest.fixture(scope="session")
def pevensie_redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """Yield the run's shared server (provider chosen once; see the report header)."""
    choice = _choice(request.config)
    if isinstance(choice, str):
        pytest.fail(f"no Redis-compatible test server available: {choice}", pytrace=False)
    server = choice.start()
    _note_started(request.config, server)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pevensie_redis_url(pevensie_redis_server: RedisServer) -> str:
    """Return the URL of the shared server (``redis://127.0.0.1:PORT/0``)."""
    return pevensie_redis_server.url


@pytest.fixture
def pevensie_redis_cache(pevensie_redis_server: RedisServer) -> Iterator[PevensieCache]:
    """Yield a connected Pevensie cache on the shared server, database flushed first."""
    from pevensie_cache import cache

    pevensie_redis_server.ensure_running()
    with pevensie_redis_server.client() as raw:
        raw.flushdb()
    connected = cache.from_url(pevensie_redis_server.url).connect()
    try:
        yield connected
    finally:
        if connected.connected:
            connected.disconnect()


@pytest.fixture
def pevensie_redis_server_factory(request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """Start private servers with extra arguments; every one is stopped at teardown.

    ``factory(args=(), provider=None, tls=False)``: ``provider`` may force
    ``"binary"`` (needed when ``args`` name files on this host) or
    ``"container"``. These servers never come from ``PEVENSIE_TEST_REDIS_URL``:
    under that provider they use a container or a binary, or skip when neither
    exists.
    """
    from pevensie_redis.testing.errors import ServerUnavailable
    from pevensie_redis.testing.providers import choose_provider
    from pevensie_redis.testing.tls import start_tls_server

    started: list[RedisServer] = []
    session_choice = _choice(request.config)

    def factory(
        args: Sequence[str] = (), *, provider: str | None = None, tls: bool = False
    ) -> RedisServer:
        if tls:
            server: RedisServer = _start_tls_or_skip(start_tls_server, args)
        else:
            if provider is None and not isinstance(session_choice, str):
                provider = session_choice.kind if session_choice.kind != "env" else None
            try:
                choice = choose_provider(provider, allow_env=False)
            except ServerUnavailable as exc:
                pytest.skip(f"cannot start a private test server: {exc}")
            server = choice.start(args)
        started.append(server)
        _note_started(request.config, server)
        return server

    try:
        yield factory
    finally:
        for server in reversed(started):
            server.stop()


REQUIRE_TLS_ENV_VAR = "PEVENSIE_TEST_REQUIRE_TLS"
"""Set to 1 to make a missing TLS-capable binary fail the TLS tests instead of skipping them."""


def _tls_unavailable(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_TLS_ENV_VAR, "") not in ("", "0"):
        pytest.fail(f"{REQUIRE_TLS_ENV_VAR} is set but {reason}", pytrace=False)
    pytest.skip(reason)


def _start_tls_or_skip(start: Callable[..., TLSServer], args: Sequence[str]) -> TLSServer:
    from pevensie_redis.testing.errors import TLSUnavailable

    try:
        return start(None, args=args)
    except TLSUnavailable as exc:
        _tls_unavailable(str(exc))


@pytest.fixture(scope="session")
def pevensie_redis_tls_material(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    """Make a throwaway CA, server and client certificates (and an untrusted CA)."""
    from pevensie_redis.testing.tls import make_tls_material

    return make_tls_material(tmp_path_factory.mktemp("pevensie-tls"))


@pytest.fixture(scope="session")
def pevensie_redis_tls_server(
    request: pytest.FixtureRequest, pevensie_redis_tls_material: TLSMaterial
) -> Iterator[TLSServer]:
    """Yield a TLS-only server (``rediss://127.0.0.1:PORT/0``); skip when no binary has TLS."""
    from pevensie_redis.testing.errors import TLSUnavailable
    from pevensie_redis.testing.tls import start_tls_server

    try:
        server = start_tls_server(pevensie_redis_tls_material)
    except TLSUnavailable as exc:
        _tls_unavailable(str(exc))
    _note_started(request.config, server)
    try:
        yield server
    finally:
        server.stop()
