"""The near cache stays coherent with the server: each rule against a real server, both faces.

A second, independent client (raw redis-py) changes keys behind the cache's
back. Every test first shows the value is served locally (a hit), so the
assertion after the change can only pass because the change reached this
process: as an invalidation from the server, through this process's own
write, or through the entry's own deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
import redis
from near_support import (
    FACES,
    Face,
    hold,
    near_url,
    open_face,
    settle,
    settled_hit,
    wait_for_invalidations,
    wait_until,
)

from pevensie_redis.testing import RedisServer

# The outcome depends on the server: key tracking and its invalidations are the server's.
pytestmark = pytest.mark.server_dependent


@pytest.fixture
def raw(pevensie_redis_server: RedisServer) -> Iterator[redis.Redis]:
    pevensie_redis_server.ensure_running()
    client = pevensie_redis_server.client()
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(params=FACES)
def face(request: pytest.FixtureRequest, pevensie_redis_server: RedisServer) -> Iterator[Face]:
    pevensie_redis_server.ensure_running()
    opened = open_face(request.param, near_url(pevensie_redis_server.url))
    yield opened
    opened.close()


# -- other clients' changes arrive as invalidations ---------------------------------------

FOREIGN_CHANGES: dict[str, tuple[Callable[[redis.Redis], Any], str | None]] = {
    "SET": (lambda r: r.set("u:1", "new"), "new"),
    "SET with a TTL": (lambda r: r.set("u:1", "new", ex=100), "new"),
    "MSET": (lambda r: r.mset({"u:1": "new", "other": "x"}), "new"),
    "APPEND": (lambda r: r.append("u:1", "+"), "old+"),
    "DEL": (lambda r: r.delete("u:1"), None),
    "UNLINK": (lambda r: r.unlink("u:1"), None),
    "EXPIRE 0": (lambda r: r.expire("u:1", 0), None),
    "RENAME away": (lambda r: r.rename("u:1", "elsewhere"), None),
}


@pytest.mark.parametrize("change", list(FOREIGN_CHANGES))
def test_a_foreign_change_arrives_as_an_invalidation_and_the_next_read_sees_it(
    face: Face, raw: redis.Redis, change: str
) -> None:
    apply, expected = FOREIGN_CHANGES[change]
    raw.set("u:1", "old")
    assert hold(face, raw, "u", "1") == "old"
    before = face.stats().invalidations
    apply(raw)
    wait_for_invalidations(face, before)
    assert face.get("u", "1", None) == expected
    settle(face, raw)  # and after every invalidation has arrived
    assert face.get("u", "1", None) == expected


def test_a_foreign_expire_drops_the_entry_and_the_next_read_takes_the_new_ttl(
    face: Face, raw: redis.Redis
) -> None:
    raw.set("u:1", "v")
    assert hold(face, raw, "u", "1") == "v"
    before = face.stats().invalidations
    raw.pexpire("u:1", 800)
    wait_for_invalidations(face, before)
    misses = face.stats().misses
    assert face.get("u", "1", None) == "v"
    assert face.stats().misses == misses + 1  # read from the server, with its new TTL
    time.sleep(0.85)
    assert face.get("u", "1", None) is None


@pytest.mark.parametrize("flush", ["FLUSHDB", "FLUSHALL"])
def test_a_foreign_flush_empties_the_near_cache(face: Face, raw: redis.Redis, flush: str) -> None:
    raw.mset({"u:1": "one", "u:2": "two"})
    assert face.get_many("u", ["1", "2", "3"]) == {"1": "one", "2": "two"}
    assert hold(face, raw, "u", "1") == "one"
    flushes = face.stats().flushes
    raw.execute_command(flush)
    wait_until(lambda: face.stats().flushes > flushes, f"the {flush} invalidation")
    assert face.stats().entries == 0
    assert face.get_many("u", ["1", "2", "3"]) == {}


def test_a_key_expiring_on_the_server_arrives_as_an_invalidation(
    face: Face, raw: redis.Redis
) -> None:
    raw.set("u:1", "short-lived", px=2000)
    raw.set("u:2", "stays")
    assert hold(face, raw, "u", "1") == "short-lived"
    assert settled_hit(face, "u", "2") == "stays"
    before = face.stats().invalidations
    # The server's active expiry deletes the key (it runs 10 times a second) and says so.
    wait_for_invalidations(face, before)
    assert face.get("u", "1", None) is None
    assert settled_hit(face, "u", "2") == "stays"


@pytest.mark.parametrize("kind", FACES)
def test_an_evicted_key_arrives_as_an_invalidation(
    kind: str, pevensie_redis_server_factory: Callable[..., RedisServer]
) -> None:
    server = pevensie_redis_server_factory(
        ["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-lru"]
    )
    with server.client() as raw:
        raw.mset({f"u:{n}": f"value-{n}" for n in range(50)})
        face = open_face(kind, near_url(server.url))
        try:
            names = [str(n) for n in range(50)]
            assert hold(face, raw, "u", "0") == "value-0"
            assert face.get_many("u", names) == {name: f"value-{name}" for name in names}
            held = face.stats().entries
            filler = "x" * 10_000
            for n in range(2000):  # about 20 MB through a 4 MB server: the old keys go
                raw.set(f"filler:{n}", filler)
            evicted = [name for name in names if not raw.exists(f"u:{name}")]
            assert evicted, "nothing was evicted"
            assert held >= 50  # they were held locally when evicted
            settle(face, raw)
            for name in evicted:
                assert face.get("u", name, None) is None
        finally:
            face.close()


# -- read-your-writes ---------------------------------------------------------------------

OWN_WRITES: dict[str, tuple[Callable[[Face, int], Any], Callable[[int], str | None]]] = {
    "set": (lambda f, n: f.set("u", "1", f"v{n}"), lambda n: f"v{n}"),
    "set with a TTL": (lambda f, n: f.set("u", "1", f"v{n}", ttl_seconds=60), lambda n: f"v{n}"),
    "set_many": (lambda f, n: f.set_many("u", {"1": f"v{n}", "2": "x"}), lambda n: f"v{n}"),
    "set_many with a TTL": (
        lambda f, n: f.set_many("u", {"1": f"v{n}", "2": "x"}, ttl_seconds=60),
        lambda n: f"v{n}",
    ),
    "delete": (lambda f, n: f.delete("u", "1"), lambda n: None),
    "delete_many": (lambda f, n: f.delete_many("u", ["1", "2"]), lambda n: None),
    "clear": (lambda f, n: f.clear("u"), lambda n: None),
}


@pytest.mark.parametrize("write", list(OWN_WRITES))
def test_own_writes_are_read_back_at_once(face: Face, raw: redis.Redis, write: str) -> None:
    apply, expected = OWN_WRITES[write]
    for n in range(30):  # the server's invalidation of our own write races the next read
        raw.set("u:1", "before")
        settle(face, raw)
        assert face.get("u", "1", None) == "before"
        if n % 2:
            assert settled_hit(face, "u", "1") == "before"
        apply(face, n)
        assert face.get("u", "1", None) == expected(n), f"round {n}"
        assert face.get_many("u", ["1"]) == ({} if expected(n) is None else {"1": expected(n)})


def test_add_is_read_back_at_once(face: Face, raw: redis.Redis) -> None:
    for n in range(30):
        face.delete("u", "1")
        assert face.get("u", "1", None) is None
        assert settled_hit(face, "u", "1") is None  # the miss is remembered
        assert face.add("u", "1", f"v{n}")
        assert face.get("u", "1", None) == f"v{n}", f"round {n}"
        assert not face.add("u", "1", "not stored")
        assert face.get("u", "1", None) == f"v{n}", f"round {n}"


def test_incr_is_read_back_at_once(face: Face, raw: redis.Redis) -> None:
    face.set("c", "hits", "0")
    for n in range(1, 31):
        assert face.get("c", "hits", None) == str(n - 1)
        assert face.incr("c", "hits") == n
        assert face.get("c", "hits", None) == str(n)


def test_touch_is_read_back_at_once(face: Face, raw: redis.Redis) -> None:
    raw.set("s:1", "v")
    assert hold(face, raw, "s", "1") == "v"
    assert face.touch("s", "1", ttl_seconds=1)
    assert face.get("s", "1", None) == "v"  # read again, with its new TTL
    time.sleep(1.05)
    assert face.get("s", "1", None) is None


# -- a local entry never outlives the key's server TTL -------------------------------------


@pytest.mark.parametrize("kind", FACES)
def test_an_entry_is_dropped_at_its_keys_expiry_even_without_an_invalidation(
    kind: str, pevensie_redis_server_factory: Callable[..., RedisServer]
) -> None:
    # Active expiry off: the server deletes the key (and says so) only when it is next read.
    server = pevensie_redis_server_factory(["--enable-debug-command", "yes"])
    with server.client() as raw:
        raw.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        face = open_face(kind, near_url(server.url))
        try:
            raw.set("s:1", "v", px=2000)
            expires_by = time.monotonic() + 2.0  # the SET is done: the key expires before this
            assert hold(face, raw, "s", "1") == "v"  # held, its SET's invalidation arrived
            invalidations = face.stats().invalidations
            local = 0
            while True:
                before = face.stats()
                started = time.monotonic()
                value = face.get("s", "1", None)
                if value is None:
                    break
                if face.stats().hits > before.hits:
                    local += 1
                    assert started < expires_by, "served locally after the key's expiry"
                else:
                    # Well before the expiry, every read is served locally, however slow
                    # the machine (the count of reads is not: it depends on the load).
                    assert started > expires_by - 0.5, "read from the server before the expiry"
                time.sleep(0.005)
            assert local > 0, "the value was never served locally"
            # No invalidation had come when the key stopped being served: the deadline did it
            # (the server deletes the key, and says so, only when that last read reaches it).
            assert before.invalidations == invalidations
        finally:
            face.close()


# -- racing a fill with an invalidation ----------------------------------------------------


def _write_until(stop: threading.Event, server: RedisServer, prefix: str, last: list[str]) -> None:
    """Write ``r:k`` = ``<prefix>.<n>`` as fast as it goes until ``stop``; record the last."""
    with server.client() as writer:
        n = 0
        while not stop.is_set():
            n += 1
            writer.set("r:k", f"{prefix}.{n}")
    last.append(f"{prefix}.{n}")


def test_a_fill_racing_a_foreign_write_never_leaves_the_old_value_cached(
    face: Face, raw: redis.Redis, pevensie_redis_server: RedisServer
) -> None:
    """Readers fill while a writer changes the key; once the writer stops and every
    invalidation has arrived, the cache must hold the last value (or nothing)."""
    for round_ in range(30):
        raw.set("r:k", f"{round_}.0")
        stop = threading.Event()
        last: list[str] = []
        writer = threading.Thread(
            target=_write_until, args=(stop, pevensie_redis_server, str(round_), last)
        )
        writer.start()
        deadline = time.monotonic() + 0.1
        while time.monotonic() < deadline:
            face.get("r", "k", None)
            face.get_many("r", ["k", "other"])
        stop.set()
        writer.join()
        settle(face, raw)
        assert face.get("r", "k", None) == last[0], f"round {round_}: an old value stayed cached"


# -- memory stays bounded ------------------------------------------------------------------


@pytest.mark.parametrize("kind", FACES)
def test_the_near_cache_never_holds_more_than_its_size_under_key_churn(
    kind: str, raw: redis.Redis, pevensie_redis_server: RedisServer
) -> None:
    size = 100
    face = open_face(
        kind, near_url(pevensie_redis_server.url, f"near_cache=true&near_cache_size={size}")
    )
    try:
        raw.mset({f"u:{n}": f"v{n}" for n in range(3000)})
        most = 0
        for n in range(3000):
            face.get("u", str(n), None)
            face.get("u", f"absent-{n}", None)  # misses are remembered too
            if n % 10 == 0:
                face.get_many("u", [str(m) for m in range(n, n + 50)])
            most = max(most, face.stats().entries)
        assert most == size
        assert face.stats().entries == size
        assert face.get("u", "2999", None) == "v2999"
    finally:
        face.close()


@pytest.mark.parametrize("kind", FACES)
def test_resident_memory_stays_flat_under_key_churn(
    kind: str, raw: redis.Redis, pevensie_redis_server: RedisServer
) -> None:
    """A bonus to the bound above: after a warm-up, 20,000 more distinct keys read through a
    cache of 100 entries (each also changed by another client) leave the RSS about flat."""
    process = psutil.Process()
    query = "near_cache=true&near_cache_size=100"
    face = open_face(kind, near_url(pevensie_redis_server.url, query))
    value = "x" * 1000

    def churn(start: int, count: int) -> None:
        for first in range(start, start + count, 100):
            names = [str(n) for n in range(first, first + 100)]
            raw.mset({f"m:{name}": value for name in names})
            for name in names:
                face.get("m", name, None)
            raw.delete(*[f"m:{name}" for name in names])  # 100 invalidations of held keys

    try:
        churn(0, 5_000)
        before = process.memory_info().rss
        churn(5_000, 20_000)
        grown = (process.memory_info().rss - before) / 2**20
        print(f"\n[{kind}] RSS after 20,000 churned keys: {grown:+.2f} MiB")
        assert face.stats().entries <= 100
        assert grown < 16
    finally:
        face.close()
