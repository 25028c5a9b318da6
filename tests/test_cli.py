"""The core command line through ``python -m pevensie_cache`` (the same as ``pevensie-cache``).

The commands against a real server are in ``tests/redis/test_cli_redis.py``.
"""

from __future__ import annotations

import json
import os
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


def test_usage_errors_never_show_a_secret_typed_in_the_wrong_place() -> None:
    token_url = "memory://?token=s3cretPW"
    result = _run("get", "rt", "k", token_url)
    assert result.returncode == 2
    assert "Got unexpected extra argument (memory://?token=***)" in result.stderr
    document = json.loads(_run("--json", "drivers", token_url).stdout)
    assert document["error"]["message"] == "Got unexpected extra argument (memory://?token=***)"
    for args in (["keys", "redis://:s3cretPW@h/0"], ["check", "redis:/:s3cretPW@h/0"]):
        result = _run(*args)
        assert result.returncode in (2, 3)
        assert "s3cretPW" not in result.stdout + result.stderr


def test_the_redactor_scrubs_every_spelling_and_shows_none_in_its_repr() -> None:
    from pevensie_cache.cli.target import Redactor

    redactor = Redactor()
    redactor.add_url("redis://app:p%40ss'wo\\rd@h/0?passwd=an0ther")
    assert "p%40ss" not in repr(redactor)
    assert "an0ther" not in repr(redactor)
    # As typed, percent-decoded, inside a repr (backslash doubled), and a query value.
    for spelling in ("p%40ss'wo\\rd", "p@ss'wo\\rd", "p@ss'wo\\\\rd", "an0ther"):
        assert redactor.scrub(f"<{spelling}>") == "<***>", spelling
    # In a JSON document, inside a repr.
    assert redactor.scrub(json.dumps({"m": repr("p@ss'wo\\rd")})) == json.dumps({"m": '"***"'})


def test_the_redactor_looks_through_arrays_of_a_config_table() -> None:
    from pevensie_cache.cli.target import Redactor

    redactor = Redactor()
    redactor.add_config(
        {
            "driver": "third-party",
            "nodes": ["redis://:n0de-pw@h1/0", "redis://h2/0"],
            "passwords": ["first-pw", "second-pw"],
            "replicas": [{"url": "redis://:r3plica-pw@h3/0", "token": "t0ken-pw"}],
        }
    )
    for secret in ("n0de-pw", "first-pw", "second-pw", "r3plica-pw", "t0ken-pw"):
        assert redactor.scrub(f"<{secret}>") == "<***>", secret
    assert redactor.scrub("redis://h2/0") == "redis://h2/0"


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes('[cache]\nurl = "memory://"\n# caf\u00e9\n'.encode("latin-1"))
    result = _run("check", "--config", str(config))
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "is not UTF-8 text" in result.stderr


def test_even_a_crash_prints_its_traceback_scrubbed() -> None:
    # The URL is only in the environment, which the command never got to read.
    crash = (
        "import sys\n"
        "from pevensie_cache import cache\n"
        "def crash():\n"
        "    raise ValueError('cannot list for ' + sys.argv[-1])\n"
        "cache.drivers = crash\n"
        "from pevensie_cache.cli import main\n"
        "sys.exit(main(['drivers']))\n"
    )
    url = "redis://:s3cretPW@127.0.0.1:1/0"
    result = subprocess.run(
        [sys.executable, "-c", crash, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PEVENSIE_CACHE_URL": url},
    )
    assert result.returncode == 1
    assert "ValueError: cannot list for redis://:***@127.0.0.1:1/0" in result.stderr
    assert "s3cretPW" not in result.stdout + result.stderr


def test_every_command_takes_h_for_help_as_the_group_does() -> None:
    # The group's -h once stopped at the commands: `get -h` was "No such option '-h'".
    commands = (
        "bench",
        "check",
        "clear",
        "delete",
        "drivers",
        "get",
        "keys",
        "set",
        "stats",
        "ttl",
    )
    for command in commands:
        short, long = _run(command, "-h"), _run(command, "--help")
        assert short.returncode == 0, (command, short.stderr)
        assert short.stdout == long.stdout
        assert short.stdout.startswith(f"Usage: pevensie-cache {command} ")
