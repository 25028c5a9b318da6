"""Key layout and wire behaviour, checked through a raw client on the same server.

Keys are exactly ``<resource_type>:<key>`` (UTF-8), so a Gleam application and
a Python application can share one database; ``set`` is one atomic command.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pevensie_cache import PevensieCache, cache
from pevensie_redis.testing.servers import RedisServer


@pytest.fixture
def raw(pevensie_redis_server: RedisServer) -> Iterator[Any]:
    client = pevensie_redis_server.client()
    yield client
    client.close()


def calls(raw: Any) -> dict[str, int]:
    """Return the number of calls of each command since the last CONFIG RESETSTAT."""
    stats = raw.info("commandstats")
    return {
        name.removeprefix("cmdstat_").lower(): int(value["calls"])
        for name, value in stats.items()
        if name.startswith("cmdstat_")
    }


def test_a_value_written_raw_is_read_through_the_cache(
    pevensie_redis_cache: PevensieCache, raw: Any
) -> None:
    raw.set("user:42", "written by Gleam")
    assert pevensie_redis_cache.get("user", "42") == "written by Gleam"


def test_a_value_written_through_the_cache_is_read_raw(
    pevensie_redis_cache: PevensieCache, raw: Any
) -> None:
    pevensie_redis_cache.set("user", "42", "written by Python")
    assert raw.get("user:42") == "written by Python"
    assert raw.type("user:42") == "string"
    assert set(raw.scan_iter()) == {"user:42"}


def test_keys_with_colons_and_unicode_are_stored_verbatim_in_utf8(
    pevensie_redis_cache: PevensieCache, raw: Any
) -> None:
    pevensie_redis_cache.set("session", "a:b:c", "1")
    pevensie_redis_cache.set("ключ", "名前", "ünïcödé")
    assert raw.get("session:a:b:c") == "1"
    assert raw.get("ключ:名前") == "ünïcödé"
    assert set(raw.scan_iter()) == {"session:a:b:c", "ключ:名前"}


def test_the_ttl_a_raw_client_sees(pevensie_redis_cache: PevensieCache, raw: Any) -> None:
    pevensie_redis_cache.set("user", "ttl", "v", ttl_seconds=100)
    assert 99_000 < raw.pttl("user:ttl") <= 100_000
    pevensie_redis_cache.set("user", "ttl", "v", ttl_seconds=5)
    assert 4_000 < raw.pttl("user:ttl") <= 5_000
    pevensie_redis_cache.set("user", "ttl", "v")
    assert raw.ttl("user:ttl") == -1  # exists, no expiry


def test_a_raw_delete_is_a_miss_through_the_cache(
    pevensie_redis_cache: PevensieCache, raw: Any
) -> None:
    pevensie_redis_cache.set("user", "gone", "v")
    raw.delete("user:gone")
    assert pevensie_redis_cache.get("user", "gone", None) is None


def test_set_with_ttl_is_one_set_command_and_nothing_else(
    pevensie_redis_cache: PevensieCache, raw: Any
) -> None:
    raw.config_resetstat()
    pevensie_redis_cache.set("user", "1", "v", ttl_seconds=60)
    seen = calls(raw)
    assert seen.get("set") == 1
    for other in ("expire", "pexpire", "persist", "multi", "exec", "setex", "eval", "evalsha"):
        assert other not in seen


def test_set_without_ttl_is_one_set_command_and_no_persist(
    pevensie_redis_cache: PevensieCache, raw: Any
) -> None:
    pevensie_redis_cache.set("user", "1", "v", ttl_seconds=60)
    raw.config_resetstat()
    pevensie_redis_cache.set("user", "1", "v")
    seen = calls(raw)
    assert seen.get("set") == 1
    assert "persist" not in seen
    assert "expire" not in seen
    assert raw.ttl("user:1") == -1


def test_get_and_delete_are_one_command_each(pevensie_redis_cache: PevensieCache, raw: Any) -> None:
    pevensie_redis_cache.set("user", "1", "v")
    raw.config_resetstat()
    pevensie_redis_cache.get("user", "1")
    pevensie_redis_cache.delete("user", "1")
    seen = calls(raw)
    assert seen.get("get") == 1
    assert seen.get("unlink", 0) + seen.get("del", 0) == 1


def test_get_many_is_one_mget(pevensie_redis_cache: PevensieCache, raw: Any) -> None:
    pevensie_redis_cache.set_many("user", {str(i): f"v{i}" for i in range(100)})
    raw.config_resetstat()
    found = pevensie_redis_cache.get_many("user", [str(i) for i in range(150)])
    assert found == {str(i): f"v{i}" for i in range(100)}
    seen = calls(raw)
    assert seen.get("mget") == 1
    assert "get" not in seen


def test_set_many_without_ttl_is_one_mset(pevensie_redis_cache: PevensieCache, raw: Any) -> None:
    raw.config_resetstat()
    pevensie_redis_cache.set_many("user", {str(i): f"v{i}" for i in range(100)})
    seen = calls(raw)
    assert seen.get("mset") == 1
    assert "set" not in seen
    assert raw.get("user:7") == "v7"
    assert raw.ttl("user:7") == -1


def test_set_many_with_ttl_is_one_script_call_setting_ex_on_every_key(
    pevensie_redis_cache: PevensieCache, raw: Any
) -> None:
    pevensie_redis_cache.set_many("warm", {"up": "1"}, ttl_seconds=60)  # loads the script
    raw.config_resetstat()
    pevensie_redis_cache.set_many("user", {str(i): f"v{i}" for i in range(100)}, ttl_seconds=30)
    seen = calls(raw)
    assert seen.get("evalsha") == 1
    assert "expire" not in seen
    for i in (0, 50, 99):
        assert raw.get(f"user:{i}") == f"v{i}"
        assert 29_000 < raw.pttl(f"user:{i}") <= 30_000


def test_set_many_with_ttl_reloads_the_script_after_a_script_flush(
    pevensie_redis_cache: PevensieCache, raw: Any
) -> None:
    pevensie_redis_cache.set_many("user", {"a": "1"}, ttl_seconds=60)
    raw.script_flush()
    pevensie_redis_cache.set_many("user", {"b": "2"}, ttl_seconds=60)
    assert raw.get("user:b") == "2"
    assert raw.ttl("user:b") > 0


def test_set_many_without_ttl_clears_earlier_ttls(
    pevensie_redis_cache: PevensieCache, raw: Any
) -> None:
    pevensie_redis_cache.set_many("user", {"a": "1", "b": "2"}, ttl_seconds=60)
    pevensie_redis_cache.set_many("user", {"a": "1", "b": "2"})
    assert raw.ttl("user:a") == -1
    assert raw.ttl("user:b") == -1


def test_delete_many_is_one_unlink(pevensie_redis_cache: PevensieCache, raw: Any) -> None:
    pevensie_redis_cache.set_many("user", {str(i): "v" for i in range(10)})
    raw.config_resetstat()
    pevensie_redis_cache.delete_many("user", [str(i) for i in range(20)])
    seen = calls(raw)
    assert seen.get("unlink", 0) + seen.get("del", 0) == 1
    assert list(raw.scan_iter()) == []


def test_large_batches_are_split_into_chunks_and_all_arrive(
    pevensie_redis_cache: PevensieCache, raw: Any
) -> None:
    items = {str(i): f"v{i}" for i in range(2500)}
    pevensie_redis_cache.set_many("big", items, ttl_seconds=60)
    assert raw.dbsize() == 2500
    assert pevensie_redis_cache.get_many("big", list(items)) == items
    pevensie_redis_cache.set_many("big", items)
    assert raw.ttl("big:2499") == -1
    pevensie_redis_cache.delete_many("big", list(items))
    assert raw.dbsize() == 0


def test_set_many_with_ttl_falls_back_when_the_user_may_not_run_scripts(
    pevensie_redis_server: RedisServer, raw: Any
) -> None:
    raw.flushdb()
    raw.acl_setuser(
        "noscripts",
        enabled=True,
        passwords=["+noscripts-pw"],
        keys=["*"],
        commands=["+@all", "-@scripting"],
    )
    url = pevensie_redis_server.url.replace("redis://", "redis://noscripts:noscripts-pw@", 1)
    c = cache.from_url(url).connect()
    try:
        raw.config_resetstat()
        c.set_many("user", {"a": "1", "b": "2"}, ttl_seconds=60)
        c.set_many("user", {"c": "3"}, ttl_seconds=60)
        seen = calls(raw)
        assert seen.get("evalsha", 0) == 0  # refused, so never executed
        assert seen.get("set") == 3  # the fallback pipeline: one SET EX per key
        evalsha = raw.info("commandstats").get("cmdstat_evalsha", {})
        assert evalsha.get("rejected_calls", 1) <= 1  # the refusal is remembered
        assert raw.get("user:a") == "1"
        assert 59 <= raw.ttl("user:c") <= 60
    finally:
        c.disconnect()
        raw.acl_deluser("noscripts")
