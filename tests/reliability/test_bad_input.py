"""Bad input against a real server: stored byte-exact, or rejected with nothing sent.

The conformance suite (``pevensie_cache.testing``) runs the driver-neutral
rules for both drivers; these tests add what only a server can show: the
exact bytes stored, the server's own limits, and that a rejected call sends
no command at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import ServerFactory, connect_cache, named_clients, unique_client_name

from pevensie_cache import ArgumentError, ArgumentTypeError, PevensieCache
from pevensie_cache.testing import BAD_ADDRESSES, BAD_TTLS, BAD_VALUES
from pevensie_redis import RedisConnectionError, RedisServerError
from pevensie_redis.testing import RedisServer
from pevensie_test_support.faces import both_faces

WRITE_AND_READ_COMMANDS = ("get", "set", "mget", "mset", "unlink", "del", "evalsha", "eval")

_piece = st.sampled_from(
    ["\x00", "\r\n", "\n", "*2\r\n$3\r\nDEL\r\n$1\r\nx\r\n", "$-1\r\n", "-ERR\r\n", "🐍", ":"]
)
_text = st.lists(_piece | st.characters(exclude_categories=["Cs"]), max_size=30).map("".join)


@pytest.fixture
def raw(pevensie_redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A raw client (bytes replies) on the shared server, database flushed."""
    pevensie_redis_server.ensure_running()
    client = pevensie_redis_server.client(decode_responses=False)
    client.flushdb()
    yield client
    client.close()


def command_calls(raw: redis.Redis) -> dict[str, int]:
    """Return how often the server ran each read or write command the driver can send."""
    stats = raw.info("commandstats")
    return {
        name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
        for name in WRITE_AND_READ_COMMANDS
    }


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    resource_type=_text.filter(lambda text: text and ":" not in text),
    key=_text.filter(bool) | st.text(min_size=1000, max_size=3000),
    value=_text | st.text(max_size=3000),
)
def test_any_text_is_stored_byte_exact_under_resource_type_colon_key_and_nothing_else(
    pevensie_redis_cache: PevensieCache,
    raw: redis.Redis,
    resource_type: str,
    key: str,
    value: str,
) -> None:
    raw.flushdb()
    pevensie_redis_cache.set(resource_type, key, value, ttl_seconds=600)
    full = f"{resource_type}:{key}".encode()
    assert raw.keys(b"*") == [full]  # text that looks like RESP injected no command
    assert raw.get(full) == value.encode()
    assert 0 < raw.ttl(full) <= 600
    pevensie_redis_cache.set_many(resource_type, {key: value})
    assert raw.get(full) == value.encode()
    assert raw.ttl(full) == -1  # set_many without a TTL cleared it, as set does
    assert pevensie_redis_cache.get(resource_type, key) == value
    pevensie_redis_cache.delete(resource_type, key)
    assert raw.dbsize() == 0


Call = tuple[str, tuple[Any, ...], dict[str, Any]]  # method name, arguments, keywords


def rejected_calls() -> list[tuple[str, Call, type[ArgumentError]]]:
    """Every call, single and batch, that one bad argument must make fail: (label, call, error)."""
    calls: list[tuple[str, Call, type[ArgumentError]]] = []
    for rt, key, error in BAD_ADDRESSES:
        for method, args in (
            ("set", (rt, key, "v")),
            ("get", (rt, key)),
            ("delete", (rt, key)),
            ("set_many", (rt, {"ok": "v", key: "v"})),
            ("get_many", (rt, ["ok", key])),
            ("delete_many", (rt, ["guard", key])),
        ):
            calls.append((f"{method}({rt!r}, {key!r})", (method, args, {}), error))
    for value, error in BAD_VALUES:
        calls.append((f"set(value={value!r})", ("set", ("rt", "k", value), {}), error))
        batch = ("rt", {"ok": "v", "k": value})
        calls.append(
            (f"set_many(value={value!r})", ("set_many", batch, {"ttl_seconds": 60}), error)
        )
    for ttl, error in BAD_TTLS:
        keywords = {"ttl_seconds": ttl}
        calls.append((f"set(ttl={ttl!r})", ("set", ("rt", "k", "v"), keywords), error))
        calls.append((f"set_many(ttl={ttl!r})", ("set_many", ("rt", {"k": "v"}), keywords), error))
    return calls


REJECTED_CALLS = rejected_calls()


@pytest.mark.parametrize(
    ("call", "error"),
    [(call, error) for _, call, error in REJECTED_CALLS],
    ids=[label for label, _, _ in REJECTED_CALLS],
)
def test_rejected_input_raises_a_clear_error_and_sends_nothing_to_the_server(
    pevensie_redis_cache: PevensieCache,
    raw: redis.Redis,
    call: Call,
    error: type[ArgumentError],
) -> None:
    method, args, keywords = call
    pevensie_redis_cache.set("guard", "g", "kept")
    keys_before = raw.dbsize()
    calls_before = command_calls(raw)
    with pytest.raises(error) as caught:
        getattr(pevensie_redis_cache, method)(*args, **keywords)
    assert str(caught.value)  # a message that says what is wrong
    assert raw.dbsize() == keys_before
    assert command_calls(raw) == calls_before  # not one command reached the server
    assert pevensie_redis_cache.get("guard", "g") == "kept"


@pytest.mark.filterwarnings("ignore:connect\\(\\) on a sync cache inside a running event loop")
@pytest.mark.parametrize("store", ["redis", "memory"])
async def test_clear_without_a_resource_type_says_what_to_pass_and_deletes_nothing(
    pevensie_redis_server: RedisServer, raw: redis.Redis, store: str
) -> None:
    url = pevensie_redis_server.url if store == "redis" else "memory://"
    async with both_faces(url) as faces:
        for face in faces:
            await face.set("users", "1", "Ada")
            await face.set("sessions", "s1", "x")
            keys_before = raw.dbsize()
            calls_before = command_calls(raw)
            for keywords in ({}, {"on_progress": print}):
                with pytest.raises(ArgumentTypeError) as caught:
                    await face.clear(**keywords)
                message = str(caught.value)
                assert "clear('users')" in message  # what to pass
                assert "no clear-everything" in message  # and why there is none
                assert "shared with other applications" in message
                assert isinstance(caught.value, TypeError)  # as Python's own missing argument
            assert raw.dbsize() == keys_before
            assert command_calls(raw) == calls_before  # not one command reached the server
            assert await face.get("users", "1") == "Ada"
            assert await face.get("sessions", "s1") == "x"
            assert await face.clear("sessions") == 1  # the one resource type, as before
            assert await face.get("users", "1") == "Ada"


def test_a_value_above_the_servers_limit_gets_a_server_error_and_the_cache_stays_usable(
    pevensie_redis_server_factory: ServerFactory,
) -> None:
    server = pevensie_redis_server_factory(["--proto-max-bulk-len", "1mb"])
    name = unique_client_name("limit")
    c = connect_cache(server, pool_size=2, client_name=name, timeout=2000)
    too_big = "x" * (2 * 1024 * 1024)
    try:
        with server.client() as check:
            writes: list[Callable[[], None]] = [
                lambda: c.set("big", "v", too_big),
                lambda: c.set("big", "v", too_big, ttl_seconds=60),
                lambda: c.set_many("big", {"v": too_big, "w": "small"}),
                lambda: c.set_many("big", {"v": too_big, "w": "small"}, ttl_seconds=60),
            ]
            for write in writes:
                with pytest.raises((RedisServerError, RedisConnectionError)) as caught:
                    write()
                if isinstance(caught.value, RedisServerError):
                    assert "bulk length" in caught.value.server_message
                else:
                    # The server replies, then closes; a reset can overtake the reply.
                    text = str(caught.value).lower()
                    assert any(word in text for word in ("reset", "closed", "pipe")), text
                assert check.dbsize() == 0  # nothing written, not even the small one
                c.set("small", "v", "fits")  # the next call on the same cache works
                assert c.get("small", "v") == "fits"
                c.delete("small", "v")
            assert len(named_clients(check, name)) <= 2
    finally:
        c.disconnect()
