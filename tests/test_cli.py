"""The core command line through ``python -m pevensie_cache`` (the same as ``pevensie-cache``).

The commands against a real server are in ``tests/redis/test_cli_redis.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path


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


def test_drivers_json_lists_every_driver() -> None:
    result = _run("drivers", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    memory = next(info for info in document["drivers"] if info["name"] == "memory")
    assert memory["loaded"] is True
    assert memory["schemes"] == ["memory"]
    assert memory["native_async"] is True


def test_check_round_trips_a_probe_key() -> None:
    result = _run("check", "memory://")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "memory://: ok"
    assert lines[1].split() == ["driver", "memory"]
    assert lines[2].split(None, 1) == ["server", "memory (in-process)"]


def test_check_failure_masks_the_password() -> None:
    result = _run("check", "nosuch://user:sentinel-secret@127.0.0.1:1/0")
    assert result.returncode == 3
    assert "DriverNotFound" in result.stderr
    assert "sentinel-secret" not in result.stdout + result.stderr


def test_the_console_script_is_the_same_command_line() -> None:
    script = Path(sys.executable).with_name("pevensie-cache")
    assert script.exists()
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout == _run("--help").stdout.replace(
        "python -m pevensie_cache", "pevensie-cache"
    )
    for command in (
        "drivers",
        "check",
        "get",
        "set",
        "delete",
        "ttl",
        "keys",
        "clear",
        "stats",
        "bench",
    ):
        assert re.search(rf"^  {command} ", result.stdout, re.MULTILINE), command
