"""Fixtures of the reliability suite.

Every fault test starts its own server through ``pevensie_redis_server_factory``
so killing or pausing it disturbs no other test; the factory stops it at
teardown, pass or fail.
"""

from __future__ import annotations

import pytest
from reliability_support import ServerFactory

from pevensie_redis.testing import RedisServer


@pytest.fixture
def private_server(pevensie_redis_server_factory: ServerFactory) -> RedisServer:
    """A server of this test's own, stopped at teardown."""
    return pevensie_redis_server_factory()
