"""A primary that answers ``CLUSTERDOWN`` for a while: calls ride it out within their timeout.

After a failover on Redis 7.0, one node can go on answering ``CLUSTERDOWN``
for a moment after the others report the cluster up. The outage here is made
the same way, deterministically: one primary forgets its own slots
(``CLUSTER DELSLOTSRANGE`` on it alone). The other nodes still name it the
owner, so the driver's slot map does too, and the primary refuses every
command for those slots with ``CLUSTERDOWN`` (its own ``CLUSTER SLOTS`` lacks
them) until it takes them back (``CLUSTER ADDSLOTSRANGE``), which it serves
at once. A refused command never ran (the server refuses it before running
it), so even a write that must run once is sent again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest
from redis.exceptions import ClusterDownError

from pevensie_cache import DriverUnavailable
from pevensie_redis import RedisConnectionError, RedisServerError, RedisServerUnavailable
from pevensie_redis.protocol.slots import key_slot
from pevensie_redis.testing import RedisServer
from pevensie_test_support import LocalCluster, start_cluster
from pevensie_test_support.faces import FACES, Face, new_face
from pevensie_test_support.stalls import Stalls

pytestmark = pytest.mark.server_dependent  # what the nodes answer while a slot is unserved

OUTAGE_S = 0.5
"""How long the primary refuses its slots before it takes them back (from another thread)."""

MARGIN_S = 2.0
"""What a call may take past its timeout: the last attempt, a refresh, a loaded machine."""


def cluster_url(topology: LocalCluster, **query: str) -> str:
    options = "&".join(f"{name}={value}" for name, value in {"cluster": "true", **query}.items())
    return f"redis://127.0.0.1:{topology.port}/0?{options}"


class Outage:
    """One primary's slots unserved: :meth:`begin` drops them on it alone, :meth:`end` restores."""

    def __init__(self, node: RedisServer) -> None:
        self.node = node
        with node.client() as raw:
            self.ranges = [
                (int(start), int(end))
                for start, end, primary, *_ in raw.execute_command("CLUSTER", "SLOTS")
                if int(primary[1]) == node.port
            ]
        self.ending_at: float | None = None
        """When the primary was last asked to take its slots back."""

    def serves(self, key: str) -> bool:
        """Whether ``key``'s slot is one of this primary's."""
        slot = key_slot(key.encode())
        return any(start <= slot <= end for start, end in self.ranges)

    def begin(self, probe: str) -> None:
        """Drop the slots on the primary; check that it refuses ``probe`` (a key of its own)."""
        self.ending_at = None
        with self.node.client() as raw:
            for start, end in self.ranges:
                raw.execute_command("CLUSTER", "DELSLOTSRANGE", start, end)
            with pytest.raises(ClusterDownError):
                raw.get(probe)

    def end(self) -> None:
        """Give the slots back to the primary (it serves them again at once)."""
        self.ending_at = time.monotonic()
        with self.node.client() as raw:
            for start, end in self.ranges:
                raw.execute_command("CLUSTER", "ADDSLOTSRANGE", start, end)

    def end_later(self, seconds: float) -> threading.Thread:
        """End the outage from another thread after ``seconds``."""

        def later() -> None:
            time.sleep(seconds)
            self.end()

        thread = threading.Thread(target=later, name="outage-end", daemon=True)
        thread.start()
        return thread


@pytest.fixture
def topology() -> Iterator[LocalCluster]:
    """Three primaries without replicas: a cluster of this test's own (its slots are dropped)."""
    started = start_cluster(3, 0)
    try:
        yield started
    finally:
        started.stop()


def own_keys(outage: Outage, prefix: str, count: int) -> list[str]:
    """Return ``count`` keys (after ``prefix``) whose slots the outage's primary serves."""
    keys = [str(n) for n in range(10_000) if outage.serves(f"{prefix}{n}")]
    return keys[:count]


@pytest.mark.parametrize("face", FACES)
async def test_calls_made_while_a_primary_refuses_its_slots_succeed_once_it_serves_them(
    topology: LocalCluster, face: str, capsys: pytest.CaptureFixture[str]
) -> None:
    timeout_s = 5.0
    c = new_face(face, cluster_url(topology, timeout=f"{timeout_s:.0f}s"))
    outage = Outage(topology.primary_for_key("user:42"))
    await c.connect()
    try:
        items = {str(n): f"v{n}" for n in range(40)}  # over every primary
        assert any(outage.serves(f"user:{key}") for key in items)
        assert not all(outage.serves(f"user:{key}") for key in items)
        await c.set("user", "42", "Ada")
        await c.set_many("user", items)
        counter, added = own_keys(outage, "hits:", 2)
        calls = {
            "get": (lambda: c.get("user", "42"), "Ada"),
            "get_many": (lambda: c.get_many("user", list(items)), items),
            "set": (lambda: c.set("user", "43", "written while down"), None),
            "incr": (lambda: c.incr("hits", counter, 5), 5),  # ran once: 5, not 10
            "add": (lambda: c.add("hits", added, "first"), True),
        }
        took = {}
        for name, (call, expected) in calls.items():
            outage.begin(probe="user:42")
            restorer = outage.end_later(OUTAGE_S)
            started = time.monotonic()
            try:
                assert await call() == expected, name
                returned = time.monotonic()
            finally:
                restorer.join()
            took[name] = returned - started
            # Made while the slots were refused, it was answered once they were served again.
            assert outage.ending_at is not None, name
            assert outage.ending_at < returned, name
        assert await c.get("user", "43") == "written while down"
        assert await c.get("hits", counter) == "5"
        assert await c.get("hits", added) == "first"
        with capsys.disabled():
            print(
                f"\n[CLUSTERDOWN for {OUTAGE_S} s, {face} face] answered after "
                + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in took.items())
            )
    finally:
        await c.disconnect()


def refused_calls(c: Face) -> tuple[Callable[[], Awaitable[object]], ...]:
    """A read, a read over every primary and a write, each meeting the refused slots."""
    keys = [str(n) for n in range(40)]
    return (
        lambda: c.get("user", "42"),
        lambda: c.get_many("user", keys),
        lambda: c.set("user", "42", "Bea"),
    )


@pytest.mark.parametrize("face", FACES)
async def test_a_primary_that_keeps_refusing_fails_typed_once_the_timeout_is_spent(
    topology: LocalCluster, face: str
) -> None:
    timeout_s = 1.0
    c = new_face(face, cluster_url(topology, timeout=f"{timeout_s * 1000:.0f}"))
    outage = Outage(topology.primary_for_key("user:42"))
    await c.connect()
    try:
        await c.set("user", "42", "Ada")
        outage.begin(probe="user:42")
        for call in refused_calls(c):
            # Past the window in which an earlier call's failure makes calls fail fast.
            await asyncio.sleep(timeout_s + 0.1)
            with Stalls() as stalls:
                started = time.monotonic()
                with pytest.raises((RedisServerError, RedisConnectionError)) as raised:
                    await call()
                elapsed = time.monotonic() - started
            # Attempts went on for the whole timeout (not given up after `retries` of them),
            # and the call returned once it was spent (less the time this process was not
            # scheduled), saying what the cluster answered.
            assert elapsed >= timeout_s * 0.9, elapsed
            assert elapsed - stalls.seconds < timeout_s + MARGIN_S, (elapsed, stalls.seconds)
            message = str(raised.value)
            assert "CLUSTERDOWN" in message or "no node of the cluster serves" in message, message
        outage.end()
        assert await c.get("user", "42") == "Ada"  # the same cache serves again
    finally:
        await c.disconnect()


@pytest.mark.parametrize("face", FACES)
async def test_once_a_call_has_spent_its_timeout_on_refusals_the_next_ones_fail_fast(
    topology: LocalCluster, face: str
) -> None:
    """A shard down for good holds one call for the timeout, not every call after it."""
    timeout_s = 3.0
    c = new_face(face, cluster_url(topology, timeout=f"{timeout_s:.0f}s"))
    outage = Outage(topology.primary_for_key("user:42"))
    await c.connect()
    try:
        await c.set("user", "42", "Ada")
        outage.begin(probe="user:42")
        started = time.monotonic()
        with pytest.raises(RedisServerError):
            await c.get("user", "42")
        assert time.monotonic() - started >= timeout_s * 0.9  # the first rode it out
        for call in refused_calls(c):
            with Stalls() as stalls:
                started = time.monotonic()
                with pytest.raises(RedisServerError) as raised:
                    await call()
                elapsed = time.monotonic() - started
            # `retries` more attempts (tens of milliseconds), not the timeout again.
            assert elapsed - stalls.seconds < timeout_s / 2, (elapsed, stalls.seconds)
            assert "CLUSTERDOWN" in raised.value.server_message
        outage.end()
        assert await c.get("user", "42") == "Ada"  # back in service: answered at once
        # A refusal after the window is ridden out again.
        await asyncio.sleep(timeout_s + 0.1)
        outage.begin(probe="user:42")
        restorer = outage.end_later(OUTAGE_S)
        try:
            assert await c.get("user", "42") == "Ada"
        finally:
            restorer.join()
    finally:
        await c.disconnect()


@pytest.mark.parametrize("face", FACES)
async def test_a_primary_that_keeps_refusing_is_served_open_by_a_fail_open_cache(
    topology: LocalCluster, face: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A shard without a working primary is a store that is down, not a wrong command."""
    c = new_face(face, cluster_url(topology, timeout="300ms", fail_open="true"))
    outage = Outage(topology.primary_for_key("user:42"))
    await c.connect()
    try:
        await c.set("user", "42", "Ada")
        outage.begin(probe="user:42")
        with caplog.at_level(logging.WARNING):
            assert await c.get("user", "42", "fallback") == "fallback"  # a miss, not an error
            await c.set("user", "42", "Bea")  # a no-op, not an error
        assert "failed with RedisServerUnavailable" in caplog.text
        assert "CLUSTERDOWN" in caplog.text
        outage.end()
        assert await c.get("user", "42") == "Ada"  # the refused set changed nothing
    finally:
        await c.disconnect()


def test_a_refusal_that_outlasts_the_timeout_is_a_server_error_and_unavailable() -> None:
    """Code that catches ``RedisServerError`` still catches it; ``fail_open`` serves it open."""
    from redis.exceptions import MasterDownError, TryAgainError

    from pevensie_redis.errors import map_error

    for refusal in (
        ClusterDownError("CLUSTERDOWN The cluster is down"),
        TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
        MasterDownError("MASTERDOWN Link with MASTER is down"),
    ):
        error = map_error(refusal, "GET")
        assert isinstance(error, RedisServerUnavailable), refusal
        assert isinstance(error, RedisServerError)
        assert isinstance(error, DriverUnavailable)
        assert error.server_message == str(refusal)
