"""The README runs as written: every Python block, against the server its one command starts.

A new user installs, runs ``python -m pevensie_redis server`` and pastes the
blocks in order; so does this test (the blocks share one namespace, as the
recipes share their cache), with the server on a free port in place of 6379.
A block preceded by ``<!-- not run: reason -->`` is left out (the framework
settings, run in tests/integrations).
"""

from __future__ import annotations

import contextlib
import io
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from pevensie_redis.testing.binaries import free_port, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"(<!-- not run: [^>]*-->\n)?```python\n(.*?)```", re.S)


def runnable_blocks() -> list[str]:
    return [code for skipped, code in BLOCK.findall(README) if not skipped]


@pytest.fixture
def server_port() -> Iterator[int]:
    """The README's own server command, on a free port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pevensie_redis", "server", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    servers: list[psutil.Process] = []
    try:
        wait_until_ready("127.0.0.1", port, timeout=30)
        servers = psutil.Process(process.pid).children()
        yield port
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        finally:
            for server in servers:  # by PID, whatever became of the command
                if server.is_running():
                    server.kill()
        assert process.returncode == 0, output


def test_the_readme_documents_the_server_command_it_runs_here() -> None:
    assert "python -m pevensie_redis server" in README
    assert len(runnable_blocks()) >= 8


def test_every_python_block_of_the_readme_runs_as_written(server_port: int) -> None:
    namespace: dict[str, object] = {"__name__": "readme"}
    printed = io.StringIO()
    for number, code in enumerate(runnable_blocks(), start=1):
        source = code.replace("6379", str(server_port))
        with contextlib.redirect_stdout(printed):
            try:
                exec(compile(source, f"README block {number}", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"README block {number} failed:\n{code}") from exc
    out = printed.getvalue().splitlines()
    # What the comments say the blocks print, in order.
    assert out[:4] == ["Ada", "None", "miss", "True"]
    assert "{'name': 'Ada', 'langs': ['en', 'fr']}" in out
    assert '{"name":"Ada","langs":["en","fr"]}' in out
    assert "db" in out
