"""Authentication as in the Gleam original, against a private server with ACL users.

password alone (``requirepass``, the default user), username and password (an
ACL user), username alone (an ACL user with ``nopass``: ``AUTH user ""``), and
failures that never show the secret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pevensie_cache import cache
from pevensie_redis import RedisAuthenticationError, RedisConfig, RedisDriverError
from pevensie_redis.testing.servers import RedisServer

# The outcome depends on the server: ACL users and AUTH replies are the server's.
pytestmark = pytest.mark.server_dependent

DEFAULT_PASSWORD = "default-Pa55:word@/"
ACL_PASSWORD = "acl-Pa55word"


@pytest.fixture
def auth_server(pevensie_redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    server = pevensie_redis_server_factory(["--requirepass", DEFAULT_PASSWORD])
    admin = server.client(password=DEFAULT_PASSWORD)
    admin.acl_setuser(
        "app", enabled=True, passwords=[f"+{ACL_PASSWORD}"], keys=["*"], commands=["+@all"]
    )
    admin.acl_setuser("guest", enabled=True, nopass=True, keys=["*"], commands=["+@all"])
    admin.close()
    return server


def _config(server: RedisServer, **fields: Any) -> RedisConfig:
    return RedisConfig(host=server.host, port=server.port, timeout=2000, **fields)


def _round_trip(config: RedisConfig) -> str:
    with cache.new(driver="redis", config=config) as c:
        c.set("auth", "k", "v")
        value: str = c.get("auth", "k")
        return value


def _whoami(server: RedisServer, config: RedisConfig) -> str:
    """Ask the server which user the cache's pooled connection is authenticated as."""
    c = cache.new(driver="redis", config=config).connect()
    try:
        pool = c.driver.connection_pool  # type: ignore[attr-defined]
        connection = pool.get_connection()
        try:
            connection.send_command("ACL", "WHOAMI")
            reply = connection.read_response()
        finally:
            pool.release(connection)
        return reply.decode() if isinstance(reply, bytes) else str(reply)
    finally:
        c.disconnect()


def test_password_alone_authenticates_the_default_user(auth_server: RedisServer) -> None:
    config = _config(auth_server, password=DEFAULT_PASSWORD)
    assert _round_trip(config) == "v"
    assert _whoami(auth_server, config) == "default"


def test_username_and_password_authenticate_an_acl_user(auth_server: RedisServer) -> None:
    config = _config(auth_server, username="app", password=ACL_PASSWORD)
    assert _round_trip(config) == "v"
    assert _whoami(auth_server, config) == "app"


def test_username_alone_authenticates_a_nopass_acl_user(auth_server: RedisServer) -> None:
    config = _config(auth_server, username="guest")
    assert _round_trip(config) == "v"
    assert _whoami(auth_server, config) == "guest"


def test_credentials_in_a_url_are_percent_decoded(auth_server: RedisServer) -> None:
    from urllib.parse import quote

    url = f"redis://:{quote(DEFAULT_PASSWORD, safe='')}@{auth_server.host}:{auth_server.port}/0"
    with cache.from_url(url) as c:
        c.set("auth", "url", "ok")
        assert c.get("auth", "url") == "ok"


@pytest.mark.parametrize(
    "fields",
    [
        {"password": "wrong-Secret-1"},
        {"username": "app", "password": "wrong-Secret-1"},
        {"username": "nobody", "password": "wrong-Secret-1"},
    ],
    ids=["wrong-password", "wrong-acl-password", "unknown-user"],
)
def test_bad_credentials_fail_at_connect_with_no_secret_shown(
    auth_server: RedisServer, fields: dict[str, str]
) -> None:
    c = cache.new(driver="redis", config=_config(auth_server, **fields))
    with pytest.raises(RedisAuthenticationError) as caught:
        c.connect()
    assert not c.connected
    error = caught.value
    assert isinstance(error, RedisDriverError)
    assert error.__cause__ is not None  # redis-py's exception, kept
    for text in (str(error), repr(error), str(error.__cause__), repr(error.__cause__)):
        assert "wrong-Secret-1" not in text
    assert "authentication failed" in str(error)


def test_no_credentials_on_a_server_that_wants_them(auth_server: RedisServer) -> None:
    c = cache.new(driver="redis", config=_config(auth_server))
    with pytest.raises(RedisAuthenticationError) as caught:
        c.connect()
    assert "Authentication required" in str(caught.value)
    assert DEFAULT_PASSWORD not in str(caught.value)


def test_the_config_repr_in_a_failure_never_shows_the_password(auth_server: RedisServer) -> None:
    config = _config(auth_server, username="app", password="wrong-Secret-1")
    c = cache.new(driver="redis", config=config)
    with pytest.raises(RedisAuthenticationError) as caught:
        c.connect()
    assert "app:***@" in str(caught.value)
    assert "wrong-Secret-1" not in repr(c)
    assert "wrong-Secret-1" not in repr(c.driver)
