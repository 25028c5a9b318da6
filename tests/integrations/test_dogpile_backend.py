"""The ``"pevensie"`` dogpile.cache backend: what dogpile's own suites do not pin down.

Its arguments, what lands on the server, one batch per multi-key call, the
lease lock across processes (a crashed holder's lease expiring, the wait
bound), and ``clear()`` as an invalidation every process sees.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dogpile.cache import make_region
from dogpile.cache.api import NO_VALUE
from dogpile.cache.region import CacheRegion

from pevensie_cache import ArgumentError, ConfigError
from pevensie_cache.contrib.dogpile import PevensieBackend
from pevensie_redis.testing.servers import RedisServer

RESOURCE = "dogpile-own"


def region(url: str, **arguments: Any) -> CacheRegion:
    return make_region().configure(
        "pevensie", arguments={"url": url, "resource_type": RESOURCE, **arguments}
    )


@pytest.fixture
def raw(pevensie_redis_server: RedisServer) -> Iterator[Any]:
    client = pevensie_redis_server.client()
    yield client
    client.close()


@pytest.fixture
def redis_region(pevensie_redis_url: str) -> Iterator[CacheRegion]:
    made = region(pevensie_redis_url)
    made.backend.clear()
    yield made
    made.backend.clear()


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    """Start a Python process running ``code`` (with ``args`` as ``sys.argv[1:]``)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- arguments ---------------------------------------------------------------------------


def test_the_arguments_mapping_is_left_unmodified(pevensie_redis_url: str) -> None:
    arguments = {
        "url": pevensie_redis_url,
        "resource_type": RESOURCE,
        "ttl_seconds": 60,
        "lock_lease": 5,
        "timeout": "2s",
    }
    copy = dict(arguments)
    made = make_region().configure("pevensie", arguments=arguments)
    made.set("k", "v")
    assert made.get("k") == "v"
    assert arguments == copy


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({}, ConfigError),
        ({"url": "memory://", "resource_typ": "x"}, ConfigError),
        ({"url": "memory://", "ttl_seconds": 0}, ArgumentError),
        ({"url": "memory://", "lock_lease": -1}, ArgumentError),
        ({"url": "memory://", "lock_lease": 10**16}, ArgumentError),  # beyond any TTL
        ({"url": "memory://", "lock_wait": "1"}, ArgumentError),
        ({"url": "memory://", "distributed_lock": "yes"}, ArgumentError),
        ({"url": "memory://", "resource_type": "a:b"}, ArgumentError),
    ],
)
def test_bad_arguments_are_errors(arguments: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        PevensieBackend(arguments)


# -- the server side ---------------------------------------------------------------------


def test_values_and_ttl_on_the_server(pevensie_redis_url: str, raw: Any) -> None:
    made = region(pevensie_redis_url, ttl_seconds=120)
    try:
        made.set("k", {"x": 1})
        stored = base64.b64decode(raw.get(f"{RESOURCE}:k"))
        assert stored == made.backend.get_serialized("k")
        assert b"|" in stored  # dogpile's metadata, then its pickle
        assert 115 <= raw.ttl(f"{RESOURCE}:k") <= 120
    finally:
        made.backend.clear()


def test_multi_key_calls_are_one_command_each(redis_region: CacheRegion, raw: Any) -> None:
    keys = [f"k{i}" for i in range(20)]
    raw.config_resetstat()
    redis_region.set_multi({key: key.upper() for key in keys})
    assert redis_region.get_multi(keys) == [key.upper() for key in keys]
    redis_region.delete_multi(keys)
    assert redis_region.get_multi(keys[:3]) == [NO_VALUE] * 3
    stats = raw.info("commandstats")
    assert stats["cmdstat_mget"]["calls"] == 2
    assert "cmdstat_get" not in stats
    assert stats["cmdstat_unlink"]["calls"] == 1


def test_clear_is_an_invalidation_every_process_sees(
    pevensie_redis_url: str, redis_region: CacheRegion, raw: Any
) -> None:
    redis_region.set("k", "v")
    raw.set("not-pevensie", "keep me")
    elsewhere = run_python(
        """
        import sys
        from dogpile.cache import make_region
        r = make_region().configure(
            "pevensie", arguments={"url": sys.argv[1], "resource_type": "dogpile-own"}
        )
        print(r.get("k"))
        r.backend.clear()
        """,
        pevensie_redis_url,
    )
    out, err = elsewhere.communicate(timeout=60)
    try:
        assert elsewhere.returncode == 0, err
        assert out.strip() == "v"
        assert redis_region.get("k") is NO_VALUE
        assert raw.get("not-pevensie") == "keep me"
    finally:
        raw.delete("not-pevensie")


# -- the lease lock ----------------------------------------------------------------------


def test_get_mutex_is_the_lease_lock_on_the_server(redis_region: CacheRegion, raw: Any) -> None:
    mutex = redis_region.backend.get_mutex("k")
    assert mutex is not None
    assert mutex.acquire(False) is True
    try:
        assert 29_000 < raw.pttl(f":lock:{RESOURCE}:k") <= 30_000  # the default lease
        assert mutex.locked() is True
        other = redis_region.backend.get_mutex("k")
        assert other.acquire(False) is False
    finally:
        mutex.release()
    assert raw.exists(f":lock:{RESOURCE}:k") == 0
    assert mutex.locked() is False


def test_no_distributed_lock_leaves_locking_to_dogpile(pevensie_url: str) -> None:
    made = region(pevensie_url, distributed_lock=False)
    assert made.backend.get_mutex("k") is None
    assert made.get_or_create("k", lambda: "v") == "v"
    made.backend.clear()


def test_a_lock_held_elsewhere_is_waited_for_at_most_lock_wait(pevensie_redis_url: str) -> None:
    made = region(pevensie_redis_url, lock_lease=10, lock_wait=0.3)
    holder = made.backend.get_mutex("k")
    assert holder.acquire()
    try:
        waiter = made.backend.get_mutex("k")
        start = time.monotonic()
        assert waiter.acquire() is False
        assert 0.25 <= time.monotonic() - start < 2
    finally:
        holder.release()


def test_a_crashed_holders_lease_expires(pevensie_redis_url: str) -> None:
    crashed = run_python(
        """
        import os, sys
        from dogpile.cache import make_region
        r = make_region().configure("pevensie", arguments={
            "url": sys.argv[1], "resource_type": "dogpile-own", "lock_lease": 0.5})
        assert r.backend.get_mutex("k").acquire(False)
        os._exit(0)  # never releases
        """,
        pevensie_redis_url,
    )
    assert crashed.wait(timeout=60) == 0
    made = region(pevensie_redis_url)
    mutex = made.backend.get_mutex("k")
    assert mutex.acquire(False) is False  # still leased
    start = time.monotonic()
    assert mutex.acquire() is True
    assert time.monotonic() - start < 2
    mutex.release()


def test_four_processes_create_a_value_once(pevensie_redis_url: str, raw: Any) -> None:
    raw.delete("dogpile-own-creations")
    code = """
        import sys, time
        import redis
        from dogpile.cache import make_region
        url = sys.argv[1]
        r = make_region().configure(
            "pevensie", arguments={"url": url, "resource_type": "dogpile-own"}
        )
        counter = redis.Redis.from_url(url)

        def create():
            counter.incr("dogpile-own-creations")
            time.sleep(0.5)
            return "made once"

        while time.time() < float(sys.argv[2]):  # start together
            time.sleep(0.005)
        print(r.get_or_create("shared", create))
        """
    start_at = str(time.time() + 2)
    workers = [run_python(code, pevensie_redis_url, start_at) for _ in range(4)]
    try:
        results = [worker.communicate(timeout=60) for worker in workers]
        assert [out.strip() for out, _ in results] == ["made once"] * 4, results
        assert raw.get("dogpile-own-creations") == "1"
    finally:
        raw.delete("dogpile-own-creations")
        region(pevensie_redis_url).backend.clear()
