"""PevensieCache as a Flask-Caching cache type: configured from the Flask config, used
through ``@cache.cached``, ``@cache.memoize``, ``delete_memoized`` and ``clear``."""

from __future__ import annotations

import base64
import pickle
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask_caching import Cache

from pevensie_cache import ConfigError
from pevensie_cache.contrib.flask import PevensieCache
from pevensie_redis.testing.servers import RedisServer

RESOURCE = "flask-own"
CACHE_TYPE = "pevensie_cache.contrib.flask.PevensieCache"


def make_app(url: str, **config: Any) -> tuple[Flask, Cache]:
    app = Flask(__name__)
    settings: dict[str, Any] = {
        "CACHE_TYPE": CACHE_TYPE,
        "CACHE_PEVENSIE_URL": url,
        "CACHE_OPTIONS": {"resource_type": RESOURCE},
        "CACHE_DEFAULT_TIMEOUT": 60,
    }
    app.config.update({**settings, **config})
    return app, Cache(app)


@pytest.fixture
def app_cache(pevensie_url: str) -> Iterator[tuple[Flask, Cache]]:
    app, cache = make_app(pevensie_url)
    with app.app_context():
        cache.clear()
    yield app, cache
    with app.app_context():
        cache.clear()


def backend_of(app: Flask, cache: Cache) -> PevensieCache:
    made = app.extensions["cache"][cache]
    assert isinstance(made, PevensieCache)
    return made


def test_the_config_builds_the_backend(app_cache: tuple[Flask, Cache]) -> None:
    app, cache = app_cache
    made = backend_of(app, cache)
    assert (made.resource_type, made.key_prefix, made.default_timeout) == (
        RESOURCE,
        "flask_cache_",  # Flask-Caching's default CACHE_KEY_PREFIX
        60,
    )


def test_cached_view(app_cache: tuple[Flask, Cache]) -> None:
    app, cache = app_cache
    calls: list[int] = []

    @app.route("/page")
    @cache.cached(timeout=30)
    def page() -> str:
        calls.append(1)
        return f"page {len(calls)}"

    client = app.test_client()
    assert client.get("/page").data == b"page 1"
    assert client.get("/page").data == b"page 1"
    assert len(calls) == 1
    with app.app_context():
        cache.clear()
    assert client.get("/page").data == b"page 2"


def test_memoize_and_delete_memoized(app_cache: tuple[Flask, Cache]) -> None:
    app, cache = app_cache
    calls: list[tuple[int, int]] = []

    @cache.memoize(timeout=30)
    def add(a: int, b: int) -> dict[str, int]:
        calls.append((a, b))
        return {"sum": a + b}

    with app.app_context():
        assert add(1, 2) == {"sum": 3}
        assert add(1, 2) == {"sum": 3}
        assert add(2, 2) == {"sum": 4}
        assert calls == [(1, 2), (2, 2)]
        cache.delete_memoized(add, 1, 2)
        assert add(1, 2) == {"sum": 3}
        assert add(2, 2) == {"sum": 4}
        assert calls == [(1, 2), (2, 2), (1, 2)]
        cache.delete_memoized(add)  # every argument list
        add(1, 2)
        add(2, 2)
        assert len(calls) == 5


def test_values_on_the_server_and_clear_scope(
    pevensie_redis_url: str, pevensie_redis_server: RedisServer
) -> None:
    app, cache = make_app(pevensie_redis_url)
    raw = pevensie_redis_server.client(decode_responses=False)
    try:
        with app.app_context():
            cache.set("n", 41)
            cache.set("obj", {"a": [1, 2]})
            assert raw.get(f"{RESOURCE}:flask_cache_n") == b"41"
            stored = raw.get(f"{RESOURCE}:flask_cache_obj")
            assert pickle.loads(base64.b64decode(stored)) == {"a": [1, 2]}
            raw.set("not-pevensie", "keep me")
            raw.set("other:flask_cache_n", "7")
            cache.clear()
            assert cache.get("n") is None
            assert raw.get("not-pevensie") == b"keep me"
            assert raw.get("other:flask_cache_n") == b"7"
    finally:
        raw.delete("not-pevensie", "other:flask_cache_n")
        raw.close()


def test_timeouts(pevensie_redis_url: str, pevensie_redis_server: RedisServer) -> None:
    app, cache = make_app(pevensie_redis_url)
    raw = pevensie_redis_server.client()
    key = f"{RESOURCE}:flask_cache_k"
    try:
        with app.app_context():
            cache.set("k", "v", timeout=0)
            assert raw.ttl(key) == -1  # 0: forever, as in Flask-Caching
            cache.set("k", "v")
            assert 55 <= raw.ttl(key) <= 60  # the default, CACHE_DEFAULT_TIMEOUT
            cache.set("k", "v", timeout=timedelta(milliseconds=200))
            assert raw.ttl(key) == 1  # rounded up
            cache.set("k", "v", timeout=-1)
            assert raw.exists(key) == 0
            assert cache.add("k", "v", timeout=-1) is True
            assert raw.exists(key) == 0
    finally:
        with app.app_context():
            cache.clear()
        raw.close()


def test_inc_is_atomic_across_threads(app_cache: tuple[Flask, Cache]) -> None:
    app, cache = app_cache
    made = backend_of(app, cache)

    def work() -> None:
        for _ in range(200):
            made.inc("hits")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made.get("hits") == 1600
    assert made.dec("hits", 600) == 1000


def test_a_missing_url_is_a_config_error() -> None:
    app = Flask(__name__)
    app.config.update(CACHE_TYPE=CACHE_TYPE)
    with pytest.raises(ConfigError, match="CACHE_PEVENSIE_URL"):
        Cache(app)


def test_driver_options_come_from_cache_options(pevensie_redis_url: str) -> None:
    app, cache = make_app(
        pevensie_redis_url,
        CACHE_OPTIONS={"resource_type": RESOURCE, "timeout": "2s", "retries": 1},
    )
    with app.app_context():
        cache.set("k", "v")
        assert cache.get("k") == "v"
        cache.clear()
    with pytest.raises(ConfigError, match="retrys"):
        make_app(pevensie_redis_url, CACHE_OPTIONS={"retrys": 1})
