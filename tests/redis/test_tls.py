"""TLS (``rediss://``) against a real TLS-only server with a throwaway CA.

The server fixtures come from ``pevensie_redis.testing`` (trustme certificates;
skipped when no TLS-capable server binary exists, failed instead when
``PEVENSIE_TEST_REQUIRE_TLS=1``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from pevensie_cache import cache
from pevensie_redis import RedisConfig, RedisConnectionError, RedisTimeoutError
from pevensie_redis.testing.tls import TLSServer

# The outcome depends on the server: TLS is the server's (a binary built with it).
pytestmark = pytest.mark.server_dependent


def _config(server: TLSServer, **fields: object) -> RedisConfig:
    base = RedisConfig(host=server.host, port=server.port, tls=True, timeout=3000)
    return replace(base, **fields)  # type: ignore[arg-type]


def test_rediss_url_with_the_ca_verifies_the_server_and_works(
    pevensie_redis_tls_server: TLSServer,
) -> None:
    url = f"{pevensie_redis_tls_server.url}?tls_ca_file={pevensie_redis_tls_server.ca_file}"
    assert url.startswith("rediss://")
    with cache.from_url(url) as c:
        assert c.driver.config.tls_verify  # type: ignore[attr-defined]
        c.set("tls", "k", "over TLS", ttl_seconds=60)
        assert c.get("tls", "k") == "over TLS"
        assert c.get_many("tls", ["k", "absent"]) == {"k": "over TLS"}


def test_a_client_certificate_is_presented(pevensie_redis_tls_server: TLSServer) -> None:
    config = _config(
        pevensie_redis_tls_server,
        tls_ca_file=str(pevensie_redis_tls_server.ca_file),
        tls_cert_file=str(pevensie_redis_tls_server.client_cert_file),
        tls_key_file=str(pevensie_redis_tls_server.client_key_file),
    )
    with cache.new(driver="redis", config=config) as c:
        c.set("tls", "cert", "yes")
        assert c.get("tls", "cert") == "yes"


def test_a_server_that_requires_client_certificates(
    pevensie_redis_server_factory: Callable[..., TLSServer],
) -> None:
    server = pevensie_redis_server_factory(["--tls-auth-clients", "yes"], tls=True)
    with_cert = _config(
        server,
        tls_ca_file=str(server.ca_file),
        tls_cert_file=str(server.client_cert_file),
        tls_key_file=str(server.client_key_file),
    )
    with cache.new(driver="redis", config=with_cert) as c:
        c.set("tls", "mutual", "ok")
        assert c.get("tls", "mutual") == "ok"
    without_cert = _config(server, tls_ca_file=str(server.ca_file))
    with pytest.raises(RedisConnectionError):
        cache.new(driver="redis", config=without_cert).connect()


def test_an_untrusted_server_certificate_fails_with_a_clear_error(
    pevensie_redis_tls_server: TLSServer,
) -> None:
    config = _config(
        pevensie_redis_tls_server, tls_ca_file=str(pevensie_redis_tls_server.untrusted_ca_file)
    )
    c = cache.new(driver="redis", config=config)
    with pytest.raises(RedisConnectionError) as caught:
        c.connect()
    assert not c.connected
    message = str(caught.value)
    assert "certificate verification failed" in message
    assert "tls_ca_file" in message
    assert caught.value.__cause__ is not None


def test_the_system_trust_store_does_not_trust_a_private_ca(
    pevensie_redis_tls_server: TLSServer,
) -> None:
    with pytest.raises(RedisConnectionError, match="certificate verification failed"):
        cache.new(driver="redis", config=_config(pevensie_redis_tls_server)).connect()


def test_verification_can_be_turned_off_explicitly(pevensie_redis_tls_server: TLSServer) -> None:
    url = f"{pevensie_redis_tls_server.url}?ssl_cert_reqs=none"
    with cache.from_url(url) as c:
        assert not c.driver.config.tls_verify  # type: ignore[attr-defined]
        c.set("tls", "unverified", "ok")
        assert c.get("tls", "unverified") == "ok"


def test_plain_tcp_to_a_tls_port_fails_within_the_timeout(
    pevensie_redis_tls_server: TLSServer,
) -> None:
    config = RedisConfig(
        host=pevensie_redis_tls_server.host, port=pevensie_redis_tls_server.port, timeout=500
    )
    with pytest.raises((RedisConnectionError, RedisTimeoutError)):
        cache.new(driver="redis", config=config).connect()
