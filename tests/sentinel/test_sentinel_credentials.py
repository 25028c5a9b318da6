"""Sentinels that require authentication: their own credentials, apart from the data nodes'."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from pevensie_cache import cache
from pevensie_redis import RedisAuthenticationError, RedisPermissionError
from pevensie_test_support import LocalSentinel
from pevensie_test_support.faces import FACES, new_face

# The outcome depends on the server: Sentinel's authentication is the server's.
pytestmark = [pytest.mark.asyncio, pytest.mark.server_dependent]


def url(topology: LocalSentinel, data_password: str | None, query: str) -> str:
    hosts = ",".join(f"{host}:{port}" for host, port in topology.sentinels)
    userinfo = f":{data_password}@" if data_password else ""
    return f"redis+sentinel://{userinfo}{hosts}/{topology.service_name}?{query}"


def chain(error: BaseException) -> str:
    parts = []
    current: BaseException | None = error
    while current is not None:
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


async def test_sentinels_with_a_password_are_reached_with_sentinel_password(
    guarded_sentinel: LocalSentinel, topology_password: str, sentinel_secret: str
) -> None:
    good = url(guarded_sentinel, topology_password, f"sentinel_password={sentinel_secret}")
    with cache.from_url(good) as c:
        c.set("user", "1", "through guarded sentinels")
        assert c.get("user", "1") == "through guarded sentinels"
    async with cache.from_url_async(good) as a:
        assert await a.get("user", "1") == "through guarded sentinels"


@pytest.mark.parametrize("query", ["", "sentinel_password=wrong-sentinel-guess"])
async def test_missing_or_wrong_sentinel_credentials_say_it_was_the_sentinels(
    guarded_sentinel: LocalSentinel, topology_password: str, query: str
) -> None:
    bad = url(guarded_sentinel, topology_password, query)
    sync_cache = cache.from_url(bad)
    with pytest.raises(RedisAuthenticationError) as sync_error:
        sync_cache.connect()
    async_cache = cache.from_url_async(bad)
    with pytest.raises(RedisAuthenticationError) as async_error:
        await async_cache.connect()
    for caught in (sync_error, async_error):
        message = chain(caught.value)
        assert "sentinel" in str(caught.value)
        assert "wrong-sentinel-guess" not in message
        assert topology_password not in message
    assert not sync_cache.connected
    assert not async_cache.connected


async def test_an_acl_user_on_the_sentinels_is_reached_with_sentinel_username(
    acl_sentinel: LocalSentinel, sentinel_user: tuple[str, str]
) -> None:
    name, secret = sentinel_user
    good = url(acl_sentinel, None, f"sentinel_username={name}&sentinel_password={quote(secret)}")
    with cache.from_url(good) as c:
        c.set("user", "acl", "ok")
        assert c.get("user", "acl") == "ok"
    async with cache.from_url_async(good) as a:
        assert await a.get("user", "acl") == "ok"
    wrong = url(acl_sentinel, None, f"sentinel_username={name}&sentinel_password=nope")
    with pytest.raises(RedisAuthenticationError, match="sentinel"):
        cache.from_url(wrong).connect()


@pytest.mark.parametrize("face_name", FACES)
async def test_a_sentinel_user_without_the_sentinel_commands_is_told_which_it_lacks(
    steady_sentinel: LocalSentinel, face_name: str
) -> None:
    """An ACL that refuses ``SENTINEL MASTER`` or ``SENTINEL REPLICAS`` is said as such.

    A refused ``SENTINEL MASTER`` read as "does not monitor" the service, and
    a refused ``SENTINEL REPLICAS`` sent every read to the primary, silently.
    """
    secret = "reader-secret-3141"
    for node in steady_sentinel.sentinel_nodes:
        with node.client() as raw:
            for user, refused in (("no-master", "master"), ("no-replicas", "replicas")):
                rules = ["on", f">{secret}", "allchannels", "+@all", f"-sentinel|{refused}"]
                raw.execute_command("ACL", "SETUSER", user, *rules)
    for user, query, command in (
        ("no-master", "", "SENTINEL MASTER"),
        ("no-replicas", "&read_from_replicas=true", "SENTINEL REPLICAS"),
    ):
        login = f"sentinel_username={user}&sentinel_password={secret}{query}"
        c = new_face(face_name, url(steady_sentinel, None, login))
        with pytest.raises(RedisPermissionError) as caught:
            await c.connect()
        message = chain(caught.value)
        assert command in str(caught.value)
        assert f"+{command.lower().replace(' ', '|')}" in str(caught.value)
        assert "does not monitor" not in message
        assert secret not in message
        assert not c.cache.connected
