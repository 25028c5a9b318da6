"""Running the ``pevensie-cache`` console script in the CLI tests, over pipes or a terminal.

One server password for the tests that check it never shows, and the two ways the
tests start the script: with its output captured, or on a pseudo-terminal (where
the rich output draws tables and progress).
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

SECRET = "cli-Pa55:w@rd/x"
"""The test servers' password: ``:``, ``@`` and ``/`` need quoting in a URL."""
QUOTED = quote(SECRET, safe="")
SCRIPT = Path(sys.executable).with_name("pevensie-cache")


def script_env(**extra: str) -> dict[str, str]:
    """This process's environment without ``PEVENSIE_CACHE_URL``, with ``extra`` added."""
    env = {k: v for k, v in os.environ.items() if k != "PEVENSIE_CACHE_URL"}
    env.update(extra)
    return env


def run_script(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """Run the console script with ``args``, its output captured (300 s at most)."""
    assert SCRIPT.exists(), f"the console script is not installed next to {sys.executable}"
    return subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env=script_env(**env),
        check=False,
    )


def run_in_terminal(args: list[str], columns: int, timeout: float = 120) -> tuple[int, str]:
    """Run the console script with a pseudo-terminal ``columns`` wide as stdin, stdout, stderr."""
    main, child = pty.openpty()
    process = subprocess.Popen(
        [str(SCRIPT), *args],
        stdin=child,
        stdout=child,
        stderr=child,
        env=script_env(COLUMNS=str(columns), TERM="xterm"),
        close_fds=True,
    )
    os.close(child)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    data = os.read(main, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
        code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(main)
    return code, b"".join(chunks).decode("utf-8", "replace")
