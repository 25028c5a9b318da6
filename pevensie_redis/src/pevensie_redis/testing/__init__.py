"""Real Redis-compatible servers for tests, and the pytest fixtures built on them.

Start one by hand with :func:`start_server`, or use the fixtures of
:mod:`pevensie_redis.testing.pytest_plugin` (loaded automatically by pytest
when pevensie-redis is installed). Importing this package imports neither
redis-py nor testcontainers.
"""

from __future__ import annotations

from pevensie_redis.testing.binaries import ServerBinary, find_server_binary, free_port
from pevensie_redis.testing.errors import (
    ServerNotControllable,
    ServerStartError,
    ServerUnavailable,
    TLSUnavailable,
)
from pevensie_redis.testing.servers import (
    ContainerServer,
    ExternalServer,
    ProcessServer,
    ProviderChoice,
    RedisServer,
    choose_provider,
    start_server,
    stop_all,
)

__all__ = [
    "ContainerServer",
    "ExternalServer",
    "ProcessServer",
    "ProviderChoice",
    "RedisServer",
    "ServerBinary",
    "ServerNotControllable",
    "ServerStartError",
    "ServerUnavailable",
    "TLSUnavailable",
    "choose_provider",
    "find_server_binary",
    "free_port",
    "start_server",
    "stop_all",
]
