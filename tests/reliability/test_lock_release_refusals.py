"""Lease waiters when the server refuses the lock-release channel (an ACL without it).

A user set up as ``~* +@all`` has no channel at all on Redis 7 and Valkey
(``acl-pubsub-default`` is ``resetchannels``): its ``SUBSCRIBE`` to the
lock-release channel is refused with ``NOPERM``, for good. The holder's
release still works (the script's ``PUBLISH`` is allowed to fail) and the
waiters are meant to poll. What users rely on: a ``get_or_set(..., lock=True)``
is not held up by the refused subscription (it used to wait the whole
``timeout`` for it, on every call), and the refused subscription is not tried
again five times a second for as long as the cache is connected.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from reliability_support import ServerFactory, refused_subscriptions

from pevensie_redis.testing import RedisServer
from pevensie_test_support.faces import FACES, new_face

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.server_dependent,
    # The sync face is driven from this test's loop (its calls that wait, from a thread).
    pytest.mark.filterwarnings("ignore:connect\\(\\) on a sync cache inside a running event loop"),
]

SECRET = "lock-release-secret"
TIMEOUT_MS = 60_000
"""The driver timeout: a call held up by the refused subscription takes a minute."""
BOUND_S = 20.0
"""Far more than a call takes on the slowest machine, far less than the timeout."""


@pytest.fixture
def no_channels(pevensie_redis_server_factory: ServerFactory) -> RedisServer:
    """A server whose user ``app`` may run every command on every key, and use no channel."""
    server = pevensie_redis_server_factory()
    with server.client() as raw:
        raw.execute_command(
            "ACL", "SETUSER", "app", "reset", "on", f">{SECRET}", "~*", "resetchannels", "+@all"
        )
    return server


def url_of(server: RedisServer) -> str:
    return f"redis://app:{SECRET}@{server.host}:{server.port}/0"


async def within(bound: float, face: str, call: Any) -> Any:
    """Return ``call()``'s result (awaited on the async face), failing if it takes ``bound``."""
    if face == "async":
        return await asyncio.wait_for(call(), bound)
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    thread.start()
    await asyncio.to_thread(thread.join, bound)
    assert not thread.is_alive(), f"the call took more than {bound:g} s"
    return outcome[0]


@pytest.mark.parametrize("face", FACES)
async def test_a_refused_lock_release_channel_holds_no_locked_get_or_set_up(
    no_channels: RedisServer, face: str
) -> None:
    c = new_face(face, url_of(no_channels), timeout=TIMEOUT_MS)
    await c.connect()
    try:
        for n in range(3):
            value = await within(
                BOUND_S,
                face,
                lambda n=n: c.cache.get_or_set("page", f"free-{n}", lambda: "loaded", lock=True),
            )
            assert value == "loaded"
        # A waiter too: the lease is held elsewhere and expires; the waiter polls for it.
        assert await c.acquire_lock("page", "held", "elsewhere", 0.3)
        value = await within(
            BOUND_S, face, lambda: c.cache.get_or_set("page", "held", lambda: "mine", lock=True)
        )
        assert value == "mine"
        assert refused_subscriptions(no_channels) >= 1  # the channel was asked for, and refused
    finally:
        await c.disconnect()


@pytest.mark.parametrize("face", FACES)
async def test_a_refused_lock_release_channel_is_asked_for_again_less_and_less_often(
    no_channels: RedisServer, face: str
) -> None:
    c = new_face(face, url_of(no_channels), timeout=TIMEOUT_MS)
    await c.connect()
    try:
        await within(BOUND_S, face, lambda: c.cache.get_or_set("page", "k", lambda: "v", lock=True))
        first = refused_subscriptions(no_channels)
        assert first >= 1
        # A retry every 200 ms would be 15 more refusals in these 3 s; backing off from
        # 200 ms (doubling) asks at most 4 more times. A slow machine asks less, not more.
        await asyncio.sleep(3.0)
        assert refused_subscriptions(no_channels) - first <= 6
    finally:
        started = time.monotonic()
        await c.disconnect()
        assert time.monotonic() - started < BOUND_S  # stopping the subscriber is not held up
