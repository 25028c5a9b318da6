"""The single-server mode's locator: always the server the configuration names.

This module is the source of the sync face too: ``direct.py`` is generated
from it by ``.ci/unasync.py``. Edit this file, then run ``nox -s generate``.

``host``/``port`` (over TCP, with TLS when ``tls`` is on) or
``unix_socket_path``; see :func:`~pevensie_redis.endpoint.endpoint`. The
other locators are :mod:`~pevensie_redis.sentinel` and the Cluster's slot map.
"""

from __future__ import annotations

from pevensie_redis.config import RedisConfig
from pevensie_redis.endpoint import Endpoint, endpoint

__all__ = ["Direct"]


class Direct:
    """Names the one server of a configuration without ``sentinels`` or ``cluster``."""

    def __init__(self, config: RedisConfig) -> None:
        """Name the server ``config`` gives (nothing connects)."""
        self._endpoint = endpoint(config)

    def __repr__(self) -> str:
        return f"<Direct {self._endpoint.label}>"

    async def primary(self) -> Endpoint:
        """Return the server's endpoint."""
        return self._endpoint

    async def close(self) -> None:
        """Nothing to close: this locator holds no connection."""
