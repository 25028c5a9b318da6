"""The core command line: listing drivers and checking a URL."""

from __future__ import annotations

import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pevensie_cache", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_drivers_lists_installed_and_broken_plugins() -> None:
    result = _run("drivers")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    at = lines.index("memory  pevensie-cache 0.1.0  loaded")
    assert lines[at + 1].startswith("    In-process")
    assert lines[at + 2] == "    URL schemes: memory://"
    at = lines.index("broken-import  pevensie-test-broken 6.6.6  NOT LOADED")
    assert lines[at + 1].startswith("    import failed: ModuleNotFoundError")


def test_check_round_trips_a_probe_key() -> None:
    result = _run("check", "memory://")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "memory://: ok (set, get -> 'ok', delete)"


def test_check_failure_masks_the_password() -> None:
    result = _run("check", "nosuch://user:sentinel-secret@127.0.0.1:1/0")
    assert result.returncode == 1
    assert "nosuch://user:***@127.0.0.1:1/0: FAILED: DriverNotFound" in result.stderr
    assert "sentinel-secret" not in result.stdout + result.stderr
