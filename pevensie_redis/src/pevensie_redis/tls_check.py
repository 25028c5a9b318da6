"""At ``connect()`` with TLS: tell a server that speaks plain Redis at once, not after a timeout.

A plain Redis server reads a TLS ClientHello as the start of an inline command
and waits for its end, so a ``rediss://`` URL pointed at it used to fail only
when the whole ``timeout`` ran out, with a ``RedisTimeoutError`` that says
nothing of TLS. Before the first connection of a TLS configuration, the driver
opens one TLS connection of its own; a server that has not answered the
handshake within :data:`HANDSHAKE_GRACE` seconds is asked ``PING`` in plain
text on a second connection, and one that answers it in RESP speaks plain
Redis: :class:`~pevensie_redis.RedisProtocolError`, naming the fix, at once.
A TLS server answers the handshake well within the grace (and is then never
sent plain text); anything else (refused, slow, not Redis) is left to the
driver's own connection to report.

It costs one TCP and TLS handshake per ``connect()`` of a TLS configuration,
nothing per command.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

from pevensie_redis.config import RedisConfig
from pevensie_redis.errors import RedisProtocolError

__all__ = ["HANDSHAKE_GRACE", "check_tls", "check_tls_async", "speaks_plain_redis"]

HANDSHAKE_GRACE = 0.3
"""Seconds a TLS server has to answer the handshake before the plain-text question is asked."""


def check_tls(config: RedisConfig) -> None:
    """Raise :class:`RedisProtocolError` when ``config`` asks for TLS and the server speaks plain.

    The first sentinel is checked for a Sentinel configuration, the server (or
    the Cluster's seed node) otherwise; a Unix socket or a configuration
    without TLS is not.
    """
    if not config.tls or config.unix_socket_path is not None:
        return
    host, port = config.sentinels[0] if config.sentinels else (config.host, config.port)
    if speaks_plain_redis(host, port, config.timeout_seconds):
        what = "sentinel" if config.sentinels else "server"
        scheme = "redis+sentinel://" if config.sentinels else "redis://"
        raise RedisProtocolError(
            f"connecting to {host}:{port}: the {what} there speaks Redis without TLS, but the "
            f"configuration asks for TLS (rediss://, tls=True): use {scheme}, or turn TLS on "
            "at the server"
        )


async def check_tls_async(config: RedisConfig) -> None:
    """:func:`check_tls`, in a worker thread (it runs once per ``connect()``)."""
    if config.tls and config.unix_socket_path is None:
        await asyncio.to_thread(check_tls, config)


def speaks_plain_redis(host: str, port: int, timeout: float) -> bool:
    """Return whether ``host:port`` stalls a TLS handshake and answers a plain ``PING`` in RESP."""
    deadline = time.monotonic() + timeout
    context = ssl.create_default_context()
    context.check_hostname = False  # only whether the server speaks TLS at all matters here
    context.verify_mode = ssl.CERT_NONE
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return False  # the driver's own connection says what is wrong
    try:
        with context.wrap_socket(raw, do_handshake_on_connect=False) as tls:
            tls.settimeout(min(HANDSHAKE_GRACE, timeout))
            try:
                tls.do_handshake()
                return False  # a TLS server
            except TimeoutError:
                pass  # stalled: maybe a plain server waiting for the end of a "command"
            except (ssl.SSLError, OSError):
                return False  # another TLS trouble: the driver's connection reports it
            return _answers_ping(host, port, max(0.05, deadline - time.monotonic()))
    finally:
        raw.close()


def _answers_ping(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as plain:
            plain.sendall(b"PING\r\n")
            answer = plain.recv(64)
    except OSError:
        return False
    # +PONG, or an error reply such as -NOAUTH: either way, RESP in plain text.
    return answer[:1] in (b"+", b"-") and answer.endswith(b"\r\n")
