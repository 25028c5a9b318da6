"""The container provider's engine probe and image pull stay within their time bounds.

A stand-in Docker engine on a Unix socket (``DOCKER_HOST``) misbehaves on
purpose: it never answers, or it answers and then streams pull progress
forever. A real engine, when present, is covered by ``test_servers.py``.
"""

from __future__ import annotations

import json
import socketserver
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from pevensie_redis.testing.container import DockerEngine, probe_engine

BOUND = 10.0  # generous: the machine may be loaded; the defaults would take 120 s


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _handler(behaviour: str, stop: threading.Event) -> type[BaseHTTPRequestHandler]:
    class Engine(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _json(self, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if behaviour == "silent":
                stop.wait(30)
                return
            if self.path.endswith("/version"):
                self._json({"Version": "0-stand-in", "ApiVersion": "1.41"})
            else:
                self.send_error(404)

        def do_POST(self) -> None:  # /images/create: progress, forever
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while not stop.is_set():
                line = json.dumps({"status": "Downloading", "id": "layer"}).encode() + b"\r\n"
                try:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                except OSError:
                    return
                stop.wait(0.1)

    return Engine


@pytest.fixture
def stand_in_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    directory = Path(tempfile.mkdtemp(prefix="pvs-engine-"))
    path = directory / "docker.sock"
    stop = threading.Event()
    servers: list[_Server] = []

    def start(behaviour: str) -> None:
        server = _Server(str(path), _handler(behaviour, stop))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")

    try:
        yield start
    finally:
        stop.set()
        for server in servers:
            server.shutdown()
            server.server_close()
        path.unlink(missing_ok=True)
        directory.rmdir()


def test_an_engine_that_never_answers_is_no_engine(
    stand_in_engine: Callable[[str], None],
) -> None:
    stand_in_engine("silent")
    started = time.monotonic()
    assert probe_engine(timeout=0.5) is None
    assert time.monotonic() - started < BOUND


def test_a_pull_that_never_finishes_gives_up_at_its_bound(
    stand_in_engine: Callable[[str], None],
) -> None:
    stand_in_engine("endless pull")
    engine = probe_engine(timeout=2.0)
    assert isinstance(engine, DockerEngine)
    assert engine.version == "0-stand-in"
    outcome: list[str | None] = []
    pulling = threading.Thread(
        target=lambda: outcome.append(engine.pull("pevensie-test/absent:0", timeout=1.0)),
        daemon=True,
    )
    pulling.start()
    pulling.join(BOUND)  # an unbounded pull would stream forever
    assert not pulling.is_alive()
    assert outcome == ["pull of pevensie-test/absent:0 did not finish within 1 s"]


def test_no_socket_means_no_probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
    assert probe_engine() is None
