"""No password in anything the command line prints, whatever was typed wrong.

Against a real server that requires a password: usage errors (which quote the
arguments as typed), URLs in the wrong place, malformed URLs, secret-looking
query parameters, and secrets from the environment or a ``--config`` file
that an early error could echo. Text and ``--json``, piped and on a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from cli_support import QUOTED, SECRET, run_in_terminal, run_script

from pevensie_redis.testing.servers import RedisServer


@pytest.fixture
def secret_server(pevensie_redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A private server that requires a password (stopped at teardown by the factory)."""
    return pevensie_redis_server_factory(["--requirepass", SECRET])


@pytest.fixture
def address(secret_server: RedisServer) -> str:
    return f"{secret_server.host}:{secret_server.port}"


@pytest.fixture
def url(address: str) -> str:
    return f"redis://:{QUOTED}@{address}/0"


def _assert_no_secret(text: str, *more: str) -> None:
    for secret in (SECRET, QUOTED, *more):
        assert secret not in text, text


def cli(*args: str, code: int, hidden: tuple[str, ...] = (), **env: str) -> str:
    """Run the console script; return stdout and stderr, asserting no secret is in them."""
    result = run_script(*args, **env)
    _assert_no_secret(result.stdout + result.stderr, *hidden)
    assert result.returncode == code, (args, result.stdout, result.stderr)
    return result.stdout + result.stderr


def cli_json(*args: str, code: int, hidden: tuple[str, ...] = (), **env: str) -> str:
    """Run with ``--json``; return the error message of the one JSON document."""
    result = run_script(*args, **env)
    _assert_no_secret(result.stdout + result.stderr, *hidden)
    assert result.returncode == code, (args, result.stdout, result.stderr)
    document = json.loads(result.stdout)
    assert document["ok"] is False
    message = document["error"]["message"]
    assert isinstance(message, str)
    return message


def test_the_url_works(url: str) -> None:
    """The URL the other tests misplace is the server's, password and all."""
    assert "ok" in cli("check", url, code=0)


def test_usage_errors_show_a_misplaced_url_masked(url: str, address: str) -> None:
    short = f"redis://:pw@{address}/0"  # too short to scrub by itself: the URL goes whole
    for misplaced, shown in (
        (url, f"redis://:***@{address}/0"),
        (short, f"redis://:***@{address}/0"),
    ):
        for args in (
            ["get", "rt", "k", misplaced],
            ["set", "rt", "k", "v", misplaced],
            ["drivers", misplaced],
            ["ttl", "rt", "k", "-u", url, misplaced],
            ["get", "rt", "k", f"--url={misplaced}", misplaced],
        ):
            text = cli(*args, code=2, hidden=(":pw@",))
            assert f"Got unexpected extra argument ({shown})" in text
            assert f"Try 'pevensie-cache {args[0]} --help' for help." in text
            for where in ("after", "before"):
                json_args = [*args, "--json"] if where == "after" else ["--json", *args]
                message = cli_json(*json_args, code=2, hidden=(":pw@",))
                assert message == f"Got unexpected extra argument ({shown})"


def test_a_url_given_as_the_resource_type_is_shown_masked(url: str, address: str) -> None:
    for args in (["keys", url], ["clear", url, "--yes"], ["get", url, "k", "-u", url]):
        text = cli(*args, code=2)
        assert f"resource_type must not contain ':' (got 'redis://:***@{address}/0')" in text
        assert "resource_type must not contain ':'" in cli_json(*args, "--json", code=2)


def test_malformed_urls_fail_naming_the_fault_not_the_password(address: str) -> None:
    for written, fault in (
        (f"redis:/:{QUOTED}@{address}/0", "the scheme 'redis' must be followed by '://'"),
        (f"redis//:{QUOTED}@{address}/0", "the scheme 'redis' must be followed by '://'"),
        (f"redis:{QUOTED}@{address}/0", "not a cache URL"),
        (f" redis://:{QUOTED}@{address}/0", "starts with whitespace; remove it"),
        (f"redis://:{QUOTED}@{address}/0 ", "the path of a Redis URL is the database number"),
    ):
        assert fault in cli("check", written, code=3)
        assert fault in cli_json("check", written, "--json", code=3)
        assert fault in cli("stats", "-u", written, code=3)


@pytest.mark.parametrize(
    ("query", "fault"),
    [
        (f"passwd={QUOTED}", "unknown Redis URL option 'passwd'"),
        (f"requirepass={QUOTED}", "unknown Redis URL option 'requirepass'"),
        (f"auth_token={QUOTED}", "unknown Redis URL option 'auth_token'"),
        (f"pass%77ord={QUOTED}", "password is not a Redis URL query option"),
    ],
)
def test_secret_query_values_are_masked_and_the_option_named(
    address: str, query: str, fault: str
) -> None:
    written = f"redis://{address}/0?{query}"
    name = query.partition("=")[0]
    text = cli("check", written, code=3)
    assert fault in text
    assert f"?{name}=***'" in text
    assert fault in cli_json("check", written, "--json", code=3)


def test_secrets_from_the_environment_and_config_files_are_known_before_any_output(
    secret_server: RedisServer, url: str, tmp_path: Path
) -> None:
    # The password typed as the resource type: refused before the cache is even opened.
    text = cli("keys", SECRET, code=2, PEVENSIE_CACHE_URL=url)
    assert "resource_type must not contain ':' (got '***')" in text

    with_url = tmp_path / "with-url.toml"
    with_url.write_text(f'[cache]\nurl = "{url}"\n', encoding="utf-8")
    by_fields = tmp_path / "by-fields.toml"
    by_fields.write_text(
        "[cache]\n"
        'driver = "redis"\n'
        f'host = "{secret_server.host}"\n'
        f"port = {secret_server.port}\n"
        f'password = "{SECRET}"\n',
        encoding="utf-8",
    )
    for config in (with_url, by_fields):
        assert "ok" in cli("check", "--config", str(config), code=0)
        for args in (
            ["keys", SECRET, "--config", str(config)],
            ["clear", SECRET, f"--config={config}"],
            ["get", SECRET, "k", f"-c{config}"],
            ["clear", SECRET, "-yc", str(config)],
        ):
            assert "resource_type must not contain ':' (got '***')" in cli(*args, code=2)
            assert "(got '***')" in cli_json(*args, "--json", code=2)


def test_on_a_terminal_too(url: str, address: str) -> None:
    # rich draws the error, wrapped at 40 columns: the secret is gone before it can wrap.
    long = "a-much-longer-password-than-forty-columns-" + SECRET
    code, screen = run_in_terminal(
        ["keys", long, "-u", f"redis://:{quote(long, safe='')}@{address}/0"], columns=40
    )
    assert code == 2, screen
    _assert_no_secret(screen.replace("\r\n", "").replace("\n", ""), long)
    assert "resource_type must not contain" in screen
    code, screen = run_in_terminal(["check", f"redis:/:{QUOTED}@{address}/0"], columns=40)
    assert code == 3, screen
    _assert_no_secret(screen)
    assert "must be followed by" in screen


def test_keys_and_values_that_are_no_urls_are_printed_as_they_are(
    pevensie_redis_server: RedisServer,
) -> None:
    # Every argument was once read as a URL: "alice@example.com" lost its "alice" and a
    # value read back from the store was scrubbed of its "q=python" part.
    url = f"redis://{pevensie_redis_server.host}:{pevensie_redis_server.port}/0"
    for key, value in (("alice@example.com", '{"name": "alice"}'), ("/search?q=python", "q=x")):
        cli("set", "profiles", key, value, "-u", url, code=0)
        assert value in cli("get", "profiles", key, "-u", url, code=0).splitlines()
