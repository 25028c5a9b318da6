"""``python -m pevensie_redis server``: the one command the quick start needs for a server.

It runs the bundled Valkey in the foreground, serves the cache at once, and
stops cleanly (exit 0, no server left behind) on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest

from pevensie_cache import cache
from pevensie_redis.testing.binaries import free_port, wait_until_ready


def start(port: int, *more: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pevensie_redis", "server", "--port", str(port), *more],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def port() -> int:
    return free_port()


def stop(process: subprocess.Popen[str], servers: list[psutil.Process]) -> None:
    """Stop the command (SIGTERM, its clean way), then anything of it still alive, by PID."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for server in servers:  # its own process group: a killed command would orphan it
        if server.is_running():
            server.kill()


@contextmanager
def serving(port: int, host: str = "127.0.0.1", *more: str) -> Iterator[subprocess.Popen[str]]:
    """Run the command until the block ends, once its server answers on ``host``."""
    process = start(port, *more)
    servers: list[psutil.Process] = []
    try:
        wait_until_ready(host, port, timeout=30)
        servers = psutil.Process(process.pid).children()
        yield process
    finally:
        stop(process, servers)


@pytest.fixture
def running(port: int) -> Iterator[subprocess.Popen[str]]:
    with serving(port) as process:
        yield process


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_server_serves_then_stops_cleanly(
    running: subprocess.Popen[str], port: int, stop: signal.Signals
) -> None:
    server = [p for p in psutil.Process(running.pid).children() if p.is_running()]
    assert len(server) == 1
    with cache.from_url(f"redis://127.0.0.1:{port}/0") as c:
        c.set("user", "42", "Ada", ttl_seconds=60)
        assert c.get("user", "42") == "Ada"
    running.send_signal(stop)
    output, _ = running.communicate(timeout=30)
    assert running.returncode == 0, output
    assert f"on 127.0.0.1:{port}" in output
    assert output.rstrip().endswith("server: stopped")
    deadline = time.monotonic() + 10
    while server[0].is_running() and server[0].status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the server outlived its command"
        time.sleep(0.05)


def test_a_port_in_use_is_reported_at_once(running: subprocess.Popen[str], port: int) -> None:
    second = start(port)
    output, _ = second.communicate(timeout=30)
    assert second.returncode == 1
    assert f"127.0.0.1:{port} is in use already" in output
    assert f"--port {port + 1}" in output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "70000"], "--port must be between 1 and 65535, got 70000"),
        (["--port", "0"], "--port must be between 1 and 65535, got 0"),
        (["--bind", "256.1.1.1"], "cannot listen on '256.1.1.1'"),
        (["--bind", "not-an-address"], "--bind takes an IP address of this machine"),
    ],
)
def test_a_bad_port_or_address_is_one_line_naming_the_fix(args: list[str], says: str) -> None:
    # They once ended in a traceback (OverflowError, socket.gaierror), or (port 0) in a
    # server that logged "not listening anywhere" after the command printed its URL.
    done = subprocess.run(
        [sys.executable, "-m", "pevensie_redis", "server", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert "connect with" not in done.stdout


def test_the_ipv6_loopback_is_an_address_to_bind(port: int) -> None:
    with (
        serving(port, "::1", "--bind", "::1") as process,
        cache.from_url(f"redis://[::1]:{port}/0") as c,
    ):
        c.set("user", "6", "ipv6")
        assert c.get("user", "6") == "ipv6"
    output, _ = process.communicate(timeout=30)
    assert f"connect with redis://[::1]:{port}/0" in output
