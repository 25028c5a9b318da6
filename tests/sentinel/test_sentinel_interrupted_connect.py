"""A connect that fails through Sentinel, and is interrupted while it cleans up.

When ``connect()`` fails once it has opened connections, it closes each part
it opened: the replicas' channels, the primary's channel, the locator's pipes
to the sentinels. An exception raised into that clean-up (a signal handler's,
as Celery's soft time limit is) must not skip the parts after the one it
interrupted: nothing else holds them once ``connect()`` has failed.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pytest
from interrupt_support import Interrupt, interrupt_after

from pevensie_test_support import LocalSentinel
from pevensie_test_support.faces import FACES, new_face

pytestmark = [
    pytest.mark.server_dependent,
    pytest.mark.filterwarnings("ignore:connect\\(\\) on a sync cache inside a running event loop"),
]


def sentinel_url(topology: LocalSentinel, password: str) -> str:
    hosts = ",".join(f"{host}:{port}" for host, port in topology.sentinels)
    return f"redis+sentinel://:{password}@{hosts}/{topology.service_name}"


@pytest.mark.parametrize("face", FACES)
async def test_an_interrupt_in_a_failed_connects_clean_up_still_closes_the_sentinel_pipes(
    redis_sentinel: LocalSentinel, topology_password: str, face: str
) -> None:
    c = new_face(face, sentinel_url(redis_sentinel, topology_password))
    driver = c.cache.driver
    opened: list[Any] = []
    with ExitStack() as stack:

        def fail(channel: Any, locator: Any) -> None:
            # The primary's channel is open, and the sentinels were asked for it: the
            # driver's next step fails (as a refused near cache does), and the handler's
            # exception lands as the clean-up closes the channel.
            opened.extend(locator._pipes.values())
            stack.enter_context(interrupt_after(channel, "close"))
            raise RuntimeError("the next step failed")

        async def fail_async(channel: Any, locator: Any) -> None:
            fail(channel, locator)

        driver._layer = fail_async if face == "async" else fail
        with pytest.raises(Interrupt):
            await c.connect()
    assert not c.cache.connected
    assert opened, "the sentinels were never asked"
    assert all(pipe.closed for pipe in opened)  # the locator was closed all the same
