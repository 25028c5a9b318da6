"""The command line's rough edges of the first hour, each fixed (issue 22, section 6).

Against a real server the fixtures start; the output is piped, as in scripts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pevensie_redis.testing.servers import RedisServer

SCRIPT = Path(sys.executable).with_name("pevensie-cache")


def cli(*args: str, stdin: str = "", url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PEVENSIE_CACHE_URL"}
    if url is not None:
        env["PEVENSIE_CACHE_URL"] = url
    return subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


@pytest.fixture
def url(pevensie_redis_server: RedisServer) -> str:
    pevensie_redis_server.ensure_running()
    with pevensie_redis_server.client() as raw:
        raw.flushdb()
    return pevensie_redis_server.url


def test_clear_without_a_terminal_to_ask_on_names_yes(url: str) -> None:
    assert cli("set", "session", "1", "x", url=url).returncode == 0
    refused = cli("clear", "session", url=url)  # stdin is empty: nobody answered
    assert refused.returncode == 7
    assert "not confirmed: nothing was deleted (pass --yes" in refused.stderr
    assert cli("get", "session", "1", url=url).stdout == "x\n"


def test_piped_progress_ends_with_the_final_count_and_numbers_read_one_way(
    url: str, pevensie_redis_server: RedisServer
) -> None:
    with pevensie_redis_server.client() as raw:
        pipe = raw.pipeline(transaction=False)
        for i in range(30_000):
            pipe.set(f"bulk:{i}", "x")
        pipe.execute()
    result = cli("clear", "bulk", "--yes", url=url)
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("clear bulk:")]
    assert progress[-1] == "clear bulk: 30,000 keys deleted"
    assert result.stdout.startswith("deleted 30,000 keys of resource type 'bulk'")
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "bulk" in line]
    assert not re.search(r"\b\d{4,}\b", "\n".join(ours).replace(url, ""))  # 20,000, never 20000


@pytest.mark.parametrize("position", ["before", "after"])
def test_json_is_accepted_before_the_command_name_too(url: str, position: str) -> None:
    cli("set", "user", "1", "Ada", url=url)
    args = (
        ["--json", "get", "user", "1"] if position == "before" else ["get", "user", "1", "--json"]
    )
    result = cli(*args, url=url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["value"] == "Ada"
    missing = cli("--json", "get", "user", "404", url=url)
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["hit"] is False


def test_a_value_from_stdin_loses_its_final_newline_only(url: str) -> None:
    assert cli("set", "note", "1", "-", stdin="hello\n", url=url).returncode == 0
    assert json.loads(cli("get", "note", "1", "--json", url=url).stdout)["value"] == "hello"
    assert cli("set", "note", "2", "-", stdin="two\nlines\n\n", url=url).returncode == 0
    assert json.loads(cli("get", "note", "2", "--json", url=url).stdout)["value"] == "two\nlines\n"
    assert cli("set", "note", "3", "-", stdin="crlf\r\n", url=url).returncode == 0
    assert json.loads(cli("get", "note", "3", "--json", url=url).stdout)["value"] == "crlf"


@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        ("1.5", "1.5 is not whole seconds; the cache counts whole seconds: round it (--ttl 2"),
        ("0", "0 is below 1 second; leave --ttl out for no expiry"),
        ("soon", "'soon' is not a number of seconds"),
        ("inf", "inf is not a number of seconds; leave --ttl out for no expiry"),
        ("nan", "nan is not a number of seconds"),
        ("1e20", "1e20 is more than the longest TTL, 1000000000000000 seconds"),
        ("10000000000000000", "is more than the longest TTL"),
    ],
)
def test_a_ttl_that_is_not_whole_seconds_says_how_to_fix_it(
    url: str, ttl: str, message: str
) -> None:
    result = cli("set", "user", "1", "x", "--ttl", ttl, url=url)
    assert result.returncode == 2
    assert message in result.stderr
    assert "integer range" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_whole_ttl_written_as_a_float_is_taken(url: str) -> None:
    result = cli("set", "user", "1", "x", "--ttl", "60.0", url=url)
    assert result.returncode == 0, result.stderr
    assert "expires in 60 s" in result.stdout
