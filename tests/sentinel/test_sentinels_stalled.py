"""Sentinels that stall or go away while a cache uses them: reads, reconnects and disconnect.

The sentinels are paused (``SIGSTOP``: they accept connections and never
answer) or killed by PID, on a topology of the test's own whose sentinels wait
15 s before calling a primary down (``steady_sentinel``), so no failover starts
meanwhile. Every test runs on both faces.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pevensie_redis.primary_check import PRIMARY_CHECK_INTERVAL, STALE_AFTER
from pevensie_redis.replica_choice import REFRESH_INTERVAL
from pevensie_redis.testing import RedisServer
from pevensie_test_support import LocalSentinel
from pevensie_test_support.faces import FACES, new_face, replicated
from pevensie_test_support.nodes import wait_until
from pevensie_test_support.stalls import Stalls

# The outcome depends on the server: Sentinel is the server's.
pytestmark = pytest.mark.server_dependent

TIMEOUT_MS = 5000
"""The driver's timeout (its default): for each reply, a sentinel's included."""


@pytest.fixture(params=FACES)
def face_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def url(topology: LocalSentinel, **query: str) -> str:
    hosts = ",".join(f"{host}:{port}" for host, port in topology.sentinels)
    options = {"timeout": str(TIMEOUT_MS), **query}
    return f"redis+sentinel://{hosts}/{topology.service_name}?" + "&".join(
        f"{name}={value}" for name, value in options.items()
    )


@contextmanager
def paused(nodes: list[RedisServer]) -> Iterator[None]:
    """Pause ``nodes`` (SIGSTOP) for the block; resume them however it ends."""
    stopped: list[RedisServer] = []
    try:
        for node in nodes:
            node.pause()
            stopped.append(node)
        yield
    finally:
        for node in stopped:
            node.resume()


def named_clients(node: RedisServer, name: str) -> int:
    """How many connections named ``name`` ``node`` has open."""
    with node.client() as raw:
        return sum(1 for client in raw.client_list() if client.get("name") == name)


async def test_a_replica_read_never_waits_for_stalled_sentinels(
    steady_sentinel: LocalSentinel, face_name: str
) -> None:
    """The read that finds the list of replicas due does not ask the sentinels itself.

    Asked on the read's path, three stalled sentinels held that read for three
    timeouts (15 s of a 5 s timeout) every :data:`REFRESH_INTERVAL` seconds.
    """
    topology = steady_sentinel
    c = new_face(face_name, url(topology, read_from_replicas="true"))
    await c.connect()
    try:
        await c.set("user", "1", "Ada")
        replicated(topology.primary)
        assert await c.get("user", "1") == "Ada"
        with paused(topology.sentinel_nodes):
            await asyncio.sleep(REFRESH_INTERVAL + 0.2)  # the driver's clock: the list is due
            slowest = 0.0
            for _ in range(5):
                started = time.monotonic()
                assert await c.get("user", "1") == "Ada"
                slowest = max(slowest, time.monotonic() - started)
            assert slowest < TIMEOUT_MS / 1000, (
                f"a read took {slowest:.1f} s with the sentinels stalled (timeout "
                f"{TIMEOUT_MS / 1000:g} s)"
            )
    finally:
        await c.disconnect()


async def wait_for_flight(flight: Any) -> None:
    """Wait until a background question (a task, or the sync face's thread) has ended."""
    if isinstance(flight, asyncio.Task):
        await asyncio.wait({flight})
    else:
        await asyncio.to_thread(flight._done.wait, None)


async def test_disconnect_during_a_question_to_the_sentinels_leaves_no_connection(
    steady_sentinel: LocalSentinel, face_name: str
) -> None:
    """A question under way when the cache disconnects opens nothing that outlives it.

    The first sentinel is paused, so the driver's periodic question hangs on
    it; ``disconnect()`` closes that connection, and the question went on to
    the next sentinel over a new connection, which nothing closed any more.
    """
    topology = steady_sentinel
    name = f"stalled-{face_name}-{time.monotonic_ns()}"
    c = new_face(face_name, url(topology, client_name=name))
    await c.connect()
    first, *others = topology.sentinel_nodes
    try:
        await c.set("user", "1", "Ada")
        channel = c.cache.driver._channel
        with paused([first]):
            await asyncio.sleep(PRIMARY_CHECK_INTERVAL + 0.2)  # the driver's clock: a check due
            assert await c.get("user", "1") == "Ada"  # starts the question, in the background
            asking = channel._asking
            assert asking is not None
            await c.disconnect()
            await wait_for_flight(asking)

            def none_left() -> bool:
                return sum(named_clients(node, name) for node in others) == 0

            # Polled: a closed connection leaves CLIENT LIST once the sentinel reads the close.
            what = "the disconnected cache's connections to the sentinels to close"
            await asyncio.to_thread(wait_until, none_left, 10, what)
    finally:
        if c.cache.connected:
            await c.disconnect()


def drop_connections(node: RedisServer, name: str) -> None:
    """Close the connections named ``name`` on ``node`` (as a server `timeout` or a blip does)."""
    with node.client() as raw:
        for client in raw.client_list():
            if client.get("name") == name:
                raw.client_kill_filter(_id=client["id"])


async def test_with_every_sentinel_gone_a_dropped_connection_reconnects_to_the_known_primary(
    steady_sentinel: LocalSentinel, face_name: str
) -> None:
    """No sentinel answers, the primary is up: the driver reconnects to the primary it knows.

    It kept serving that primary over the connections it had, but a new
    connection asked the sentinels first, so once the primary (or the network)
    dropped one, every call failed with ``no sentinel names a primary``
    although the primary was up. Once the sentinels are back, the driver asks
    them again.
    """
    topology = steady_sentinel
    name = f"gone-{face_name}-{time.monotonic_ns()}"
    c = new_face(face_name, url(topology, client_name=name, retries="1"))
    await c.connect()
    primary = topology.current_primary()
    try:
        await c.set("user", "1", "Ada")
        for node in topology.sentinel_nodes:
            node.kill()
        drop_connections(primary, name)
        assert named_clients(primary, name) == 0
        await c.set("user", "2", "Grace")
        assert await c.get("user", "1") == "Ada"
        assert await c.get("user", "2") == "Grace"
        with primary.client() as raw:
            assert raw.get("user:2") == "Grace"

        for node in topology.sentinel_nodes:
            node.restart()

        def asked_again() -> bool:
            return sum(named_clients(node, name) for node in topology.sentinel_nodes) > 0

        async def use_until_asked() -> None:
            # The driver asks about once a second while used: polled, with calls.
            deadline = time.monotonic() + 10 * PRIMARY_CHECK_INTERVAL
            while not await asyncio.to_thread(asked_again):
                assert time.monotonic() < deadline, "the driver never asked the sentinels again"
                assert await c.get("user", "2") == "Grace"
                await asyncio.sleep(0.05)

        await use_until_asked()
    finally:
        await c.disconnect()


async def test_after_an_idle_spell_stalled_sentinels_hold_a_command_one_timeout_at_most(
    steady_sentinel: LocalSentinel, face_name: str
) -> None:
    """The wait for the sentinels' answer after an idle spell is bounded by the timeout.

    After :data:`STALE_AFTER` seconds without a command, the next commands
    wait for the sentinels to confirm the primary (a write sent at once could
    go to a former primary and be lost). With every sentinel stalled they wait
    one timeout, then the primary the driver knows serves them.
    """
    topology = steady_sentinel
    timeout = 1.0
    c = new_face(face_name, url(topology, timeout=str(int(timeout * 1000))))
    await c.connect()
    try:
        await c.set("user", "1", "Ada")
        with paused(topology.sentinel_nodes):
            await asyncio.sleep(STALE_AFTER + 0.2)  # the driver's clock: an idle spell
            with Stalls() as stalls:
                started = time.monotonic()
                await c.set("user", "2", "Grace")
                took = time.monotonic() - started
            # One timeout of waiting, then the SET itself; the second's margin is for load
            # (less the time this process was not scheduled at all).
            assert took - stalls.seconds < 2 * timeout, (
                f"the first command after the idle spell took {took:.2f} s "
                f"({stalls.seconds:.2f} s of them stalled)"
            )
            assert await c.get("user", "2") == "Grace"
        with topology.current_primary().client() as raw:
            assert raw.get("user:2") == "Grace"
    finally:
        await c.disconnect()


async def test_with_every_sentinel_stalled_a_reconnect_waits_one_timeout_for_them_at_most(
    steady_sentinel: LocalSentinel, face_name: str
) -> None:
    """A new connection asks the sentinels, but waits one timeout for them in all, not one each.

    Each stalled sentinel took a whole timeout in turn: with three, the call
    that had to reconnect took three timeouts (3.0 s of a 1 s timeout and
    one retry, whose bound is 2 s). Once a question has waited one timeout
    with no answer, the driver goes to the primary it knows, and the stalled
    sentinels are asked last next time.
    """
    topology = steady_sentinel
    timeout = 1.0
    name = f"stalled-reconnect-{face_name}-{time.monotonic_ns()}"
    query = {"timeout": str(int(timeout * 1000)), "retries": "1", "client_name": name}
    c = new_face(face_name, url(topology, **query))
    await c.connect()
    primary = topology.current_primary()
    try:
        await c.set("user", "1", "Ada")
        with paused(topology.sentinel_nodes):
            drop_connections(primary, name)
            with Stalls() as stalls:
                started = time.monotonic()
                await c.set("user", "2", "Grace")
                took = time.monotonic() - started - stalls.seconds
            # One timeout waiting for the sentinels, then the connect and the SET; where the
            # call also meets the driver's own question (RELIABILITY.md's bound: a timeout
            # per question, two at most) a second one. One timeout per sentinel in turn,
            # the defect, took three (3.01 s).
            assert took < 2.5 * timeout, f"the reconnecting call took {took:.2f} s, unstalled"
        with primary.client() as raw:
            assert raw.get("user:2") == "Grace"
    finally:
        await c.disconnect()
