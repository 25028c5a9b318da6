"""Connecting through a Unix domain socket (``unix://``)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from pevensie_cache import cache
from pevensie_redis import RedisConfig
from pevensie_redis.testing.servers import RedisServer


def test_unix_socket_url_reaches_the_server(
    pevensie_redis_server_factory: Callable[..., RedisServer],
) -> None:
    # A short directory: socket paths are limited to about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="pvr-") as directory:
        socket_path = str(Path(directory) / "redis.sock")
        server = pevensie_redis_server_factory(
            ["--unixsocket", socket_path, "--unixsocketperm", "700"], provider="binary"
        )
        with cache.from_url(f"unix://{socket_path}?db=1") as c:
            c.set("unix", "k", "through the socket", ttl_seconds=60)
            assert c.get("unix", "k") == "through the socket"
            c.delete("unix", "k")
            assert c.get("unix", "k", None) is None
            c.set_many("unix", {"a": "1", "b": "2"}, ttl_seconds=60)
            assert c.get_many("unix", ["a", "b"]) == {"a": "1", "b": "2"}
        raw = server.client(db=1)
        try:
            assert raw.get("unix:a") == "1"
        finally:
            raw.close()


def test_unix_socket_config_field(
    pevensie_redis_server_factory: Callable[..., RedisServer],
) -> None:
    with tempfile.TemporaryDirectory(prefix="pvr-") as directory:
        socket_path = str(Path(directory) / "redis.sock")
        pevensie_redis_server_factory(["--unixsocket", socket_path], provider="binary")
        config = RedisConfig(unix_socket_path=socket_path)
        with cache.new(driver="redis", config=config) as c:
            c.set("unix", "field", "ok")
            assert c.get("unix", "field") == "ok"
