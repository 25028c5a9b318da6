"""Errors raised by the test-server helpers (never by the driver itself)."""

from __future__ import annotations

__all__ = [
    "ServerNotControllable",
    "ServerStartError",
    "ServerUnavailable",
    "TLSUnavailable",
]


class ServerUnavailable(RuntimeError):
    """No provider can give a server here (no URL, no Docker engine, no binary)."""


class TLSUnavailable(ServerUnavailable):
    """No server binary with TLS support was found; TLS tests should be skipped."""


class ServerStartError(RuntimeError):
    """A server was started but did not answer in time; the message holds its log tail."""


class ServerNotControllable(RuntimeError):
    """The server was not started by these helpers, so it cannot be killed or paused.

    That is the case of a server named by ``PEVENSIE_TEST_REDIS_URL``.
    """
