"""Where and how to open a connection: the address, TLS, the handshake and the timeout.

No I/O happens here. Both faces open their pipes from an :class:`Endpoint`
(:func:`~pevensie_redis.pipe.open_pipe`,
:func:`~pevensie_redis.pipe_async.open_pipe`); the locators
(:mod:`~pevensie_redis.direct`, :mod:`~pevensie_redis.sentinel`, the Cluster's
slot map) say which endpoint a command goes to.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field, replace

from pevensie_redis.config import RedisConfig
from pevensie_redis.protocol.commands import pack_handshake

__all__ = ["Endpoint", "endpoint", "label", "sentinel_endpoint", "tls_context"]


@dataclass(frozen=True)
class Endpoint:
    """Where and how to open a pipe: the address, TLS, the handshake commands and the timeout."""

    label: str
    """``host:port`` or the socket path, for messages (never credentials)."""
    host: str | None = None
    port: int | None = None
    path: str | None = None
    """A Unix socket instead of ``host``/``port``."""
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    server_hostname: str | None = None
    """The name the server's certificate must carry (``None``: not checked)."""
    handshake: tuple[bytes, ...] = field(default=(), repr=False)
    """Packed commands sent first on every new pipe (``AUTH``, ``SELECT``, ``CLIENT SETNAME``)."""
    timeout: float = 5.0
    """Seconds allowed to connect, and for each reply."""


def label(host: str, port: int) -> str:
    """Return how messages name ``host:port`` (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def endpoint(config: RedisConfig, host: str | None = None, port: int | None = None) -> Endpoint:
    """Return the :class:`Endpoint` of the server ``config`` names (or of ``host:port``).

    The data nodes' credentials, database, client name, TLS settings and timeout.
    """
    handshake = tuple(
        pack_handshake(config.username, config.password, config.db, config.client_name)
    )
    if config.unix_socket_path is not None and host is None:
        return Endpoint(
            label=config.unix_socket_path,
            path=config.unix_socket_path,
            handshake=handshake,
            timeout=config.timeout_seconds,
        )
    host = config.host if host is None else host
    port = config.port if port is None else port
    return Endpoint(
        label=label(host, port),
        host=host,
        port=port,
        tls=tls_context(config) if config.tls else None,
        server_hostname=host if config.tls and config.tls_verify else None,
        handshake=handshake,
        timeout=config.timeout_seconds,
    )


def sentinel_endpoint(config: RedisConfig, host: str, port: int) -> Endpoint:
    """Return a sentinel's endpoint: the driver's timeout and TLS, the sentinels' credentials."""
    handshake = tuple(
        pack_handshake(config.sentinel_username, config.sentinel_password, 0, config.client_name)
    )
    return replace(endpoint(config, host, port), handshake=handshake)


def tls_context(config: RedisConfig) -> ssl.SSLContext:
    """Return the TLS settings of ``config`` as an ``ssl.SSLContext`` (verifying by default)."""
    context = ssl.create_default_context(cafile=config.tls_ca_file)
    if config.tls_cert_file is not None:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    if not config.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
