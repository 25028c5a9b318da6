"""The test Sentinel topology itself: what the Sentinel suites rely on really holds."""

from __future__ import annotations

import pytest

from pevensie_test_support import LocalSentinel

# It only reads the topology (roles, the sentinels' view): other tests may use it meanwhile.
pytestmark = pytest.mark.shares_topology


def test_sentinels_know_the_primary_and_the_replica(redis_sentinel: LocalSentinel) -> None:
    assert redis_sentinel.current_primary() is redis_sentinel.primary
    with redis_sentinel.replica.client() as client:
        assert client.execute_command("ROLE")[0] == "slave"
    assert len(redis_sentinel.sentinels) == 3
