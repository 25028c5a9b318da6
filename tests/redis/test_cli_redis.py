"""The ``pevensie-cache`` command line, run through its console script against a real server.

The server requires a password (with characters a URL must escape), so every
test also checks that no output, stdout or stderr, ever holds it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_support import QUOTED, SECRET, run_in_terminal, run_script

from pevensie_cache import PevensieCache, cache
from pevensie_redis.testing.servers import RedisServer


@pytest.fixture
def secret_server(pevensie_redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A private server that requires a password (stopped at teardown by the factory)."""
    return pevensie_redis_server_factory(["--requirepass", SECRET])


@pytest.fixture
def url(secret_server: RedisServer) -> str:
    return f"redis://:{QUOTED}@{secret_server.host}:{secret_server.port}/0"


@pytest.fixture
def c(url: str) -> Iterator[PevensieCache]:
    with cache.from_url(url) as connected:
        yield connected


def cli(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """Run the console script; assert that the password appears in no output."""
    result = run_script(*args, stdin=stdin, **env)
    for secret in (SECRET, QUOTED):
        assert secret not in result.stdout, (args, result.stdout)
        assert secret not in result.stderr, (args, result.stderr)
    return result


def cli_json(*args: str, code: int = 0, **env: str) -> dict[str, object]:
    result = cli(*args, "--json", **env)
    assert result.returncode == code, result.stderr
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    return document


def masked(url: str) -> str:
    return url.replace(QUOTED, "***")


# -- single keys -------------------------------------------------------------------------


def test_set_get_ttl_delete_one_key(url: str) -> None:
    stored = cli("set", "user", "42", "Ada Lovelace", "--ttl", "600", "--url", url)
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout == "stored resource type 'user', key '42' (expires in 600 s)\n"

    got = cli("get", "user", "42", "-u", url)
    assert (got.returncode, got.stdout) == (0, "Ada Lovelace\n")
    assert cli_json("get", "user", "42", "-u", url) == {
        "ok": True,
        "resource_type": "user",
        "key": "42",
        "hit": True,
        "value": "Ada Lovelace",
    }

    left = cli("ttl", "user", "42", "-u", url)
    assert left.returncode == 0
    assert 300 < float(left.stdout) <= 600
    document = cli_json("ttl", "user", "42", "-u", url)
    assert document["exists"] is True
    assert 300 < float(document["ttl_seconds"]) <= 600  # type: ignore[arg-type]

    assert cli("set", "user", "7", "-", "-u", url, stdin="from stdin").returncode == 0
    assert cli("get", "user", "7", "-u", url).stdout == "from stdin\n"
    assert cli("ttl", "user", "7", "-u", url).stdout == "none\n"

    deleted = cli("delete", "user", "42", "-u", url)
    assert (deleted.returncode, deleted.stdout) == (
        0,
        "deleted resource type 'user', key '42' (if it was there)\n",
    )
    assert cli_json("delete", "user", "42", "-u", url)["ok"] is True


def test_a_miss_exits_1_for_get_and_ttl(url: str) -> None:
    miss = cli("get", "user", "absent", "-u", url)
    assert (miss.returncode, miss.stdout) == (1, "")
    assert "miss: no value under resource type 'user', key 'absent'" in miss.stderr
    assert cli_json("get", "user", "absent", "-u", url, code=1)["hit"] is False
    assert cli("ttl", "user", "absent", "-u", url).returncode == 1
    assert cli_json("ttl", "user", "absent", "-u", url, code=1)["exists"] is False


# -- keys and clear: glob characters and many keys ----------------------------------------

GLOB = "tenant[1]*?"
NEIGHBOURS = ["tenant1x", "tenant[1]", "tenant[1]*", "tenant"]


def test_keys_lists_one_resource_type_in_pages(c: PevensieCache, url: str) -> None:
    c.set_many(GLOB, {f"k{i}": "v" for i in range(57)})
    for neighbour in NEIGHBOURS:
        c.set(neighbour, "k0", "not mine")
    listed = cli("keys", GLOB, "--page-size", "7", "-u", url)
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.split()) == sorted(f"k{i}" for i in range(57))

    document = cli_json("keys", GLOB, "--page-size", "7", "-u", url)
    assert document["count"] == 57
    assert sorted(document["keys"]) == sorted(f"k{i}" for i in range(57))  # type: ignore[arg-type]

    limited = cli_json("keys", GLOB, "--limit", "5", "-u", url)
    assert limited["count"] == 5

    none = cli("keys", "nothing-here", "-u", url)
    assert (none.returncode, none.stdout) == (0, "")
    assert "no keys of resource type 'nothing-here'" in none.stderr


def _fill(c: PevensieCache, count: int) -> None:
    for start in range(0, count, 5000):
        c.set_many(GLOB, {f"k{i}": "v" for i in range(start, min(start + 5000, count))})
    for neighbour in NEIGHBOURS:
        c.set(neighbour, "k0", "not mine")


def _neighbours_intact(c: PevensieCache) -> None:
    for neighbour in NEIGHBOURS:
        assert c.get(neighbour, "k0") == "not mine"


def test_clear_20000_keys_with_glob_characters_shows_progress_and_the_total(
    c: PevensieCache, url: str
) -> None:
    _fill(c, 20_000)
    result = cli("clear", GLOB, "--yes", "-u", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"deleted 20,000 keys of resource type {GLOB!r} at {masked(url)}\n")
    progress = re.findall(r"clear tenant\[1\]\*\?: ([\d,]+) keys deleted", result.stderr)
    assert progress, result.stderr  # no terminal: progress as lines on stderr
    counts = [int(count.replace(",", "")) for count in progress]
    assert counts == sorted(counts)
    assert all(0 < count <= 20_000 for count in counts)
    assert c.get_many(GLOB, [f"k{i}" for i in range(0, 20_000, 997)]) == {}
    _neighbours_intact(c)


def test_clear_json_reports_the_count(c: PevensieCache, url: str) -> None:
    _fill(c, 1234)
    document = cli_json("clear", GLOB, "--yes", "-u", url)
    assert document == {
        "ok": True,
        "resource_type": GLOB,
        "target": masked(url),
        "deleted": 1234,
    }
    _neighbours_intact(c)


def test_clear_asks_first_and_deletes_nothing_unless_confirmed(c: PevensieCache, url: str) -> None:
    _fill(c, 10)
    declined = cli("clear", GLOB, "-u", url, stdin="n\n")
    assert declined.returncode == 7
    assert f"Delete every key of resource type {GLOB!r} at {masked(url)}?" in declined.stderr
    assert "not confirmed: nothing was deleted" in declined.stderr
    no_answer = cli("clear", GLOB, "-u", url, stdin="")
    assert no_answer.returncode == 7
    assert c.get(GLOB, "k3") == "v"

    confirmed = cli("clear", GLOB, "-u", url, stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert confirmed.stdout.startswith("deleted 10 keys")
    assert c.get(GLOB, "k3", None) is None
    _neighbours_intact(c)


def test_clear_on_a_terminal_draws_a_progress_bar_with_the_running_count(
    c: PevensieCache, url: str
) -> None:
    _fill(c, 20_000)
    code, screen = run_in_terminal(["clear", GLOB, "--yes", "-u", url], columns=100)
    assert code == 0, screen
    assert SECRET not in screen
    assert QUOTED not in screen
    assert "━" in screen  # rich's bar
    assert "20,000 keys deleted" in screen
    assert f"deleted 20,000 keys of resource type {GLOB!r}" in screen
    _neighbours_intact(c)


# -- check, stats, bench ------------------------------------------------------------------


@pytest.mark.server_dependent
def test_check_reports_the_server_and_latency(secret_server: RedisServer, url: str) -> None:
    result = cli("check", url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{masked(url)}: ok\n")
    assert re.search(r"server +(valkey|redis) \d+\.\d+", result.stdout)
    assert re.search(r"latency +min [\d.]+ ms, median [\d.]+ ms \(20 gets\)", result.stdout)

    document = cli_json("check", url)
    assert document["target"] == masked(url)
    assert document["driver"] == "redis"
    assert str(document["server"]).split()[0] in ("valkey", "redis")
    assert set(document["round_trip_ms"]) == {"set", "get", "delete"}  # type: ignore[arg-type]
    latency = document["latency_ms"]
    assert isinstance(latency, dict)
    assert 0 < latency["min"] <= latency["median"]


@pytest.mark.server_dependent
def test_stats_counts_keys_per_resource_type_and_the_hit_ratio(
    secret_server: RedisServer, c: PevensieCache, url: str
) -> None:
    raw = secret_server.client(password=SECRET)
    raw.config_resetstat()
    raw.set("not-ours", "x")
    raw.close()
    c.set_many("user", {str(i): "u" for i in range(30)})
    c.set_many("session", {str(i): "s" for i in range(12)})
    for key in ("1", "2", "3"):
        c.get("user", key)
    c.get("user", "absent", None)

    document = cli_json("stats", url)
    server = document["server"]
    assert isinstance(server, dict)
    assert server["server"] in ("valkey", "redis")
    assert re.fullmatch(r"\d+\.\d+\.\d+", server["version"])
    assert server["used_memory"] > 0
    assert server["keys"] == 43
    assert (server["hits"], server["misses"]) == (3, 1)
    assert server["hit_ratio"] == 0.75
    sample = document["sample"]
    assert isinstance(sample, dict)
    assert sample["by_resource_type"] == {"user": 30, "session": 12}
    assert (sample["sampled"], sample["total"], sample["foreign"]) == (43, 43, 1)

    bounded = cli_json("stats", "--sample", "10", url)["sample"]
    assert isinstance(bounded, dict)
    assert bounded["sampled"] == 10

    shown = cli("stats", url)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"hit ratio +75\.0% \(\d+ hits, \d+ misses, whole server\)", shown.stdout)
    assert re.search(r"user +30 +30", shown.stdout)
    assert re.search(r"session +12 +12", shown.stdout)


@pytest.mark.server_dependent
def test_stats_counts_tag_counters_and_locks_as_the_librarys_own(
    c: PevensieCache, url: str
) -> None:
    c.set("user", "1", "Ada", tags=["team:7"])
    with c.lock("user", "job"):
        sample = cli_json("stats", url)["sample"]
    assert isinstance(sample, dict)
    assert sample["by_resource_type"] == {"user": 1, ":tag": 1, ":lock": 1}
    assert sample["foreign"] == 0


def test_bench_compares_with_redis_py_and_cleans_up(secret_server: RedisServer, url: str) -> None:
    document = cli_json("bench", "--ops", "60", "--batch", "10", "--compare", url)
    rows = document["results"]
    assert isinstance(rows, list)
    assert [(row["contender"], row["operation"]) for row in rows] == [
        (contender, operation)
        for contender in ("pevensie", "redis-py")
        for operation in ("set", "get", "set_many", "get_many")
    ]
    for row in rows:
        assert row["calls"] == (60 if row["keys_per_call"] == 1 else 6)
        assert row["calls_per_second"] > 0
        assert 0 < row["p50_us"] <= row["p95_us"] <= row["p99_us"]
    raw = secret_server.client(password=SECRET)
    try:
        assert list(raw.scan_iter(match="pevensie-bench-*")) == []
    finally:
        raw.close()

    table = cli("bench", "--ops", "40", url)
    assert table.returncode == 0, table.stderr
    assert re.search(r"pevensie +get_many +[\d,]+ +[\d,]+", table.stdout)
    assert "bench:" in table.stderr  # progress lines without a terminal


# -- where the URL comes from ----------------------------------------------------------


def test_url_from_the_environment_and_from_a_config_file(
    secret_server: RedisServer, c: PevensieCache, url: str, tmp_path: Path
) -> None:
    c.set("user", "1", "Lucy")
    from_env = cli("get", "user", "1", PEVENSIE_CACHE_URL=url)
    assert (from_env.returncode, from_env.stdout) == (0, "Lucy\n")

    with_url = tmp_path / "with-url.toml"
    with_url.write_text(f'[cache]\nurl = "{url}"\n', encoding="utf-8")
    assert cli("get", "user", "1", "--config", str(with_url)).stdout == "Lucy\n"

    by_fields = tmp_path / "by-fields.toml"
    by_fields.write_text(
        "[cache]\n"
        'driver = "redis"\n'
        f'host = "{secret_server.host}"\n'
        f"port = {secret_server.port}\n"
        f'password = "{SECRET}"\n'
        'timeout = "1500ms"\n',
        encoding="utf-8",
    )
    shown = cli("check", "--config", str(by_fields))
    assert shown.returncode == 0, shown.stderr
    assert "RedisDriver(" in shown.stdout  # the driver's own masked repr
    assert "?timeout=1500ms'" in shown.stdout  # with its unit, not a bare 1500

    # The command line beats the file, which beats the environment.
    elsewhere = "redis://127.0.0.1:1/0"
    assert cli("get", "user", "1", "-c", str(with_url), PEVENSIE_CACHE_URL=elsewhere).stdout == (
        "Lucy\n"
    )
    assert cli("get", "user", "1", "-u", elsewhere, "-c", str(with_url)).returncode == 4


# -- failures: codes and messages, never the password --------------------------------


def test_failures_exit_with_their_documented_codes(
    secret_server: RedisServer, url: str, tmp_path: Path
) -> None:
    wrong = f"redis://:wrong-{QUOTED}@{secret_server.host}:{secret_server.port}/0"
    refused = cli("check", wrong)
    assert refused.returncode == 4
    assert "RedisAuthenticationError" in refused.stderr
    assert cli_json("check", wrong, code=4)["error"]["kind"] == "connect"  # type: ignore[index]

    nobody = f"redis://:{QUOTED}@127.0.0.1:1/0"
    assert cli("stats", nobody).returncode == 4

    assert cli("get", "a:b", "k", "-u", url).returncode == 2  # not a resource type
    assert cli("set", "a", "k", "v", "--ttl", "0", "-u", url).returncode == 2
    assert cli("get", "user", "1").returncode == 2  # no URL anywhere
    usage = cli_json("frobnicate", code=2)
    assert usage["ok"] is False

    assert cli("check", f"nosuch://:{QUOTED}@host/0").returncode == 3
    assert cli("check", "--config", str(tmp_path / "missing.toml")).returncode == 3
    assert cli_json("bench", "--compare", "memory://", code=6)["ok"] is False


def test_every_command_keeps_the_password_out_of_its_output(url: str) -> None:
    # cli() asserts the secret is absent from stdout and stderr of every run; the
    # other tests run every command too, each through cli().
    for args in (
        ["check", url],
        ["stats", url],
        ["set", "user", "1", "v", "-u", url],
        ["get", "user", "1", "-u", url],
        ["ttl", "user", "1", "-u", url],
        ["keys", "user", "-u", url],
        ["delete", "user", "1", "-u", url],
        ["clear", "user", "--yes", "-u", url],
        ["bench", "--ops", "20", url],
        ["drivers"],
    ):
        for extra in ([], ["--json"]):
            result = cli(*args, *extra)
            assert result.returncode == 0, (args, result.stderr)
    from_env = cli("check", PEVENSIE_CACHE_URL=url)
    assert from_env.returncode == 0, from_env.stderr
    assert masked(url) in from_env.stdout


def test_memory_driver_answers_what_it_can() -> None:
    assert cli("ttl", "user", "1", "-u", "memory://").returncode == 1  # a fresh, empty store
    assert cli("keys", "user", "-u", "memory://").returncode == 0
    document = cli_json("stats", "memory://")
    server = document["server"]
    assert isinstance(server, dict)
    assert server["server"] == "memory (in-process)"
    assert server["used_memory"] is None
    assert server["hit_ratio"] is None
    shown = cli("stats", "memory://")
    assert "memory used   not available from this driver" in shown.stdout


def test_without_the_cli_extra_it_says_how_to_install_it() -> None:
    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in ('click', 'rich'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from pevensie_cache.cli import main\n"
        "sys.exit(main(['drivers']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocker], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 3
    assert "pip install 'pevensie-cache[cli]'" in result.stderr


def test_a_config_url_with_options_on_top_is_shown_as_the_address_really_used(
    secret_server: RedisServer, url: str, tmp_path: Path
) -> None:
    # The options of the table go on top of its url. The prompt of clear once named the
    # url's database 0 while the keys it deleted were in database 5.
    with cache.from_url(url.replace("/0", "/5")) as in_five:
        in_five.set("user", "9", "x")
    table = tmp_path / "url-and-db.toml"
    table.write_text(f'[cache]\nurl = "{url}"\ndb = 5\n', encoding="utf-8")
    asked = cli("clear", "user", "--config", str(table), stdin="n\n")
    assert asked.returncode == 7
    assert f"at RedisDriver('{masked(url).replace('/0', '/5')}')?" in asked.stderr, asked.stderr
    checked = cli_json("check", "--config", str(table))
    assert "/5" in str(checked["target"]), checked
