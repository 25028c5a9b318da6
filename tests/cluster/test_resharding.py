"""Live resharding, rebalancing and node removal are invisible to a cluster cache's callers.

On each face in turn (a sync cache shared by 4 threads, an async cache shared
by 32 asyncio tasks), workers run mixed single and batch traffic on keys of
their own (set/get, set_many/get_many/delete_many, with and without a TTL)
while the CLI moves slots between primaries, keys migrated one per
``MIGRATE`` so that slots stay half migrated for a while and clients meet
``ASK``, ``TRYAGAIN`` and ``MOVED``. Every call must succeed, every read must
see the worker's own last write, and at the end every key must hold its last
value, with its TTL when it was written with one, and nothing else be stored.

Keys come in groups that share a hash tag (one slot per group), so a batch has
several keys per slot: the multi-key commands that a half-migrated slot
refuses with ``TRYAGAIN``. The 192 groups (768 keys, 5,760 ballast keys) are
shared out among a face's workers; half of them sit in the slots that move.

Each run prints what it met: the redirects and ``TRYAGAIN`` replies the nodes
sent (their ``INFO errorstats``), the calls made and the slowest call while
slots were moving (figures for RELIABILITY.md, not assertions).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot
from resharding import (
    Change,
    SlotMigration,
    add_primary,
    delete_node,
    drain_primary,
    rebalance,
    reshard,
    slot_map,
    wait_until_settled,
)

from pevensie_cache import cache
from pevensie_cache.cache import AsyncPevensieCache, PevensieCache
from pevensie_redis import RedisDriverError
from pevensie_redis.cluster_io_async import open_cluster
from pevensie_redis.config import RedisConfig
from pevensie_redis.protocol.commands import pack
from pevensie_test_support import LocalCluster, loops, start_cluster, wait_until

# The outcome depends on the server: slot migration (CLI, MIGRATE, ASK, TRYAGAIN) is its own.
pytestmark = pytest.mark.server_dependent

T = TypeVar("T")

RESOURCE = "rs"
GROUPS = 192
"""Key groups in all, shared out among a face's workers; half of them in the slots that move."""
GROUP_SIZE = 4
BALLAST = 30
"""Keys per group that the traffic never touches: migrating a slot takes that many MIGRATEs,
so the traffic's keys of a moving slot spend a while split between two nodes."""
TTL = 600
"""Long enough that no key expires during a test: a missing key is a lost key."""
MOVED_SLOTS = 500
"""Slots per ``reshard``: moved there and back, 1,000 slot moves per face."""
KILLED_TIMEOUT_MS = 1000
"""The ``timeout`` of the cache whose primary is killed: its calls fail within
``(retries + 2) * timeout`` (see the cluster driver), plus a margin for a loaded machine."""


# -- the traffic ----------------------------------------------------------------------


@dataclass
class Expected:
    value: str
    ttl: bool


@dataclass
class Op:
    """One call a worker makes: the cache method, its arguments, what it writes or reads."""

    method: str
    args: tuple[Any, ...]
    writes: dict[str, Expected | None] = field(default_factory=dict)
    """Keys written (``None``: deleted): known only once the call succeeded."""
    reads: list[str] = field(default_factory=list)


@dataclass
class Worker:
    """One thread's or task's keys, what it last wrote to each, and what went wrong."""

    index: int
    groups: list[list[str]]
    model: dict[str, Expected] = field(default_factory=dict)
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    slowest_moving: tuple[float, str] = (0.0, "")
    slowest: float = 0.0
    writes: int = 0

    def run(self, c: PevensieCache, stop: threading.Event, moving: threading.Event) -> None:
        """Call ``c`` until ``stop`` is set (the sync face: one thread per worker)."""
        rng = random.Random(self.index)
        while not stop.is_set():
            op = self._plan(rng)
            was_moving, started = moving.is_set(), time.perf_counter()
            try:
                result = getattr(c, op.method)(*op.args)
            except Exception as exc:
                self._record(op, was_moving, started, error=exc)
            else:
                self._record(op, was_moving, started, result=result)

    async def run_async(
        self, c: AsyncPevensieCache, stop: threading.Event, moving: threading.Event
    ) -> None:
        """Call ``c`` until ``stop`` is set (the async face: one task per worker)."""
        rng = random.Random(self.index)
        while not stop.is_set():
            op = self._plan(rng)
            was_moving, started = moving.is_set(), time.perf_counter()
            try:
                result = await getattr(c, op.method)(*op.args)
            except Exception as exc:
                self._record(op, was_moving, started, error=exc)
            else:
                self._record(op, was_moving, started, result=result)

    def _plan(self, rng: random.Random) -> Op:
        """The next call: single and batch reads, writes (with and without TTL) and deletes."""
        keys = [key for group in self.groups for key in group]
        step = rng.random()
        ttl = TTL if rng.random() < 0.5 else None
        if step < 0.25:
            key = rng.choice(keys)
            return Op("get", (RESOURCE, key, None), reads=[key])
        if step < 0.45:
            key = rng.choice(keys)
            value = self._next_value()
            return Op("set", (RESOURCE, key, value, ttl), {key: Expected(value, ttl is not None)})
        if step < 0.5:
            key = rng.choice(keys)
            return Op("delete", (RESOURCE, key), {key: None})
        if step < 0.7:
            batch = self._batch(rng)
            return Op("get_many", (RESOURCE, batch), reads=batch)
        if step < 0.9:
            items = {key: self._next_value() for key in self._batch(rng)}
            writes = {key: Expected(value, ttl is not None) for key, value in items.items()}
            return Op("set_many", (RESOURCE, items, ttl), dict(writes))
        batch = self._batch(rng)[: rng.randint(1, 2 * GROUP_SIZE)]
        return Op("delete_many", (RESOURCE, batch), dict.fromkeys(batch))

    def _next_value(self) -> str:
        self.writes += 1
        return f"w{self.index} write {self.writes}"

    def _batch(self, rng: random.Random) -> list[str]:
        """All keys of two to four groups: several keys in each of several slots."""
        return [key for group in rng.sample(self.groups, rng.randint(2, 4)) for key in group]

    def _record(
        self,
        op: Op,
        was_moving: bool,
        started: float,
        *,
        result: Any = None,
        error: Exception | None = None,
    ) -> None:
        took = time.perf_counter() - started
        self.calls += 1
        self.slowest = max(self.slowest, took)
        if was_moving and took > self.slowest_moving[0]:
            self.slowest_moving = (took, op.method)
        if error is not None:
            self.failures.append(
                f"{op.method}: {type(error).__name__}: {error} (cause {error.__cause__!r})\n"
                + "".join(traceback.format_exception(error))
            )
            self.errors.append(error)
            for key in op.writes:
                self.model.pop(key, None)  # unknown now: left out of the final check
            return
        got = result if op.method == "get_many" else {op.reads[0]: result} if op.reads else {}
        for key in op.reads:
            if key in self.model and got.get(key) != self._expected(key):
                self.stale.append(
                    f"{op.method} {key!r}: {got.get(key)!r}, last wrote {self._expected(key)!r}"
                )
        for key, expected in op.writes.items():
            # Deleted: must read as absent.
            self.model[key] = Expected("", False) if expected is None else expected

    def _expected(self, key: str) -> str | None:
        expected = self.model.get(key)
        return None if expected is None or not expected.value else expected.value


def key_groups(
    worker: int, groups: int, hot_slots: set[int], rng: random.Random
) -> list[list[str]]:
    """``groups`` groups of ``GROUP_SIZE`` keys, each group in one slot; half in ``hot_slots``."""
    found = []
    attempt = 0
    for number in range(groups):
        while True:
            attempt += 1
            tag = f"w{worker}g{number}-{attempt}"
            if number % 2 or not hot_slots or key_slot(tag.encode()) in hot_slots:
                break
        found.append([f"{{{tag}}}-{n}" for n in range(GROUP_SIZE)])
    rng.shuffle(found)
    return found


def ballast(group: list[str]) -> dict[str, str]:
    """The untouched keys that share ``group``'s slot, with their values."""
    tag = group[0].rpartition("-")[0]
    return {f"{tag}-ballast{n}": f"ballast {n} of {tag}" for n in range(BALLAST)}


def store_ballast(topology: LocalCluster, workers: list[Worker]) -> dict[str, str]:
    """Write every group's ballast with a plain cluster client; return it."""
    every: dict[str, str] = {}
    raw = RedisCluster(host="127.0.0.1", port=topology.port, decode_responses=True)
    try:
        for worker in workers:
            for group in worker.groups:
                keys = ballast(group)
                raw.mset({f"{RESOURCE}:{key}": value for key, value in keys.items()})
                every.update(keys)
    finally:
        raw.close()
    return every


# -- the two faces ----------------------------------------------------------------------


class SyncFace:
    """A :class:`PevensieCache` shared by 4 threads."""

    name = "sync"
    workers = 4

    def __init__(self) -> None:
        self.cache: PevensieCache | None = None
        self.threads: list[threading.Thread] = []

    def connect(self, url: str) -> PevensieCache:
        """Connect the face's cache; return it (its calls block)."""
        self.cache = cache.from_url(url).connect()
        return self.cache

    def start(self, workers: list[Worker], stop: threading.Event, moving: threading.Event) -> None:
        """Start one thread per worker."""
        for worker in workers:
            thread = threading.Thread(target=worker.run, args=(self.cache, stop, moving))
            thread.daemon = True
            self.threads.append(thread)
            thread.start()

    def join(self, timeout: float) -> bool:
        """Wait until every worker has stopped (``stop`` set); whether all did in time."""
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self.threads)

    def close(self) -> None:
        """Disconnect the cache."""
        if self.cache is not None:
            self.cache.disconnect()


class AsyncFace:
    """An :class:`AsyncPevensieCache` shared by 32 tasks, on an event loop of its own thread.

    The test's thread changes the topology (blocking CLI runs) meanwhile; it
    reaches the cache through :meth:`connect`'s blocking view.
    """

    name = "async"
    workers = 32

    def __init__(self) -> None:
        self.loop = loops.new_event_loop()  # uvloop in the uvloop pass
        self.thread = threading.Thread(target=self.loop.run_forever, name="async face")
        self.thread.daemon = True
        self.thread.start()
        self.cache: AsyncPevensieCache | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def run(self, call: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        """Run ``call`` on the face's loop; wait for its result."""
        return asyncio.run_coroutine_threadsafe(call, self.loop).result(timeout)

    def connect(self, url: str) -> Blocking:
        """Connect the face's cache; return a view of it whose calls block."""

        async def connect() -> AsyncPevensieCache:
            return await cache.from_url_async(url).connect()

        self.cache = self.run(connect())
        return Blocking(self)

    def start(self, workers: list[Worker], stop: threading.Event, moving: threading.Event) -> None:
        """Start one task per worker."""
        assert self.cache is not None
        c = self.cache

        async def start() -> list[asyncio.Task[None]]:
            return [asyncio.create_task(worker.run_async(c, stop, moving)) for worker in workers]

        self.tasks = self.run(start())

    def join(self, timeout: float) -> bool:
        """Wait until every worker has stopped (``stop`` set); whether all did in time."""
        if not self.tasks:
            return True

        async def join() -> bool:
            done, pending = await asyncio.wait(self.tasks, timeout=timeout)
            for task in done:
                task.result()  # a worker's own bug, if any, surfaces here
            return not pending

        return self.run(join(), timeout + 10)

    def close(self) -> None:
        """Cancel any task left, disconnect the cache, stop the loop and its thread."""

        async def close() -> None:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            if self.cache is not None:
                await self.cache.disconnect()

        try:
            self.run(close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class Blocking:
    """The async face's cache seen from the test's thread: each method call blocks."""

    def __init__(self, face: AsyncFace) -> None:
        self._face = face

    def __getattr__(self, method: str) -> Callable[..., Any]:
        bound = getattr(self._face.cache, method)
        return lambda *args, **kwargs: self._face.run(bound(*args, **kwargs))


Face = SyncFace | AsyncFace


@pytest.fixture(params=[SyncFace, AsyncFace], ids=["sync", "async"])
def face(request: pytest.FixtureRequest) -> Iterator[Face]:
    """Each face of a cluster cache in turn: 4 threads on the sync one, 32 tasks on the async."""
    opened: Face = request.param()
    try:
        yield opened
    finally:
        opened.close()


@dataclass
class Traffic:
    """A face's workers on one cache, started and stopped around topology changes."""

    face: Face
    cache: Any
    """The face's cache, its calls blocking (for the checks)."""
    workers: list[Worker]
    ballast: dict[str, str]
    stop: threading.Event = field(default_factory=threading.Event)
    moving: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.face.start(self.workers, self.stop, self.moving)

    def finish(self) -> None:
        self.stop.set()
        assert self.face.join(60), "a worker hung"

    def during(self, change: Callable[[], Change | list[Change]], changes: list[Change]) -> None:
        """Run ``change`` with the workers told that slots are moving; add it to ``changes``."""
        self.moving.set()
        try:
            done = change()
        finally:
            self.moving.clear()
        changes.extend(done if isinstance(done, list) else [done])

    @property
    def calls(self) -> int:
        return sum(worker.calls for worker in self.workers)

    @property
    def slowest_moving(self) -> tuple[float, str]:
        return max(worker.slowest_moving for worker in self.workers)


@pytest.fixture(params=[False, True], ids=["plain", "near_cache"])
def near(request: pytest.FixtureRequest) -> bool:
    """Each test again with the near cache on: its reads served locally, kept coherent."""
    return bool(request.param)


def near_query(near: bool) -> str:
    return "&near_cache=true" if near else ""


def assert_listening_to_the_primaries(topology: LocalCluster, traffic: Traffic) -> None:
    """With the near cache: its listeners follow the primaries (added, removed)."""
    listeners = getattr(traffic.face.cache.driver, "cluster_listeners", None)
    if listeners is None:
        return
    wanted = {f"127.0.0.1:{node.port}" for node in topology.primaries()}
    wait_until(lambda: set(listeners.nodes) == wanted, 30, "the listeners to follow")


@pytest.fixture
def traffic_factory(
    request: pytest.FixtureRequest, face: Face, near: bool
) -> Iterator[Callable[..., Traffic]]:
    started: list[Traffic] = []

    def make(topology: LocalCluster, hot_slots: set[int], options: str = "") -> Traffic:
        url = f"redis://127.0.0.1:{topology.port}/0?cluster=true{options}{near_query(near)}"
        c = face.connect(url)
        rng = random.Random(request.node.name)
        share = GROUPS // face.workers
        workers = [Worker(n, key_groups(n, share, hot_slots, rng)) for n in range(face.workers)]
        traffic = Traffic(face, c, workers, store_ballast(topology, workers))
        started.append(traffic)
        traffic.start()
        # Every worker under way (a call of its own done) before the first slot moves.
        wait_until(lambda: all(w.calls for w in workers), 30, "every worker's first call")
        return traffic

    yield make
    for traffic in started:
        traffic.stop.set()
        traffic.face.join(60)


# -- what the nodes saw ---------------------------------------------------------------

REDIRECTS = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")


def reset_error_stats(topology: LocalCluster) -> None:
    for node in topology.live_nodes():
        with node.client() as raw:
            raw.config_resetstat()


def error_stats(topology: LocalCluster) -> dict[str, int]:
    """How many MOVED, ASK, TRYAGAIN and CLUSTERDOWN replies the live nodes sent."""
    totals = dict.fromkeys(REDIRECTS, 0)
    for node in topology.live_nodes():
        with node.client() as raw:
            stats = raw.info("errorstats")
        for name in REDIRECTS:
            totals[name] += int(stats.get(f"errorstat_{name}", {}).get("count", 0))
    return totals


def report(
    capsys: pytest.CaptureFixture[str],
    what: str,
    changes: list[Change],
    traffic: Traffic,
    stats: dict[str, int],
) -> None:
    slowest, name = traffic.slowest_moving
    moved = ", ".join(f"{change.what} in {change.seconds:.1f} s" for change in changes)
    with capsys.disabled():
        print(
            f"\n[{what}, {traffic.face.name} face, {traffic.face.workers} workers] {moved}; "
            f"{traffic.calls} calls, 0 failed; nodes replied "
            + ", ".join(f"{count} {name_}" for name_, count in stats.items())
            + f"; slowest call while slots moved: {slowest * 1000:.0f} ms ({name})"
        )


# -- checks -----------------------------------------------------------------------------


def assert_no_failure(traffic: Traffic) -> None:
    failures = [failure for worker in traffic.workers for failure in worker.failures]
    stale = [read for worker in traffic.workers for read in worker.stale]
    assert failures == [], f"{len(failures)} failed calls, first: {failures[:5]}"
    assert stale == [], f"{len(stale)} reads missed their own last write, first: {stale[:5]}"


def assert_nothing_lost(topology: LocalCluster, traffic: Traffic) -> None:
    """Every key holds its last value (with a TTL when written with one); nothing else is stored."""
    expected = {
        key: state
        for worker in traffic.workers
        for key, state in worker.model.items()
        if state.value
    }
    every_key = [key for worker in traffic.workers for group in worker.groups for key in group]
    stored = traffic.cache.get_many(RESOURCE, every_key)
    assert stored == {key: state.value for key, state in expected.items()}
    assert traffic.cache.get_many(RESOURCE, list(traffic.ballast)) == traffic.ballast

    # Through a live primary: the first node may be the one removed.
    raw = RedisCluster(host="127.0.0.1", port=topology.primaries()[0].port, decode_responses=True)
    try:
        assert topology.stored_keys() == {
            f"{RESOURCE}:{key}" for key in [*expected, *traffic.ballast]
        }
        ttls = {key: raw.ttl(f"{RESOURCE}:{key}") for key in expected}
    finally:
        raw.close()
    wrong_ttl = {
        key: ttls[key]
        for key, state in expected.items()
        if (ttls[key] > 0) != state.ttl or (state.ttl and ttls[key] > TTL)
    }
    assert wrong_ttl == {}


def hot(topology: LocalCluster, port: int, count: int) -> set[int]:
    """The ``count`` lowest slots of the primary at ``port``: what ``reshard`` moves first."""
    return set(slot_map(topology)[port][:count])


# -- the tests ----------------------------------------------------------------------------


RESHARDING_NODE_TIMEOUT_MS = 10_000
"""The ``cluster-node-timeout`` of the clusters whose slots move (none of their nodes fails)."""


@pytest.fixture
def moving_cluster() -> Iterator[LocalCluster]:
    """A 3-primary cluster of its own, without replicas: these tests change its topology.

    Clients never talk to replicas here; on Valkey 8 each ``CLUSTER SETSLOT``
    waits for the primary's replicas, which doubles the time a slot takes to move.
    No node fails here: a long ``cluster-node-timeout`` keeps a node that a loaded
    machine (or a long ``MIGRATE``) keeps from answering the others' pings for a
    second from being marked failed, which, without replicas, took the cluster down
    in the middle of a rebalance (one CI rehearsal).
    """
    topology = start_cluster(3, 0, node_timeout_ms=RESHARDING_NODE_TIMEOUT_MS)
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def four_primary_cluster() -> Iterator[LocalCluster]:
    """A 4-primary cluster of its own, without replicas, for the test that removes a primary."""
    topology = start_cluster(4, 0, node_timeout_ms=RESHARDING_NODE_TIMEOUT_MS)
    try:
        yield topology
    finally:
        topology.stop()


@pytest.mark.slow
def test_resharding_back_and_forth_under_load_fails_no_call_and_loses_nothing(
    moving_cluster: LocalCluster,
    traffic_factory: Callable[..., Traffic],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """500 slots move from one primary to another and back: 1,000 slot moves per face.

    Half of the key groups sit in those 500 slots (with their ballast, 3,264 keys).
    """
    first, second = moving_cluster.primaries()[:2]
    traffic = traffic_factory(moving_cluster, hot(moving_cluster, first.port, MOVED_SLOTS))
    reset_error_stats(moving_cluster)
    changes: list[Change] = []
    for source, target in ((first, second), (second, first)):
        traffic.during(partial(reshard, moving_cluster, source, target, MOVED_SLOTS), changes)
        wait_until_settled(moving_cluster)
        assert_no_failure(traffic)
    stats = error_stats(moving_cluster)
    traffic.finish()

    assert_no_failure(traffic)
    assert_nothing_lost(moving_cluster, traffic)
    assert stats["ASK"] + stats["TRYAGAIN"] > 0, "the traffic never met a half-migrated slot"
    report(capsys, "resharding", changes, traffic, stats)


@pytest.mark.slow
def test_adding_a_primary_and_rebalancing_under_load_fails_no_call_and_loses_nothing(
    moving_cluster: LocalCluster,
    traffic_factory: Callable[..., Traffic],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A fourth primary joins and ``rebalance`` moves 4,096 slots to it, from the other three."""
    traffic = traffic_factory(moving_cluster, set())
    reset_error_stats(moving_cluster)
    new, added = add_primary(moving_cluster)
    changes = [added]
    traffic.during(partial(rebalance, moving_cluster), changes)
    wait_until_settled(moving_cluster)
    stats = error_stats(moving_cluster)
    traffic.finish()

    assert len(slot_map(moving_cluster)[new.port]) == 16384 // 4
    assert_no_failure(traffic)
    assert_nothing_lost(moving_cluster, traffic)
    assert_listening_to_the_primaries(moving_cluster, traffic)
    report(capsys, "add a primary + rebalance", changes, traffic, stats)


@pytest.mark.slow
def test_removing_a_primary_under_load_fails_no_call_and_loses_nothing(
    four_primary_cluster: LocalCluster,
    traffic_factory: Callable[..., Traffic],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One of four primaries gives its 4,096 slots to the other three, then is deleted."""
    victim = four_primary_cluster.primaries()[0]
    slots = slot_map(four_primary_cluster)[victim.port]
    traffic = traffic_factory(four_primary_cluster, set(slots))
    reset_error_stats(four_primary_cluster)
    changes: list[Change] = []
    traffic.during(partial(drain_primary, four_primary_cluster, victim), changes)
    stats = error_stats(four_primary_cluster)  # before the victim, which sent most, is gone
    traffic.during(partial(delete_node, four_primary_cluster, victim), changes)
    traffic.finish()

    assert victim.port not in slot_map(four_primary_cluster)
    assert not victim.is_running()
    assert_no_failure(traffic)
    assert_nothing_lost(four_primary_cluster, traffic)
    assert_listening_to_the_primaries(four_primary_cluster, traffic)
    report(capsys, f"remove a primary ({len(slots)} slots)", changes, traffic, stats)


@pytest.mark.slow
def test_a_primary_killed_under_load_gives_only_typed_driver_errors(
    traffic_factory: Callable[..., Traffic], capsys: pytest.CaptureFixture[str]
) -> None:
    """A primary of a replica-less cluster killed: calls on the face until the cluster is down."""
    topology = start_cluster(3, 0)  # no replica: the slots of the killed node stay down
    try:
        traffic = traffic_factory(topology, set(), f"&timeout={KILLED_TIMEOUT_MS}")
        victim = topology.primaries()[0]
        topology.kill(victim)
        # Past cluster-node-timeout the cluster reports itself down; calls go on meeting
        # that (CLUSTERDOWN, or the dead node's address) until one has failed since.
        wait_until(lambda: not topology.is_ok(), 30, "the cluster to report itself down")
        failed = sum(len(worker.errors) for worker in traffic.workers)
        wait_until(
            lambda: sum(len(worker.errors) for worker in traffic.workers) > failed,
            30,
            "a call to fail on the downed cluster",
        )
        traffic.finish()
        errors = [error for worker in traffic.workers for error in worker.errors]
        assert errors, "killing a primary made no call fail"
        untyped = [
            repr(error)
            for error in errors
            if not isinstance(error, RedisDriverError) or type(error) is RedisDriverError
        ]
        assert untyped == []
        retries = 1  # the default
        bound = (retries + 2) * KILLED_TIMEOUT_MS / 1000 + 2.0
        slowest = max(worker.slowest for worker in traffic.workers)
        assert slowest < bound
        kinds = Counter(type(error).__name__ for error in errors)
        with capsys.disabled():
            print(
                f"\n[primary killed, {traffic.face.name} face] {traffic.calls} calls, "
                f"{len(errors)} failed: "
                + ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
                + f"; slowest call {slowest * 1000:.0f} ms (bound {bound:.1f} s)"
            )
    finally:
        topology.stop()


@pytest.mark.parametrize("hash_tag", [False, True], ids=["default-layout", "cluster_hash_tag"])
@pytest.mark.parametrize("to_new_primary", [False, True], ids=["to-a-primary", "to-a-new-primary"])
def test_keys_of_a_half_migrated_slot_read_and_write_exactly_the_stored_values(
    moving_cluster: LocalCluster, face: Face, hash_tag: bool, to_new_primary: bool, near: bool
) -> None:
    """40 keys of one slot, every other one moved, plus 40 keys elsewhere, through each face."""
    # A primary just added serves no slot: the cache meets it first through ASK,
    # while it receives its first slot.
    c = face.connect(
        f"redis://127.0.0.1:{moving_cluster.port}/0?cluster=true&cluster_hash_tag={hash_tag}"
        + near_query(near)
    )
    prefix = "{half}:" if hash_tag else "half:"
    # 40 keys in one slot (every key of the resource type with cluster_hash_tag),
    # and without it 40 more spread over other slots.
    same_slot = [f"k{n}" if hash_tag else f"{{t}}k{n}" for n in range(40)]
    elsewhere = [] if hash_tag else [f"other{n}" for n in range(40)]
    keys = same_slot + elsewhere
    slot = key_slot((prefix + same_slot[0]).encode())
    expected = {key: f"before {key}" for key in keys}
    c.set_many("half", expected, ttl_seconds=TTL)
    ttl = dict.fromkeys(keys, True)

    if to_new_primary:
        target, _ = add_primary(moving_cluster)
    else:
        target = next(
            node
            for node in moving_cluster.primaries()
            if slot not in slot_map(moving_cluster).get(node.port, [])
        )
    migration = SlotMigration(moving_cluster, slot, target)
    migration.begin()
    migration.move([prefix + key for key in same_slot[::2]])  # every other key has moved

    assert [c.get("half", key) for key in same_slot[:4]] == [expected[key] for key in same_slot[:4]]
    new_key = "new" if hash_tag else "{t}new"  # in the same slot, on neither node yet
    singles = {
        same_slot[0]: ("single write, moved key", None),
        same_slot[1]: ("single write, key not moved", TTL),
        new_key: ("a new key of the slot", None),
    }
    for key, (value, seconds) in singles.items():
        c.set("half", key, value, ttl_seconds=seconds)
        expected[key] = value
        ttl[key] = seconds is not None
    c.delete("half", same_slot[2])
    del expected[same_slot[2]]
    keys.append(new_key)
    assert {key: c.get("half", key, None) for key in [*same_slot[:4], new_key]} == {
        key: expected.get(key) for key in [*same_slot[:4], new_key]
    }
    assert c.get_many("half", keys) == expected

    written = {key: f"during {key}" for key in keys[::3]}
    c.set_many("half", written)
    expected.update(written)
    ttl.update(dict.fromkeys(written, False))
    assert c.get_many("half", keys) == expected
    written = {key: f"with ttl {key}" for key in keys[1::4]}
    c.set_many("half", written, ttl_seconds=TTL)
    expected.update(written)
    ttl.update(dict.fromkeys(written, True))
    gone = keys[2::5]
    c.delete_many("half", gone)
    for key in gone:
        expected.pop(key, None)
    assert c.get_many("half", keys) == expected
    back = {key: f"back {key}" for key in gone[:4]}  # keys absent from both nodes
    c.set_many("half", back)
    expected.update(back)
    ttl.update(dict.fromkeys(back, False))
    assert c.get_many("half", keys) == expected

    migration.finish()
    assert c.get_many("half", keys) == expected
    assert slot in slot_map(moving_cluster)[target.port]
    raw = RedisCluster(host="127.0.0.1", port=moving_cluster.port, decode_responses=True)
    try:
        assert {key: raw.get(prefix + key) for key in expected} == expected
        assert {key: raw.ttl(prefix + key) > 0 for key in expected} == {
            key: ttl[key] for key in expected
        }
    finally:
        raw.close()


async def test_a_slot_map_refresh_closes_no_connection_another_task_is_using(
    redis_cluster: LocalCluster,
) -> None:
    """The router reads its slot map again after ``MOVED``, ``CLUSTERDOWN`` and a failed node:
    no call of the 8 tasks using it meanwhile may fail.

    (redis-py's async RedisCluster refreshed by calling its own ``aclose()``,
    which disconnected the connections other tasks were using.)
    """
    config = RedisConfig(host="127.0.0.1", port=redis_cluster.port, cluster=True)
    router = await open_cluster(config)
    done = asyncio.Event()

    async def user(n: int) -> None:
        key = f"refresh{n}".encode()
        slot = key_slot(key)
        for i in range(40):
            await router.execute(slot, pack([b"SET", key, str(i).encode()]), "SET")
            assert await router.execute(slot, pack([b"GET", key]), "GET") == str(i).encode()

    async def refresh() -> None:
        while not done.is_set():
            await router.refresh()
            await asyncio.sleep(0.002)

    refresher = asyncio.create_task(refresh())
    try:
        await asyncio.gather(*(user(n) for n in range(8)))
    finally:
        done.set()
        await refresher
        for n in range(8):
            key = f"refresh{n}".encode()
            await router.execute(key_slot(key), pack([b"DEL", key]), "DEL")
        await router.close()
