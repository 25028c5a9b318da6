"""A controlled Sentinel failover: ``SENTINEL FAILOVER`` while the old primary stays up.

The old primary keeps running and accepting writes until the sentinels turn it
into a replica, which they do some 10 s after naming the new primary. A cache
that kept writing to it meanwhile would lose every such write when it resyncs
from the new primary. On both faces the driver asks the sentinels for the

primary about once a second while it is used (the sync face's pool, the async
face's channel), so the same cache moves its writes to the new primary within
:data:`WRITES_MOVE_BOUND` of the sentinels naming it, and no error (``READONLY``
included) reaches the caller after the naming. A write made in between went to
the old primary and is lost, so its read-back may miss. A cache that sat idle
asks first: its first write after the idle spell reaches the new primary.

Each test runs on both faces, each on a topology of its own.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass

import pytest
import redis

from pevensie_redis.primary_check import PRIMARY_CHECK_INTERVAL, STALE_AFTER
from pevensie_redis.testing import ProcessServer
from pevensie_test_support import LocalSentinel
from pevensie_test_support.faces import FACES, Face, new_face
from pevensie_test_support.nodes import wait_until

# The outcome depends on the server: Sentinel's failover is the server's.
pytestmark = pytest.mark.server_dependent

WRITES_MOVE_BOUND = PRIMARY_CHECK_INTERVAL + 2.0
"""Seconds after every sentinel names the new primary by which every write reaches it.

The driver asks the sentinels at most :data:`PRIMARY_CHECK_INTERVAL` after its
last question; the rest is room for a loaded CI machine.
"""

DEMOTION_BOUND = 30.0
"""Seconds within which the sentinels turn the old primary into a replica (about 10 s here)."""


@dataclass(frozen=True)
class Call:
    """One write-then-read of the loop: when it started and ended, what it read or raised."""

    index: int
    started: float
    ended: float
    error: BaseException | None = None
    read_back: str | None = None  # None: a miss

    @property
    def value(self) -> str:
        return f"value {self.index}"


class Writer:
    """Writes ``loop:<index>`` then reads it back until stopped.

    The sync face runs in a thread of its own, the async face in a task of the
    test's event loop (whose own waits run in threads, never blocking it).
    """

    def __init__(self, face: Face) -> None:
        self.face = face
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Writer:
        if self.face.name == "sync":
            self._thread = threading.Thread(
                target=lambda: asyncio.run(self._run()), name="failover-writer", daemon=True
            )
            self._thread.start()
        else:
            self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 60)
            assert not self._thread.is_alive(), "the writer hung"
        if self._task is not None:
            await asyncio.wait_for(self._task, 60)

    async def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            index += 1
            started = time.monotonic()
            try:
                await self.face.set("loop", str(index), f"value {index}")
                value = await self.face.get("loop", str(index), None)
            except Exception as exc:  # every error is recorded: none may reach the caller
                self.calls.append(Call(index, started, time.monotonic(), error=exc))
            else:
                self.calls.append(Call(index, started, time.monotonic(), read_back=value))
            await asyncio.sleep(0.005)


def naming(topology: LocalSentinel) -> list[tuple[str, int] | None]:
    """Return the primary's address as each sentinel names it (``None``: no answer)."""
    names: list[tuple[str, int] | None] = []
    for node in topology.sentinel_nodes:
        try:
            with node.client() as client:
                answer = client.execute_command(
                    "SENTINEL GET-MASTER-ADDR-BY-NAME", topology.service_name
                )
        except redis.RedisError:
            answer = None
        names.append((str(answer[0]), int(answer[1])) if answer else None)
    return names


def role(node: ProcessServer) -> str:
    with node.client() as client:
        return str(client.execute_command("ROLE")[0])


@pytest.fixture(params=FACES)
def face_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def ask_for_failover(topology: LocalSentinel) -> None:
    with topology.sentinel_nodes[0].client() as sentinel:
        assert sentinel.execute_command("SENTINEL FAILOVER", topology.service_name)


async def test_a_controlled_failover_moves_the_writes_to_the_new_primary_with_no_error(
    fresh_sentinel: LocalSentinel, face_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    topology = fresh_sentinel
    # Default retries and timeout: what an application gets without tuning.
    c = new_face(face_name, sentinels=topology.sentinels, service_name=topology.service_name)
    await c.connect()
    try:
        old = topology.current_primary()
        new = topology.replica if old is topology.primary else topology.primary
        async with Writer(c) as writer:
            # The loop runs against the old primary first; the failover then comes at a
            # random point of the driver's check cycle, so runs measure the whole bound.
            await asyncio.sleep(random.uniform(0.5, 0.5 + PRIMARY_CHECK_INTERVAL))
            await asyncio.to_thread(ask_for_failover, topology)
            failover_at = time.monotonic()
            first_named_at: list[float] = []

            def all_name_the_new_primary() -> bool:
                names = naming(topology)
                if not first_named_at and new.address in names:
                    first_named_at.append(time.monotonic())
                return all(name == new.address for name in names)

            await asyncio.to_thread(
                wait_until, all_name_the_new_primary, DEMOTION_BOUND, "every sentinel to name it"
            )
            named_at = time.monotonic()
            # The old primary stays up: the sentinels turn it into a replica later.

            def demoted() -> bool:
                return role(old) == "slave"

            await asyncio.to_thread(wait_until, demoted, DEMOTION_BOUND, "its demotion")
            demoted_at = time.monotonic()
            await asyncio.sleep(1.0)  # and the loop goes on a while after the demotion
        assert role(new) == "master"

        with new.client() as raw:
            keys = [f"loop:{call.index}" for call in writer.calls]
            on_new = dict(zip(keys, raw.mget(keys), strict=True))
        after_naming = [call for call in writer.calls if call.started >= named_at]
        assert len(after_naming) > 50
        assert [call.error for call in after_naming if call.error is not None] == []
        # A write is lost when it went to the old primary after the new one was promoted:
        # the old primary drops it when it resyncs as a replica.
        lost = [
            call
            for call in writer.calls
            if call.error is None and on_new[f"loop:{call.index}"] != call.value
        ]
        last_lost = max((call.ended for call in lost), default=failover_at)
        moved_within = last_lost - named_at
        assert moved_within < WRITES_MOVE_BOUND, (
            f"writes reached the new primary only {moved_within:.2f} s after the naming"
        )
        moved = [call for call in after_naming if call.started >= named_at + WRITES_MOVE_BOUND]
        assert all(call.read_back == call.value for call in moved)
        errors_before = sum(1 for call in writer.calls if call.error is not None)
        with capsys.disabled():
            print(
                f"\n[controlled sentinel failover, {face_name} face] named by one sentinel "
                f"{first_named_at[0] - failover_at:.2f} s, by all {named_at - failover_at:.2f} s "
                f"after SENTINEL FAILOVER; old primary demoted after "
                f"{demoted_at - failover_at:.2f} s; the last lost write ended "
                f"{moved_within:+.2f} s after all named it; {len(lost)} writes lost, "
                f"{errors_before} errors (all before the naming), {len(writer.calls)} calls"
            )
    finally:
        await c.disconnect()


async def test_the_cache_keeps_serving_its_primary_when_no_sentinel_answers(
    fresh_sentinel: LocalSentinel, face_name: str
) -> None:
    """The periodic question to the sentinels fails quietly: the primary still serves."""
    topology = fresh_sentinel
    c = new_face(face_name, sentinels=topology.sentinels, service_name=topology.service_name)
    await c.connect()
    try:
        await c.set("user", "1", "Ada")
        for node in topology.sentinel_nodes:
            node.kill()
        deadline = time.monotonic() + 3 * PRIMARY_CHECK_INTERVAL
        calls = 0
        while time.monotonic() < deadline:
            await c.set("loop", str(calls), "still served")
            assert await c.get("loop", str(calls)) == "still served"
            calls += 1
            await asyncio.sleep(0.01)
        assert calls > 10
        assert await c.get("user", "1") == "Ada"
    finally:
        await c.disconnect()


async def test_a_write_after_an_idle_spell_reaches_the_primary_the_sentinels_name(
    fresh_sentinel: LocalSentinel, face_name: str
) -> None:
    """An idle cache's first write after ``SENTINEL FAILOVER`` goes to the new primary.

    While the cache was idle nobody asked the sentinels; its first command
    found the question due but went, at once, over a connection to the old
    primary, which still took writes and dropped them when it was made a
    replica: the write was lost, however long after the naming it came.
    """
    topology = fresh_sentinel
    c = new_face(face_name, sentinels=topology.sentinels, service_name=topology.service_name)
    await c.connect()
    try:
        await c.set("idle", "before", "kept")
        last_call = time.monotonic()
        old = topology.current_primary()
        new = topology.replica if old is topology.primary else topology.primary
        await asyncio.to_thread(ask_for_failover, topology)

        def all_name_the_new_primary() -> bool:
            return all(name == new.address for name in naming(topology))

        await asyncio.to_thread(
            wait_until, all_name_the_new_primary, DEMOTION_BOUND, "every sentinel to name it"
        )
        # An idle spell since its last call (the driver's clock), however fast the naming
        # came: shorter, the question is only due and the write goes at once, as before.
        await asyncio.sleep(max(0.0, last_call + STALE_AFTER + 0.2 - time.monotonic()))
        old_took_writes = role(old) == "master"
        await c.set("idle", "after", "written after the naming")
        await asyncio.to_thread(
            wait_until, lambda: role(old) == "slave", DEMOTION_BOUND, "the old primary's demotion"
        )
        with new.client() as raw:
            stored = raw.get("idle:after")
        assert stored == "written after the naming", (
            f"the write made after every sentinel named the new primary was lost "
            f"(the old primary was {'still' if old_took_writes else 'no longer'} taking writes)"
        )
        assert await c.get("idle", "after") == "written after the naming"
    finally:
        await c.disconnect()
