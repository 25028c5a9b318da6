"""No password anywhere; TLS verifies by default; values are never unpickled.

A sentinel password is used for a whole session (in a subprocess, every log
at DEBUG, every repr and error printed) and for the command-line tools; then
everything they produced is searched for it, raw and URL-encoded.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import redis
from reliability_support import ServerFactory, chain_text

from pevensie_cache import PevensieCache, PevensieCacheError, cache
from pevensie_redis import (
    RedisAuthenticationError,
    RedisConfig,
    RedisConnectionError,
    RedisDriver,
    default_config,
)
from pevensie_redis.testing import RedisServer

CORE = "sentinel-Pw-7731"
PASSWORD = CORE + "/@:?#%+&="  # every character a URL must encode
HERE = Path(__file__).parent


def secret_forms(password: str = PASSWORD) -> list[str]:
    """Every spelling of the password that would count as a leak."""
    return sorted({CORE, password, quote(password, safe=""), quote_plus(password)})


def assert_no_secret(text: str, what: str) -> None:
    for form in secret_forms():
        assert form not in text, f"{what} shows the password ({form!r}):\n{text}"


def url_for(server: RedisServer, password: str = PASSWORD) -> str:
    return f"redis://:{quote(password, safe='')}@{server.host}:{server.port}/0?client_name=sess"


@pytest.fixture
def secret_server(pevensie_redis_server_factory: ServerFactory) -> RedisServer:
    """A private server whose default user needs PASSWORD."""
    server = pevensie_redis_server_factory()
    with server.client() as raw:
        raw.config_set("requirepass", PASSWORD)
    return server


# -- repr and str ---------------------------------------------------------------------


def test_config_driver_and_cache_never_show_the_password() -> None:
    configs = [
        replace(default_config(), password=PASSWORD),
        replace(default_config(), username="app", password=PASSWORD),
        RedisConfig.from_url(f"redis://app:{quote(PASSWORD, safe='')}@db.invalid:6380/2"),
        RedisConfig.from_url(f"rediss://:{quote(PASSWORD, safe='')}@db.invalid/0?timeout=100"),
        RedisConfig.from_url(f"unix://:{quote(PASSWORD, safe='')}@/tmp/redis.sock?db=3"),
    ]
    for config in configs:
        assert config.password == PASSWORD  # the password really is in there
        driver = RedisDriver(config)
        c = cache.new(driver=driver)
        for what, text in (
            ("config repr", repr(config)),
            ("config str", str(config)),
            ("display_url", config.display_url()),
            ("driver repr", repr(driver)),
            ("driver str", str(driver)),
            ("cache repr", repr(c)),
            ("cache str", str(c)),
            ("cache from_url repr", repr(cache.from_url(config.display_url()))),
        ):
            assert_no_secret(text, what)
        assert "***" in config.display_url()
        assert "***" in repr(config)


@pytest.mark.parametrize(
    "build",
    [
        lambda: RedisConfig.from_url(f"redis://:{quote(PASSWORD, safe='')}@h:notaport/0"),
        lambda: RedisConfig.from_url(f"redis://:{quote(PASSWORD, safe='')}@h/0?bogus=1"),
        lambda: RedisConfig.from_url(f"redis://:{quote(PASSWORD, safe='')}@h/zero"),
        lambda: RedisConfig.from_url(f"redis://:{quote(PASSWORD, safe='')}@h/0#frag"),
        lambda: RedisConfig.from_url(f"http://:{quote(PASSWORD, safe='')}@h/0"),
        lambda: RedisConfig(password=PASSWORD + "\x00"),
        lambda: RedisConfig(password=PASSWORD, port=0),
        lambda: cache.from_url(f"redis://:{quote(PASSWORD, safe='')}@h/0?pool_size=x"),
        lambda: cache.from_url(f"nosuch://:{quote(PASSWORD, safe='')}@h/0"),
        lambda: cache.new(driver="redis", password=PASSWORD, bogus=1),
        lambda: cache.from_config({"driver": "memory", "url": f"redis://:{PASSWORD}@h/0"}),
        # Passwords typed without percent-encoding: URL parsing splits them in odd places.
        lambda: RedisConfig.from_url(f"redis://:{PASSWORD}@h/0"),
        lambda: RedisConfig.from_url(f"redis://:{CORE}/x{CORE}@h/0"),
        lambda: RedisConfig.from_url(f"redis://:a:{CORE}/x@h/0"),
        lambda: RedisConfig.from_url(f"redis+sentinel://:a:{CORE}/x@h/0"),
        lambda: cache.from_url(f"redis://u:{CORE}@{CORE}@h:x/0"),
    ],
    ids=[
        "bad-port",
        "unknown-option",
        "bad-db",
        "fragment",
        "wrong-scheme",
        "nul-in-password",
        "bad-field",
        "bad-option-value",
        "unknown-scheme",
        "unknown-field",
        "driver-url-mismatch",
        "unencoded-password",
        "unencoded-password-in-path",
        "unencoded-password-as-port",
        "unencoded-password-sentinel",
        "unencoded-at-sign",
    ],
)
def test_configuration_errors_never_show_the_password(build: Any) -> None:
    with pytest.raises(PevensieCacheError) as caught:
        build()
    assert_no_secret(chain_text(caught.value), "configuration error")


def test_connection_and_authentication_errors_never_show_the_password(
    secret_server: RedisServer, pevensie_redis_server_factory: ServerFactory
) -> None:
    wrong = url_for(secret_server, password=PASSWORD + "x")
    with pytest.raises(RedisAuthenticationError) as auth:
        cache.from_url(wrong, timeout=1000).connect()
    assert_no_secret(chain_text(auth.value), "authentication error")

    dead = pevensie_redis_server_factory()
    dead_url = url_for(dead)
    dead.kill()
    with pytest.raises(RedisConnectionError) as refused:
        cache.from_url(dead_url, timeout=500).connect()
    assert_no_secret(chain_text(refused.value), "connection error")


# -- a whole session, and the command-line tools ---------------------------------------


def run_session(server: RedisServer) -> tuple[str, str]:
    """Run secret_session.py against ``server``; kill the server when it asks; return its output."""
    env = {
        **os.environ,
        "PEVENSIE_CACHE_URL": url_for(server),
        "SECRET_SESSION_WRONG_URL": url_for(server, password=PASSWORD[::-1]),
        "PYTHONWARNINGS": "always",
    }
    process = subprocess.Popen(
        [sys.executable, str(HERE / "secret_session.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdin is not None
        lines: list[str] = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("KILL-NOW"):
                server.kill()
                process.stdin.write("go\n")
                process.stdin.flush()
                break
        rest, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stdout = "".join(lines) + rest
    assert process.returncode == 0, stdout + stderr
    return stdout, stderr


def test_a_whole_session_with_a_password_never_prints_or_logs_it(
    secret_server: RedisServer,
) -> None:
    stdout, stderr = run_session(secret_server)
    # The session really ran, logged and failed where it should.
    assert "get: 'Ada'" in stdout
    assert "get_many: {'1': 'a', '2': 'b'}" in stdout
    assert "wrong password url: RedisAuthenticationError" in stdout
    assert "wrong password config: RedisAuthenticationError" in stdout
    assert "get after kill: RedisConnectionError" in stdout
    assert "connect after kill: RedisConnectionError" in stdout
    assert "Traceback" in stderr
    assert "DEBUG" in stderr or "redis" in stderr
    assert "***" in stdout
    assert "session done" in stdout
    assert_no_secret(stdout, "session stdout")
    assert_no_secret(stderr, "session stderr (logs, tracebacks, warnings)")


def run_cli(args: list[str], env_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PEVENSIE_CACHE_URL", None)
    if env_url is not None:
        env["PEVENSIE_CACHE_URL"] = env_url
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_the_check_command_masks_the_password_when_it_works_and_when_it_fails(
    secret_server: RedisServer,
) -> None:
    ok = run_cli(["-m", "pevensie_cache", "check", url_for(secret_server)])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ":***@" in ok.stdout
    wrong = run_cli(["-m", "pevensie_cache", "check", url_for(secret_server, PASSWORD + "x")])
    assert wrong.returncode != 0
    assert "RedisAuthenticationError" in wrong.stderr
    secret_server.kill()
    dead = run_cli(["-m", "pevensie_cache", "check", url_for(secret_server)])
    assert dead.returncode != 0
    for result in (ok, wrong, dead):
        assert_no_secret(result.stdout + result.stderr, "pevensie_cache check output")


def test_the_demo_masks_the_password_of_the_configured_server(
    secret_server: RedisServer,
) -> None:
    import importlib.util

    if importlib.util.find_spec("pevensie_redis.__main__") is None:
        pytest.skip("python -m pevensie_redis is not there yet")
    result = run_cli(["-m", "pevensie_redis", "demo"], env_url=url_for(secret_server))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f":***@{secret_server.host}:{secret_server.port}" in result.stdout  # shown, masked
    assert_no_secret(result.stdout + result.stderr, "demo output")
    wrong = run_cli(
        ["-m", "pevensie_redis", "demo"], env_url=url_for(secret_server, PASSWORD + "x")
    )
    assert wrong.returncode != 0
    assert_no_secret(wrong.stdout + wrong.stderr, "demo output with a wrong password")


# -- TLS ------------------------------------------------------------------------------


@pytest.fixture
def localhost_only_tls_server(tmp_path: Path) -> Iterator[Any]:
    """A TLS server whose certificate names only ``localhost`` (not 127.0.0.1)."""
    pytest.importorskip("trustme")
    from pevensie_redis.testing.tls import TLSServer, find_tls_binaries, make_tls_material

    class LocalhostOnlyTLSServer(TLSServer):
        def client_options(self) -> dict[str, Any]:
            # The readiness check connects to 127.0.0.1, which this certificate does not name.
            return {**super().client_options(), "ssl_check_hostname": False}

    binaries = find_tls_binaries()
    if not binaries:
        pytest.skip("no TLS-capable server binary")
    material = make_tls_material(tmp_path, server_names=("localhost",))
    last_error: Exception | None = None
    for binary in binaries:
        server = LocalhostOnlyTLSServer(binary, material)
        try:
            server.start()
        except Exception as exc:  # a binary without TLS: try the next
            last_error = exc
            server.stop()
            continue
        try:
            yield server
        finally:
            server.stop()
        return
    pytest.skip(f"no binary could start a TLS server: {last_error}")


@pytest.mark.server_dependent
def test_tls_verifies_the_host_name_by_default_and_turning_it_off_is_explicit(
    localhost_only_tls_server: Any,
) -> None:
    server = localhost_only_tls_server
    base = RedisConfig(
        host="127.0.0.1", port=server.port, tls=True, tls_ca_file=str(server.ca_file), timeout=2000
    )
    assert base.tls_verify is True  # verification is the default
    assert RedisConfig.from_url(f"rediss://127.0.0.1:{server.port}/0").tls_verify is True

    # A certificate from a trusted CA, but for another host name: refused.
    with pytest.raises(RedisConnectionError) as mismatch:
        cache.new(driver=RedisDriver(base)).connect()
    assert "certificate" in str(mismatch.value).lower()

    # A certificate from an unknown CA: refused.
    with pytest.raises(RedisConnectionError) as untrusted:
        cache.new(
            driver=RedisDriver(replace(base, tls_ca_file=str(server.untrusted_ca_file)))
        ).connect()
    assert "certificate" in str(untrusted.value).lower()

    # The right host name with the trusted CA: accepted.
    for works in (
        replace(base, host="localhost"),
        replace(base, tls_verify=False),  # explicitly turned off: accepted
        RedisConfig.from_url(f"rediss://127.0.0.1:{server.port}/0?tls_verify=false&timeout=2000"),
        RedisConfig.from_url(f"rediss://127.0.0.1:{server.port}/0?ssl_cert_reqs=none"),
    ):
        c = cache.new(driver=RedisDriver(works)).connect()
        try:
            c.set("tls", "k", "v")
            assert c.get("tls", "k") == "v"
        finally:
            c.disconnect()


# -- values are strings, never unpickled ----------------------------------------------


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (open, (str(self.marker), "w"))


@pytest.fixture(params=["memory", "redis"])
def any_cache(request: pytest.FixtureRequest) -> Iterator[PevensieCache]:
    if request.param == "memory":
        c = cache.new(driver="memory").connect()
        yield c
        c.disconnect()
    else:
        yield request.getfixturevalue("pevensie_redis_cache")


def test_a_pickle_payload_is_stored_and_read_back_as_text_and_never_run(
    any_cache: PevensieCache, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker), protocol=0).decode("latin-1")
    assert not marker.exists()
    any_cache.set("blob", "pickle", payload)
    any_cache.set_many("blob", {"pickle2": payload})
    assert any_cache.get("blob", "pickle") == payload
    assert any_cache.get_many("blob", ["pickle2"]) == {"pickle2": payload}
    time.sleep(0.05)
    assert not marker.exists()  # reading the cache ran no code
    # Binary pickles are not even accepted: values are str.
    with pytest.raises(TypeError):
        any_cache.set("blob", "binary", pickle.dumps(_Exploit(marker)))  # type: ignore[arg-type]


def test_no_driver_module_unpickles_or_evaluates_stored_data() -> None:
    import pevensie_cache
    import pevensie_redis

    # pevensie_cache.contrib holds the opt-in framework backends: Django's and
    # Flask-Caching's contract is to cache any object, which they pickle (as their
    # own Redis backends do, and as contrib/values.py says). Nothing else imports it.
    sources = [
        path
        for package in (pevensie_cache, pevensie_redis)
        for path in Path(package.__file__).parent.rglob("*.py")  # type: ignore[arg-type]
        if "testing" not in path.parts and "contrib" not in path.parts
    ]
    assert sources
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for forbidden in ("import pickle", "pickle.loads", "marshal.loads", "eval(", "exec("):
            assert forbidden not in text, f"{path} uses {forbidden}"


def test_the_raw_value_on_the_server_is_the_utf8_text(
    pevensie_redis_cache: PevensieCache, pevensie_redis_server: RedisServer
) -> None:
    payload = pickle.dumps({"a": 1}, protocol=0).decode("latin-1") + " ✓"
    pevensie_redis_cache.set("blob", "text", payload)
    raw: redis.Redis = pevensie_redis_server.client(decode_responses=False)
    try:
        assert raw.get("blob:text") == payload.encode("utf-8")
    finally:
        raw.close()
