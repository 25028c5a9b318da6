"""The near cache's listener when the server starts refusing its channel (an ACL changed).

The near cache connects only when the server grants it key tracking and the
``__redis__:invalidate`` channel. An administrator can take the channel away
while it runs (``ACL SETUSER app resetchannels``): the server then drops the
listener's pipe, and every new attempt is refused with ``NOPERM``, for good.
What users rely on: reads go to the server meanwhile (no entry outlives the
channel that kept it coherent), and the refused listener does not reconnect
five times a second for as long as the cache is connected.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from reliability_support import ServerFactory, refused_subscriptions

from pevensie_redis.testing import RedisServer
from pevensie_test_support.faces import FACES, new_face

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.server_dependent,
    pytest.mark.filterwarnings("ignore:connect\\(\\) on a sync cache inside a running event loop"),
]

SECRET = "near-listener-secret"
BOUND_S = 20.0
"""Far more than anything here takes on the slowest machine."""


@pytest.fixture
def app_server(pevensie_redis_server_factory: ServerFactory) -> RedisServer:
    """A server whose user ``app`` may (for now) run every command, on every key and channel."""
    server = pevensie_redis_server_factory()
    with server.client() as raw:
        raw.execute_command(
            "ACL", "SETUSER", "app", "reset", "on", f">{SECRET}", "~*", "&*", "+@all"
        )
    return server


async def first_refusal(server: RedisServer) -> int:
    """Wait (bounded) until the listener has been refused once; return the count then."""
    deadline = time.monotonic() + BOUND_S
    while (count := refused_subscriptions(server)) == 0:
        assert time.monotonic() < deadline, "the listener never asked for its channel again"
        await asyncio.sleep(0.05)
    return count


@pytest.mark.parametrize("face", FACES)
async def test_a_listener_refused_its_channel_serves_nothing_stale_and_backs_off(
    app_server: RedisServer, face: str
) -> None:
    url = f"redis://app:{SECRET}@{app_server.host}:{app_server.port}/0?near_cache=true"
    c = new_face(face, url)
    await c.connect()
    try:
        await c.set("page", "k", "old", None)
        assert await c.get("page", "k") == "old"  # kept near
        with app_server.client() as raw:
            raw.execute_command("ACL", "SETUSER", "app", "resetchannels")
            # Valkey and Redis 7 drop the subscribed pipe themselves; this makes sure.
            raw.execute_command("CLIENT", "KILL", "USER", "app")
        first = await first_refusal(app_server)
        with app_server.client() as raw:
            raw.set("page:k", "new")  # no invalidation can reach the cache now
        assert await c.get("page", "k") == "new"  # read from the server, not the stale entry
        # A retry every 200 ms would be 15 more refusals in these 3 s; backing off from
        # 200 ms (doubling) asks at most 4 more times. A slow machine asks less, not more.
        await asyncio.sleep(3.0)
        assert refused_subscriptions(app_server) - first <= 6
        assert await c.get("page", "k") == "new"
    finally:
        started = time.monotonic()
        await c.disconnect()
        assert time.monotonic() - started < BOUND_S  # stopping the listener is not held up
