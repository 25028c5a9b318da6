"""Real Redis-compatible servers for tests, and the pytest fixtures built on them.

Start one by hand with :func:`start_server`, or use the fixtures of
:mod:`pevensie_redis.testing.pytest_plugin` (registered with pytest when
pevensie-redis is installed, inert until a test asks for one of them).
Importing this package imports neither redis-py, the Docker SDK nor
testcontainers.

Modules, lowest first (each imports only those above it):

- :mod:`~pevensie_redis.testing.errors`: the errors raised here;
- :mod:`~pevensie_redis.testing.binaries`: find a server binary, pick a free
  port, spawn and stop a process, wait until a server answers;
- :mod:`~pevensie_redis.testing.servers`: :class:`RedisServer`, the handle
  every server is used through, and the exit-time cleanup;
- :mod:`~pevensie_redis.testing.process`: :class:`ProcessServer`, a server
  binary as a child process;
- :mod:`~pevensie_redis.testing.tls`: throwaway TLS material and a TLS-only
  server process;
- :mod:`~pevensie_redis.testing.container`: the Docker engine probe and a
  server in a container;
- :mod:`~pevensie_redis.testing.providers`: which of those a run uses, and
  :func:`start_server`;
- :mod:`~pevensie_redis.testing.pytest_plugin`: the fixtures.
"""

from __future__ import annotations

from pevensie_redis.testing.binaries import ServerBinary, find_server_binary, free_port
from pevensie_redis.testing.container import ContainerServer
from pevensie_redis.testing.errors import (
    ServerNotControllable,
    ServerStartError,
    ServerUnavailable,
    TLSUnavailable,
)
from pevensie_redis.testing.process import ProcessServer
from pevensie_redis.testing.providers import (
    ExternalServer,
    ProviderChoice,
    choose_provider,
    start_server,
)
from pevensie_redis.testing.servers import RedisServer, stop_all
from pevensie_redis.testing.tls import TLSMaterial, TLSServer, make_tls_material

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
    "TLSMaterial",
    "TLSServer",
    "TLSUnavailable",
    "choose_provider",
    "find_server_binary",
    "free_port",
    "make_tls_material",
    "start_server",
    "stop_all",
]
