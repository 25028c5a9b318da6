"""What users of django-redis, Flask-Caching and dogpile.cache reach for, on our backends.

Django: django-redis's extras (``ttl``, ``keys``, ``iter_keys``,
``delete_pattern``, ``lock``) and ``OPTIONS["IGNORE_EXCEPTIONS"]``; each
framework's form of fail-open (an unreachable server reads as a miss and
writes nothing); and errors about unknown options that list the backend's own.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import django_support
import pytest

django_support.configure()

from dogpile.cache import make_region  # noqa: E402
from flask import Flask  # noqa: E402
from flask_caching import Cache  # noqa: E402

from pevensie_cache import (  # noqa: E402
    ConfigError,
    DriverError,
    LockNotHeld,
    LockTimeout,
    PevensieCacheError,
)
from pevensie_cache.contrib.django import PevensieCache as DjangoBackend  # noqa: E402

RESOURCE = "extras"


@pytest.fixture
def closed_url() -> str:
    """A Redis URL where nothing listens: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0?timeout=300ms&retries=0"


@pytest.fixture
def django_cache(pevensie_url: str) -> Iterator[DjangoBackend]:
    made = DjangoBackend(pevensie_url, {"OPTIONS": {"resource_type": RESOURCE}})
    made.clear()
    yield made
    made.clear()


def test_ttl_says_seconds_left_none_forever_and_zero_when_absent(
    django_cache: DjangoBackend,
) -> None:
    django_cache.set("short", "x", timeout=100)
    django_cache.set("forever", "x", timeout=None)
    assert 99 <= (django_cache.ttl("short") or 0) <= 100
    assert django_cache.ttl("forever") is None
    assert django_cache.ttl("absent") == 0


def test_keys_and_iter_keys_match_globs_over_the_backends_keys(
    django_cache: DjangoBackend,
) -> None:
    for key in ("user:1", "user:2", "team:1", "user:3"):
        django_cache.set(key, "x")
    django_cache.set("user:9", "other version", version=2)
    assert sorted(django_cache.keys("user:*")) == ["user:1", "user:2", "user:3"]
    assert sorted(django_cache.iter_keys("*:1", itersize=2)) == ["team:1", "user:1"]
    assert list(django_cache.iter_keys("user:?", version=2)) == ["user:9"]
    assert django_cache.keys("nobody*") == []


def test_a_glob_character_in_the_key_prefix_is_taken_literally(pevensie_url: str) -> None:
    starred = DjangoBackend(
        pevensie_url, {"KEY_PREFIX": "a*", "OPTIONS": {"resource_type": RESOURCE}}
    )
    plain = DjangoBackend(
        pevensie_url, {"KEY_PREFIX": "ab", "OPTIONS": {"resource_type": RESOURCE}}
    )
    starred.clear()
    starred.set("k", "starred")
    plain.set("k", "plain")
    assert starred.keys("*") == ["k"]
    assert starred.delete_pattern("*") == 1
    assert plain.get("k") == "plain"
    starred.clear()


def test_delete_pattern_deletes_the_matching_keys_and_counts_them(
    django_cache: DjangoBackend,
) -> None:
    django_cache.set_many({f"session:{i}": i for i in range(2500)})
    django_cache.set("user:1", "kept")
    assert django_cache.delete_pattern("session:*", itersize=500) == 2500
    assert django_cache.keys("*") == ["user:1"]
    assert django_cache.delete_pattern("session:*") == 0


def test_lock_is_held_by_one_holder_at_a_time(django_cache: DjangoBackend) -> None:
    with django_cache.lock("job", timeout=10) as held:
        assert held.owned()
        rival = django_cache.lock("job", blocking=False)
        assert rival.acquire() is False
        assert rival.locked()
        assert django_cache.lock("job", blocking_timeout=0.2).acquire() is False
        held.extend(30)
    assert rival.locked() is False
    assert rival.acquire() is True
    rival.release()
    with pytest.raises(LockNotHeld):
        rival.extend(5)


def test_a_waiting_lock_gets_it_when_the_holder_releases(django_cache: DjangoBackend) -> None:
    holder = django_cache.lock("job", timeout=10)
    assert holder.acquire()
    timer = threading.Timer(0.3, holder.release)
    timer.start()
    try:
        with django_cache.lock("job", blocking_timeout=10):
            pass
    finally:
        timer.join()
    with django_cache.lock("job"):
        rival = django_cache.lock("job", blocking=False)
        with pytest.raises(LockTimeout):
            rival.__enter__()


def test_ignore_exceptions_serves_an_unreachable_server_as_misses(closed_url: str) -> None:
    django = DjangoBackend(
        closed_url, {"OPTIONS": {"resource_type": RESOURCE, "IGNORE_EXCEPTIONS": True}}
    )
    assert django.get("k", "fallback") == "fallback"
    django.set("k", "x")
    assert django.has_key("k") is False
    assert django.delete("k") is False
    assert django.get_many(["a", "b"]) == {}
    strict = DjangoBackend(closed_url, {"OPTIONS": {"resource_type": "extras-strict"}})
    with pytest.raises(DriverError):
        strict.get("k")


def test_ignore_exceptions_must_be_a_bool_and_agree_with_fail_open(closed_url: str) -> None:
    with pytest.raises(ConfigError, match="IGNORE_EXCEPTIONS must be True or False"):
        DjangoBackend(closed_url, {"OPTIONS": {"IGNORE_EXCEPTIONS": "yes"}})
    with pytest.raises(ConfigError, match="disagree"):
        DjangoBackend(closed_url, {"OPTIONS": {"IGNORE_EXCEPTIONS": True, "fail_open": False}})


def test_flask_caching_fails_open_with_its_setting(closed_url: str) -> None:
    app = Flask(__name__)
    app.config.update(
        CACHE_TYPE="pevensie_cache.contrib.flask.PevensieCache",
        CACHE_PEVENSIE_URL=closed_url,
        CACHE_PEVENSIE_FAIL_OPEN=True,
        CACHE_OPTIONS={"resource_type": "flask-fail-open"},
    )
    cache = Cache(app)
    with app.app_context():
        assert cache.get("k") is None
        assert cache.set("k", "x") is True
        assert cache.has("k") is False
        assert cache.cache.inc("hits") == 1


def test_dogpile_fails_open_with_its_argument_and_runs_the_creator(closed_url: str) -> None:
    region = make_region().configure(
        "pevensie", arguments={"url": closed_url, "resource_type": "dogpile-fo", "fail_open": True}
    )
    calls: list[int] = []

    def create() -> str:
        calls.append(1)
        return "made"

    assert region.get_or_create("k", create) == "made"
    assert region.get_or_create("k", create) == "made"  # nothing was stored: made again
    assert calls == [1, 1]


@pytest.mark.parametrize(
    ("build", "listed"),
    [
        (
            lambda: DjangoBackend("memory://", {"OPTIONS": {"resource_typ": "x"}}),
            "Django backend options: resource_type, IGNORE_EXCEPTIONS",
        ),
        (
            lambda: Cache(
                _flask(CACHE_OPTIONS={"resource_typo": "x"}),
            ),
            "Flask-Caching backend options: resource_type, key_prefix",
        ),
        (
            lambda: make_region().configure(
                "pevensie", arguments={"url": "memory://", "distributed_lok": True}
            ),
            "dogpile backend options: url, resource_type, ttl_seconds, distributed_lock",
        ),
    ],
)
def test_an_unknown_option_lists_the_backends_own_too(build: Any, listed: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build()
    message = str(caught.value)
    assert listed in message
    assert "cache options: namespace, fail_open" in message
    assert "did you mean" in message


def _flask(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        CACHE_TYPE="pevensie_cache.contrib.flask.PevensieCache",
        CACHE_PEVENSIE_URL="memory://",
        **config,
    )
    return app


def _blocks(path: str) -> list[str]:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / path).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_readmes_django_settings_build_a_working_backend(pevensie_redis_url: str) -> None:
    block = next(b for b in _blocks("README.md") if "CACHES = {" in b)
    settings: dict[str, Any] = {}
    exec(block, settings)
    params = dict(settings["CACHES"]["default"])
    location = params.pop("LOCATION")
    assert location == "redis://localhost:6379/0"
    made = DjangoBackend(pevensie_redis_url, params)
    made.set("greeting", "hello", timeout=60)
    assert made.get("greeting") == "hello"


def test_the_flask_recipe_of_the_docs_runs_as_written(pevensie_redis_url: str) -> None:
    block = next(b for b in _blocks("docs/guide/frameworks.md") if "Flask(__name__)" in b)
    port = pevensie_redis_url.rsplit(":", 1)[1].split("/")[0]
    namespace: dict[str, Any] = {"__name__": "recipe"}
    exec(block.replace("6379", port), namespace)
    client = namespace["app"].test_client()
    first = client.get("/users/7")
    assert first.status_code == 200
    assert first.get_json() == {"id": "7", "name": "Ada"}
    assert namespace["c"].get("user", "7") == '{"id":"7","name":"Ada"}'
    namespace["c"].disconnect()


def test_key_globs_match_as_redis_patterns_do(django_cache: DjangoBackend) -> None:
    # fnmatch once chose other keys: it negates with [!...] and has no escape, so
    # delete_pattern("u[^a]") deleted "ua". (glob_matches is checked against the
    # server's own KEYS in tests/redis/test_glob_patterns.py.)
    django_cache.set_many({"ua": 1, "ub": 2, "u*": 3, "u!": 4})
    assert sorted(django_cache.keys("u[^a]")) == ["u!", "u*", "ub"]
    assert sorted(django_cache.keys("u[!a]")) == ["u!", "ua"]
    assert django_cache.keys("u\\*") == ["u*"]
    assert django_cache.delete_pattern("u[^a!*]") == 1
    assert sorted(django_cache.keys("u*")) == ["u!", "u*", "ua"]


def test_extend_adds_to_the_lease_unless_told_to_replace_it(django_cache: DjangoBackend) -> None:
    # As django-redis's (redis-py's) lock: extend(t) adds t to the time left; it once
    # started a new lease of t, so extending by a little cut a long lease short.
    held = django_cache.lock("lease", timeout=1.0)
    assert held.acquire()
    time.sleep(0.2)
    held.extend(1.0)  # the lease now ends at about 2.0 s (a new lease would end at 1.2 s)
    time.sleep(1.4 - 0.2)
    assert django_cache.lock("lease", blocking=False).acquire() is False
    held.extend(0.2, replace_ttl=True)  # now 0.2 s from now
    time.sleep(0.6)
    rival = django_cache.lock("lease", blocking=False)
    assert rival.acquire() is True
    rival.release()


def test_locked_is_false_once_the_holders_lease_lapsed(django_cache: DjangoBackend) -> None:
    held = django_cache.lock("lapse", timeout=0.3)
    assert held.acquire()
    assert held.locked()
    time.sleep(0.6)
    assert held.locked() is False  # it once answered from memory: True
    taker = django_cache.lock("lapse", blocking=False)
    assert taker.acquire() is True
    taker.release()


def test_ignore_exceptions_serves_the_extras_as_django_redis_does(closed_url: str) -> None:
    django = DjangoBackend(
        closed_url, {"OPTIONS": {"resource_type": RESOURCE, "IGNORE_EXCEPTIONS": True}}
    )
    assert django.keys("*") is None
    assert list(django.iter_keys("*")) == []
    assert django.delete_pattern("*") is None
    strict = DjangoBackend(closed_url, {"OPTIONS": {"resource_type": "extras-strict"}})
    with pytest.raises(PevensieCacheError) as caught:
        strict.keys("*")
    assert "not connected" in str(caught.value) or isinstance(caught.value, DriverError)
    assert "sync face" not in str(caught.value)


def test_the_extras_fail_open_as_the_cache_does_however_it_was_told(closed_url: str) -> None:
    # The flag was once read with bool() from OPTIONS alone: fail_open=true in the URL
    # made get() fail open but keys() raise, and "false" in OPTIONS made keys() fail open.
    by_url = DjangoBackend(f"{closed_url}&fail_open=true", {"OPTIONS": {"resource_type": RESOURCE}})
    assert by_url.get("k", "fallback") == "fallback"
    assert by_url.keys("*") is None
    as_text = DjangoBackend(
        closed_url, {"OPTIONS": {"resource_type": "extras-text", "fail_open": "false"}}
    )
    with pytest.raises(PevensieCacheError):
        as_text.keys("*")
