"""free_port: test servers started in parallel never share a port.

The failure this prevents: two test processes given the same kernel-picked
port, one server failing to bind while the other process's readiness check
reached the first one's server (a Cluster node that already knew other nodes).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pevensie_redis.testing import free_port
from pevensie_redis.testing.ports import PORTS_FILE_ENV_VAR, _ephemeral_floor


@pytest.fixture
def reservations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ports"
    monkeypatch.setenv(PORTS_FILE_ENV_VAR, str(path))
    return path


def test_ports_lie_below_the_ephemeral_range_and_are_free(reservations: Path) -> None:
    for _ in range(20):
        port = free_port()
        assert port < _ephemeral_floor()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nothing holds it


def test_processes_asking_at_once_never_get_the_same_port(reservations: Path) -> None:
    script = (
        "from pevensie_redis.testing import free_port\nprint(*(free_port() for _ in range(200)))\n"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    ports: list[int] = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        ports += [int(p) for p in out.split()]
    assert len(ports) == 800
    assert len(set(ports)) == 800
    assert len(reservations.read_text().splitlines()) == 800


def test_a_port_held_by_a_listener_is_never_handed_out(reservations: Path) -> None:
    floor = _ephemeral_floor()
    held = []
    try:
        for port in range(20000, min(floor, 20000 + 50)):
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sock.listen()
            held.append(sock)
        taken = {sock.getsockname()[1] for sock in held}
        assert taken.isdisjoint(free_port() for _ in range(300))
    finally:
        for sock in held:
            sock.close()
