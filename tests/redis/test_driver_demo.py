"""The main job, ``python -m pevensie_redis demo``, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pevensie_redis.testing.servers import RedisServer

PASSWORD = "demo-Secret-9"


def _run(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PEVENSIE_CACHE_URL"}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "pevensie_redis", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_demo_with_pevensie_cache_url_masks_the_password(
    pevensie_redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = pevensie_redis_server_factory(["--requirepass", PASSWORD])
    url = f"redis://:{PASSWORD}@{server.host}:{server.port}/0"
    result = _run(["demo"], {"PEVENSIE_CACHE_URL": url})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "PEVENSIE_CACHE_URL=redis://:***@" in out
    assert PASSWORD not in out + result.stderr
    assert "CacheMiss" in out  # the TTL expired
    assert "demo-user:42" in out  # the key layout as the server sees it
    assert "near_cache_stats(): hits=" in out  # the near cache's step
    assert "enabled=True" in out
    # The async face of the same URL: tasks sharing one cache, then disconnected.
    assert "driver AsyncRedisDriver(" in out
    assert "4 tasks at once, asyncio.gather of get_many" in out
    assert "'4': 'Lucy'}" in out
    assert "await disconnect() -> connected=False" in out
    assert "Demo finished" in out
    raw = server.client(password=PASSWORD)
    try:
        assert list(raw.scan_iter(match="demo-*")) == []  # it cleaned up
    finally:
        raw.close()


def test_demo_with_a_config_file_picks_the_driver_by_name(
    pevensie_redis_server: RedisServer, tmp_path: Path
) -> None:
    config = tmp_path / "pevensie.toml"
    config.write_text(
        "[cache]\n"
        'driver = "redis"\n'
        f'host = "{pevensie_redis_server.host}"\n'
        f"port = {pevensie_redis_server.port}\n"
        "timeout = 2000\n",
        encoding="utf-8",
    )
    result = _run(["demo", "--config", str(config)], {})
    assert result.returncode == 0, result.stderr
    assert f"[cache] table of {config}" in result.stdout
    assert "demo-batch:a" in result.stdout
    assert "driver AsyncRedisDriver(" in result.stdout  # from_config_async of the same table


def test_demo_reports_an_unreachable_server_and_exits_non_zero() -> None:
    result = _run(["demo"], {"PEVENSIE_CACHE_URL": "redis://:hidden-pw@127.0.0.1:1/0?timeout=500"})
    assert result.returncode == 1
    assert "RedisConnectionError" in result.stderr
    assert "hidden-pw" not in result.stdout + result.stderr


def test_drivers_command_lists_redis() -> None:
    result = _run(["drivers"], {})
    assert result.returncode == 0
    assert "redis" in result.stdout
    assert "valkeys://" in result.stdout


def test_demo_with_its_own_server_stops_everything_it_started_cleanly() -> None:
    # What `nox -s demo` runs: no URL, so the demo starts a throwaway server and stops
    # it at the end. Every cache is disconnected first, so no near-cache listener is
    # left to see the server go (it would log "the invalidation channel is down").
    result = _run(["demo"], {})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Stopped the local server" in result.stdout
    assert "Demo finished" in result.stdout
    assert "invalidation channel is down" not in output
    assert "Traceback" not in output
