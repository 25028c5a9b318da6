"""The near cache's local store on its own (no server): fills, invalidations, flushes, bounds."""

from __future__ import annotations

import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pevensie_redis.near import ENTRY_OVERHEAD, MISS, NearStore


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def enabled(size: int = 100, clock: Clock | None = None, max_bytes: int | None = None) -> NearStore:
    store = NearStore(size, max_bytes, clock=clock or Clock())
    store.enable()
    return store


def test_a_fill_is_served_until_invalidated() -> None:
    store = enabled()
    assert store.lookup(b"u:1") is None
    ticket = store.begin([b"u:1"])
    store.finish(ticket, [(b"u:1", b"Ada", -1)])
    assert store.lookup(b"u:1") == b"Ada"
    store.invalidate([b"u:1"])
    assert store.lookup(b"u:1") is None


def test_a_miss_is_remembered_as_a_miss() -> None:
    store = enabled()
    store.finish(store.begin([b"u:2"]), [(b"u:2", None, -2)])
    assert store.lookup(b"u:2") is MISS


def test_an_invalidation_racing_the_read_keeps_the_old_value_out() -> None:
    store = enabled()
    ticket = store.begin([b"u:1"])
    store.invalidate([b"u:1"])  # arrives before the reply is handled
    store.finish(ticket, [(b"u:1", b"old", -1)])
    assert store.lookup(b"u:1") is None


def test_an_entry_never_outlives_the_server_ttl() -> None:
    clock = Clock()
    store = enabled(clock=clock)
    store.finish(store.begin([b"s:1"]), [(b"s:1", b"v", 1500)])
    clock.now += 1.49
    assert store.lookup(b"s:1") == b"v"
    clock.now += 0.02
    assert store.lookup(b"s:1") is None


def test_the_ttl_counts_from_when_the_read_began() -> None:
    """The server read the TTL after the read was sent: a slow reply must not lengthen it."""
    clock = Clock()
    store = enabled(clock=clock)
    ticket = store.begin([b"s:1"])
    clock.now += 0.4  # the reply took 400 ms
    store.finish(ticket, [(b"s:1", b"v", 1000)])
    clock.now += 0.59
    assert store.lookup(b"s:1") == b"v"
    clock.now += 0.02  # 1.01 s after the read began: the key may be gone on the server
    assert store.lookup(b"s:1") is None


def test_a_value_whose_key_vanished_before_its_ttl_was_read_is_not_kept() -> None:
    store = enabled()
    store.finish(store.begin([b"u:1"]), [(b"u:1", b"v", -2)])  # expired between GET and PTTL
    store.finish(store.begin([b"u:2"]), [(b"u:2", None, 5000)])  # created between them
    assert store.lookup(b"u:1") is None
    assert store.lookup(b"u:2") is None
    assert store.stats().entries == 0


def test_flushes_count_the_times_the_store_was_emptied_not_the_enables() -> None:
    store = enabled()
    assert store.stats().flushes == 0
    store.flush(disable=True)
    store.enable()
    store.invalidate(None)  # FLUSHDB
    assert store.stats().flushes == 2


def test_a_flush_disables_the_store_and_spoils_reads_in_flight() -> None:
    store = enabled()
    ticket = store.begin([b"u:1"])
    store.flush(disable=True)
    store.finish(ticket, [(b"u:1", b"before the break", -1)])
    assert store.lookup(b"u:1") is None
    assert store.begin([b"u:1"]) is None  # disabled: reads go to the server, uncached
    store.enable()
    store.finish(store.begin([b"u:1"]), [(b"u:1", b"after", -1)])
    assert store.lookup(b"u:1") == b"after"
    assert store.stats().flushes >= 1


def test_the_store_holds_at_most_its_size_least_recently_used_first_out() -> None:
    store = enabled(size=3)
    for n in range(3):
        store.finish(store.begin([b"k%d" % n]), [(b"k%d" % n, b"v", -1)])
    assert store.lookup(b"k0") == b"v"  # k0 becomes the most recent
    store.finish(store.begin([b"k3"]), [(b"k3", b"v", -1)])
    assert store.stats().entries == 3
    assert store.lookup(b"k1") is None
    assert store.lookup(b"k0") == b"v"


def fill(store: NearStore, key: bytes, value: object, pttl: int = -1) -> None:
    store.finish(store.begin([key]), [(key, value, pttl)])


def cost(key: bytes, value: object) -> int:
    return sys.getsizeof(key) + ENTRY_OVERHEAD + (0 if value is None else sys.getsizeof(value))


def test_the_bytes_of_an_entry_are_its_key_its_value_and_the_overhead() -> None:
    store = enabled()
    fill(store, b"u:1", "Ada" * 100)
    fill(store, b"u:2", None, -2)  # a remembered miss costs its key and the overhead only
    assert store.stats().bytes == cost(b"u:1", "Ada" * 100) + cost(b"u:2", None)


def test_the_byte_bound_evicts_the_least_recently_used_first() -> None:
    value = "x" * 1000
    store = enabled(max_bytes=3 * cost(b"k0", value))
    for n in range(3):
        fill(store, b"k%d" % n, value)
    assert store.stats().entries == 3
    assert store.lookup(b"k0") == value  # k0 becomes the most recent
    fill(store, b"k3", value)
    stats = store.stats()
    assert (stats.entries, stats.evictions) == (3, 1)
    assert stats.bytes <= 3 * cost(b"k0", value)
    assert store.lookup(b"k1") is None
    assert store.lookup(b"k0") == value


def test_one_large_value_evicts_as_many_small_ones_as_it_needs() -> None:
    small, large = "s" * 100, "L" * 5000
    store = enabled(max_bytes=cost(b"big", large) + 2 * cost(b"k0", small))
    for n in range(5):
        fill(store, b"k%d" % n, small)
    fill(store, b"big", large)
    stats = store.stats()
    assert store.lookup(b"big") == large
    assert stats.entries == 3  # big and the two most recent small ones
    assert store.lookup(b"k4") == small
    assert store.lookup(b"k2") is None


def test_a_value_bigger_than_the_whole_bound_is_not_kept_and_evicts_nothing() -> None:
    store = enabled(max_bytes=4096)
    fill(store, b"small", "s")
    fill(store, b"huge", "h" * 10_000)
    assert store.lookup(b"huge") is None
    assert store.lookup(b"small") == "s"
    assert store.stats().evictions == 0


def test_the_entry_bound_still_holds_under_a_byte_bound() -> None:
    store = enabled(size=2, max_bytes=1 << 20)
    for n in range(4):
        fill(store, b"k%d" % n, "v")
    stats = store.stats()
    assert (stats.entries, stats.evictions) == (2, 2)


def test_a_refill_of_a_key_replaces_its_bytes_instead_of_adding_them() -> None:
    store = enabled()
    fill(store, b"u:1", "a" * 500)
    fill(store, b"u:1", "b" * 10)
    assert store.stats().bytes == cost(b"u:1", "b" * 10)
    assert store.stats().entries == 1


def test_every_way_out_of_the_store_gives_its_bytes_back() -> None:
    clock = Clock()
    store = enabled(clock=clock)
    fill(store, b"t:gone", "expires", pttl=1000)
    fill(store, b"t:inv", "invalidated")
    fill(store, b"t:fgt", "forgotten")
    fill(store, b"p:1", "cleared")
    fill(store, b"t:stay", "stays")
    clock.now += 2
    assert store.lookup(b"t:gone") is None  # expired: dropped when looked up
    store.invalidate([b"t:inv"])
    store.forget([b"t:fgt"])
    store.forget_prefix(b"p:")
    assert store.stats().bytes == cost(b"t:stay", "stays")
    store.flush()
    assert store.stats().bytes == 0


byte_actions = st.lists(
    st.tuples(
        st.sampled_from(["fill", "invalidate", "forget", "lookup", "flush"]),
        st.integers(0, 7),
        st.integers(0, 3000),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(actions=byte_actions)
def test_the_counted_bytes_are_the_sum_of_the_entries_and_stay_within_the_bound(
    actions: list[tuple[str, int, int]],
) -> None:
    bound = 6000
    store = enabled(size=5, max_bytes=bound)
    held: dict[bytes, str] = {}
    for action, number, length in actions:
        key = b"k%d" % number
        if action == "fill":
            fill(store, key, "v" * length)
            held[key] = "v" * length
        elif action == "invalidate":
            store.invalidate([key])
        elif action == "forget":
            store.forget([key])
        elif action == "flush":
            store.flush()
        else:
            store.lookup(key)
        stats = store.stats()
        kept = {k: v for k, v in held.items() if store._entries.get(k) is not None}
        assert stats.bytes == sum(cost(k, v) for k, v in kept.items())
        assert stats.bytes <= bound
        assert stats.entries <= 5


actions = st.lists(
    st.tuples(
        st.sampled_from(["begin", "finish", "invalidate", "flush", "lookup"]),
        st.sampled_from([b"a", b"b"]),
        st.integers(0, 5),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(actions=actions)
def test_no_read_returns_a_value_older_than_the_last_invalidation(
    actions: list[tuple[str, bytes, int]],
) -> None:
    """Model: the server's value of a key has a version; a read must never see a version
    older than the one current when the last invalidation for that key arrived."""
    store = enabled(size=2)
    version = {b"a": 0, b"b": 0}
    floor = {b"a": 0, b"b": 0}  # versions invalidated so far: no read may go below
    reads: list[tuple[int, bytes, int]] = []  # (ticket, key, version read)
    for action, key, pick in actions:
        if action == "begin":
            ticket = store.begin([key])
            assert ticket is not None
            reads.append((ticket, key, version[key]))
        elif action == "finish" and reads:
            ticket, read_key, read_version = reads.pop(pick % len(reads))
            store.finish(ticket, [(read_key, b"%d" % read_version, -1)])
        elif action == "invalidate":
            version[key] += 1  # a foreign write, then its invalidation arrives
            store.invalidate([key])
            floor[key] = version[key]
        elif action == "flush":
            store.flush()
            floor = dict(version)
        else:
            held = store.lookup(key)
            if held is not None:
                assert int(held) >= floor[key]


# -- several nodes (the primaries of a Redis Cluster) feeding one store ------------------


def two_nodes(size: int = 100) -> NearStore:
    store = NearStore(size, None, clock=Clock())
    store.enable("a:1")
    store.enable("b:2")
    return store


def fill_from(store: NearStore, node: str, key: bytes, value: str) -> None:
    store.finish(store.begin([key], node), [(key, value, -1)])


def test_a_node_whose_channel_breaks_loses_its_entries_and_no_other() -> None:
    store = two_nodes()
    fill_from(store, "a:1", b"k:a", "from a")
    fill_from(store, "b:2", b"k:b", "from b")
    store.flush(disable=True, node="a:1")
    assert store.lookup(b"k:a") is None
    assert store.lookup(b"k:b") == "from b"
    assert store.begin([b"k:a"], "a:1") is None  # not listened to: not kept
    assert store.listening() == ["b:2"]
    assert store.stats().enabled
    assert store.stats().bytes == cost(b"k:b", "from b")
    store.enable("a:1")
    fill_from(store, "a:1", b"k:a", "again")
    assert store.lookup(b"k:a") == "again"


def test_a_read_begun_before_its_nodes_channel_broke_is_not_kept_even_once_it_is_back() -> None:
    store = two_nodes()
    ticket = store.begin([b"k"], "a:1")
    store.flush(disable=True, node="a:1")
    store.enable("a:1")
    store.finish(ticket, [(b"k", "read before the break", -1)])
    assert store.lookup(b"k") is None


def test_a_read_that_ran_on_another_node_than_its_ticket_is_not_kept() -> None:
    store = two_nodes()
    ticket = store.begin([b"k"], "a:1")
    store.finish(ticket, [(b"k", "redirected to b", -1)], node="b:2")
    assert store.lookup(b"k") is None
    fill_from(store, "a:1", b"k", "from a")
    assert store.lookup(b"k") == "from a"


def test_a_nodes_flushdb_drops_its_entries_and_an_invalidation_drops_a_key_whoever_sends_it() -> (
    None
):
    store = two_nodes()
    fill_from(store, "a:1", b"k:a", "from a")
    fill_from(store, "a:1", b"k:a2", "from a")
    fill_from(store, "b:2", b"k:b", "from b")
    store.invalidate([b"k:a2"], "b:2")  # the key moved to b, and changed there
    assert store.lookup(b"k:a2") is None
    store.invalidate(None, "b:2")
    assert store.lookup(b"k:b") is None
    assert store.lookup(b"k:a") == "from a"


node_actions = st.lists(
    st.tuples(
        st.sampled_from(["begin", "finish", "write", "break", "enable", "lookup"]),
        st.sampled_from([b"a", b"b"]),
        st.integers(0, 5),
    ),
    max_size=80,
)
OWNER = {b"a": "a:1", b"b": "b:2"}


@settings(max_examples=400, deadline=None)
@given(actions=node_actions)
def test_no_read_is_older_than_the_last_write_heard_or_not_with_channels_breaking(
    actions: list[tuple[str, bytes, int]],
) -> None:
    """Model of two primaries: a write to a key is heard only while its node's channel
    listens. Whatever breaks when, no read returns a version older than the last write."""
    store = two_nodes(size=2)
    version = {b"a": 0, b"b": 0}
    reads: list[tuple[Any, bytes, int]] = []
    for action, key, pick in actions:
        node = OWNER[key]
        if action == "begin":
            ticket = store.begin([key], node)
            if ticket is not None:
                reads.append((ticket, key, version[key]))
        elif action == "finish" and reads:
            ticket, read_key, read_version = reads.pop(pick % len(reads))
            store.finish(ticket, [(read_key, b"%d" % read_version, -1)])
        elif action == "write":
            version[key] += 1
            if node in store.listening():  # heard: its invalidation arrives
                store.invalidate([key], node)
        elif action == "break":
            store.flush(disable=True, node=node)
        elif action == "enable":
            if node not in store.listening():
                store.enable(node)
        else:
            held = store.lookup(key)
            if held is not None:
                assert int(held) == version[key]


# -- remembered misses on a Cluster: kept only while every primary listens ----------------


def test_misses_are_kept_only_while_every_expected_node_listens() -> None:
    store = two_nodes()
    store.expect(["a:1", "b:2", "c:3"])  # c:3 just appeared: not listened to yet
    store.finish(store.begin([b"gone"], "a:1"), [(b"gone", None, -2)])
    fill_from(store, "a:1", b"k", "value")
    assert store.lookup(b"gone") is None  # not remembered: c:3 may write it unheard
    assert store.lookup(b"k") == "value"  # values need no such rule
    store.enable("c:3")
    store.finish(store.begin([b"gone"], "a:1"), [(b"gone", None, -2)])
    assert store.lookup(b"gone") is MISS


def test_a_node_that_stops_listening_drops_every_miss_and_the_misses_in_flight() -> None:
    store = two_nodes()
    store.expect(["a:1", "b:2"])
    store.finish(store.begin([b"miss:a"], "a:1"), [(b"miss:a", None, -2)])
    fill_from(store, "a:1", b"value:a", "kept")
    in_flight = store.begin([b"miss:a2"], "a:1")
    store.flush(disable=True, node="b:2")  # b's channel broke: it may take writes unheard
    assert store.lookup(b"miss:a") is None
    assert store.lookup(b"value:a") == "kept"
    store.enable("b:2")
    store.finish(in_flight, [(b"miss:a2", None, -2)])  # begun before: not kept
    assert store.lookup(b"miss:a2") is None
    store.finish(store.begin([b"miss:a2"], "a:1"), [(b"miss:a2", None, -2)])
    assert store.lookup(b"miss:a2") is MISS


def test_a_miss_read_while_a_node_did_not_listen_is_not_kept_once_it_does() -> None:
    store = two_nodes()
    store.expect(["a:1", "b:2", "c:3"])
    ticket = store.begin([b"k"], "a:1")  # c:3 may write k before it listens
    store.enable("c:3")
    store.finish(ticket, [(b"k", None, -2)])
    assert store.lookup(b"k") is None


def test_a_store_with_no_expected_nodes_keeps_misses_as_one_server_does() -> None:
    store = enabled()
    store.finish(store.begin([b"k"]), [(b"k", None, -2)])
    assert store.lookup(b"k") is MISS
    store.expect(None)
    assert store.lookup(b"k") is MISS


migration_actions = st.lists(
    st.tuples(
        st.sampled_from(["begin", "finish", "write", "break", "enable", "appear", "lookup"]),
        st.integers(0, 5),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(actions=migration_actions)
def test_no_read_misses_a_key_written_on_a_node_importing_its_slot(
    actions: list[tuple[str, int]],
) -> None:
    """Model of a slot migrating from a:1 to c:3: the key is absent from a:1, so reads there
    miss, and writes land on c:3 (ASK), heard only while c:3's channel listens. c:3 may be
    new: unknown until it appears (the watch finds it). Whatever happens when, no read
    returns a miss once the key was written, except before c:3 appeared (the window the
    watch's interval bounds)."""
    store = two_nodes()
    store.expect(["a:1", "b:2"])
    written = False
    expected = {"a:1", "b:2"}
    reads: list[tuple[Any, bool]] = []
    for action, pick in actions:
        if action == "begin":
            ticket = store.begin([b"k"], "a:1")
            if ticket is not None:
                reads.append((ticket, written))
        elif action == "finish" and reads:
            ticket, after_the_write = reads.pop(pick % len(reads))
            if after_the_write:  # a:1 answered ASK: the read went to c:3, not kept
                store.abandon(ticket, [b"k"])
            else:  # a:1 answered a miss (the key is written on c:3, if at all, later)
                store.finish(ticket, [(b"k", None, -2)])
        elif action == "write":
            written = True
            if "c:3" in store.listening():
                store.invalidate([b"k"], "c:3")
        elif action == "break":
            store.flush(disable=True, node="c:3")
        elif action == "enable":
            if "c:3" in expected and "c:3" not in store.listening():
                store.enable("c:3")
        elif action == "appear":
            expected.add("c:3")
            store.expect(expected)
        else:
            held = store.lookup(b"k")
            if held is MISS and written:
                assert "c:3" not in expected, "a miss served after the key was written"
