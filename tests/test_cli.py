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
    assert lines[0].split() == ["driver", "provided", "by", "URL", "schemes", "status"]
    [memory] = [line for line in lines if line.startswith("memory ")]
    assert "pevensie-cache" in memory
    assert "memory://" in memory
    [broken] = [line for line in lines if line.startswith("broken-import ")]
    assert "NOT LOADED: import failed: ModuleNotFoundError" in broken


def test_check_round_trips_a_probe_key() -> None:
    result = _run("check", "memory://")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "memory://: ok (set, get -> 'ok', delete)"


def test_check_failure_masks_the_password() -> None:
    result = _run("check", "nosuch://user:sentinel-secret@127.0.0.1:1/0")
    assert result.returncode == 1
    assert "nosuch://user:***@127.0.0.1:1/0: FAILED: DriverNotFound" in result.stderr
    assert "sentinel-secret" not in result.stdout + result.stderr
