"""PevensieCache as a Django backend: what Django's own suite does not pin down.

How values and timeouts land on the server, ``clear()``'s scope, the settings,
the async methods (native, no thread hop, one store with the sync face), and the
cache middleware and template fragment cache working through it.
"""

from __future__ import annotations

import asyncio
import base64
import pickle
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import django_support
import pytest

django_support.configure()

from django.core.cache import caches  # noqa: E402 - Django is configured by the line above
from django.core.cache.backends import base as django_cache_base  # noqa: E402
from django.core.cache.utils import make_template_fragment_key  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.middleware.cache import FetchFromCacheMiddleware, UpdateCacheMiddleware  # noqa: E402
from django.template import Context, Template  # noqa: E402
from django.test import RequestFactory, override_settings  # noqa: E402
from django.views.decorators.cache import cache_page  # noqa: E402

from pevensie_cache import ConfigError  # noqa: E402
from pevensie_cache.contrib.django import PevensieCache  # noqa: E402
from pevensie_cache.contrib.shared import aclose_all  # noqa: E402
from pevensie_redis.testing.servers import RedisServer  # noqa: E402

RESOURCE = "django-own"


def backend(url: str, **params: Any) -> PevensieCache:
    """Build the backend as Django does: ``backend_cls(LOCATION, params)``."""
    params.setdefault("OPTIONS", {"resource_type": RESOURCE})
    return PevensieCache(url, params)


@pytest.fixture
def django_cache(pevensie_url: str) -> Iterator[PevensieCache]:
    """A backend of the resource type ``django-own``, cleared before and after."""
    made = backend(pevensie_url)
    made.clear()
    yield made
    made.clear()


@pytest.fixture
def raw(pevensie_redis_server: RedisServer) -> Iterator[Any]:
    """A raw redis-py client of the shared server, to see what the backend stored."""
    client = pevensie_redis_server.client(decode_responses=False)
    yield client
    client.close()


@pytest.fixture
def redis_cache(pevensie_redis_url: str) -> Iterator[PevensieCache]:
    made = backend(pevensie_redis_url)
    made.clear()
    yield made
    made.clear()


# -- values and timeouts on the server ---------------------------------------------------


def test_integers_are_stored_as_plain_integers_so_incr_runs_on_the_server(
    redis_cache: PevensieCache, raw: Any
) -> None:
    redis_cache.set("hits", 41)
    assert raw.get(f"{RESOURCE}::1:hits") == b"41"
    assert raw.incr(f"{RESOURCE}::1:hits") == 42  # the server's own INCR understands it
    assert redis_cache.incr("hits", 8) == 50
    assert redis_cache.get("hits") == 50


def test_other_values_are_pickled_with_the_highest_protocol(
    redis_cache: PevensieCache, raw: Any
) -> None:
    value = {"name": "Ada", "tags": ("x", 1), "flag": True}
    redis_cache.set("user", value)
    stored = raw.get(f"{RESOURCE}::1:user")
    assert pickle.loads(base64.b64decode(stored)) == value
    assert base64.b64decode(stored)[:2] == bytes([0x80, pickle.HIGHEST_PROTOCOL])
    redis_cache.set("flag", True)  # a bool is not an int here, as in Django's backend
    assert redis_cache.get("flag") is True


def test_big_integers_round_trip(django_cache: PevensieCache) -> None:
    for number in (2**63 - 1, -(2**63), 2**64, -(2**80), 0, -1):
        django_cache.set("n", number)
        assert django_cache.get("n") == number


def test_timeouts_none_zero_negative_and_fractions(redis_cache: PevensieCache, raw: Any) -> None:
    key = f"{RESOURCE}::1:k"
    redis_cache.set("k", "v", None)
    assert raw.ttl(key) == -1  # no expiry
    redis_cache.set("k", "v", 0.2)
    assert raw.ttl(key) == 1  # rounded up, never "not stored"
    redis_cache.set("k", "v")  # the default TIMEOUT, 300 s
    assert 295 <= raw.ttl(key) <= 300
    redis_cache.set("k", "v", -5)
    assert raw.exists(key) == 0
    redis_cache.set("k", "v", 60)
    assert redis_cache.touch("k", -1) is True
    assert raw.exists(key) == 0
    assert redis_cache.touch("k", 0) is False
    redis_cache.set_many({"a": 1, "b": 2}, 0)
    assert redis_cache.get_many(["a", "b"]) == {}


def test_timeout_setting_is_the_default(pevensie_url: str) -> None:
    forever = backend(pevensie_url, TIMEOUT=None)
    forever.set("k", "v")
    assert forever.get("k") == "v"
    never = backend(pevensie_url, TIMEOUT=0)
    never.set("k", "w")
    assert never.get("k") is None
    forever.clear()


def test_incr_from_many_threads_is_exact(django_cache: PevensieCache) -> None:
    django_cache.set("counter", 0)

    def work() -> None:
        for _ in range(200):
            django_cache.incr("counter")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert django_cache.get("counter") == 1600


# -- clear() scope -----------------------------------------------------------------------


def test_clear_deletes_only_its_resource_type(pevensie_redis_url: str, raw: Any) -> None:
    mine = backend(pevensie_redis_url)
    other = backend(pevensie_redis_url, OPTIONS={"resource_type": "django-other"})
    mine.set_many({"a": 1, "b": 2})
    other.set("a", 3)
    raw.set("not-pevensie", "keep me")
    try:
        mine.clear()
        assert mine.get_many(["a", "b"]) == {}
        assert other.get("a") == 3
        assert raw.get("not-pevensie") == b"keep me"
    finally:
        other.clear()
        raw.delete("not-pevensie")


# -- settings ----------------------------------------------------------------------------


def test_options_other_than_resource_type_go_to_the_driver(pevensie_redis_url: str) -> None:
    tuned = backend(
        pevensie_redis_url, OPTIONS={"resource_type": RESOURCE, "timeout": "2s", "pool_size": 4}
    )
    tuned.set("k", "v")
    assert tuned.get("k") == "v"
    tuned.clear()
    with pytest.raises(ConfigError, match="pool_sise"):
        backend(pevensie_redis_url, OPTIONS={"pool_sise": 4})


@pytest.mark.parametrize("location", ["", None, ["redis://127.0.0.1:6379"], "localhost:6379"])
def test_a_location_that_is_not_a_pevensie_url_is_a_config_error(location: object) -> None:
    with pytest.raises(ConfigError):
        PevensieCache(location, {})


def test_culling_options_are_rejected_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="culling"):
        PevensieCache("memory://", {"OPTIONS": {"MAX_ENTRIES": 100}})


def test_a_password_in_location_stays_out_of_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        PevensieCache("redis://:s3cret-pw@127.0.0.1:1/0", {"OPTIONS": {"nonsense": 1}})
    assert "s3cret-pw" not in str(caught.value)


def test_backends_of_one_configuration_share_one_store_across_threads() -> None:
    first = backend("memory://?max_entries=1000")
    seen: list[object] = []

    def other_thread() -> None:
        seen.append(backend("memory://?max_entries=1000").get("shared"))

    first.set("shared", "across threads")
    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert seen == ["across threads"]
    first.clear()


# -- async face --------------------------------------------------------------------------


class _NoThreads(ThreadPoolExecutor):
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        raise AssertionError("an async cache method went to a worker thread")


@pytest.fixture
async def no_thread_hops(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any hop to a thread: Django's sync_to_async fallback or the loop's executor."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an async cache method fell back to Django's sync_to_async")

    monkeypatch.setattr(django_cache_base, "sync_to_async", refuse)
    asyncio.get_running_loop().set_default_executor(_NoThreads())


async def test_async_methods_are_native_and_see_the_sync_face(
    django_cache: PevensieCache, no_thread_hops: None
) -> None:
    c = django_cache
    try:
        c.set("from-sync", [1, 2])
        assert await c.aget("from-sync") == [1, 2]
        await c.aset("n", 10)
        assert c.get("n") == 10
        assert await c.aincr("n", 5) == 15
        assert await c.adecr("n") == 14
        with pytest.raises(ValueError, match="not found"):
            await c.aincr("absent")
        assert await c.aadd("n", 1) is False
        assert await c.aadd("fresh", "x", 0) is True
        assert await c.aget("fresh") is None
        assert await c.ahas_key("n") is True
        assert await c.atouch("n", None) is True
        assert await c.atouch("absent", 10) is False
        await c.aset_many({"a": "A", "b": None}, 30)
        assert await c.aget_many(["a", "b", "zz"]) == {"a": "A", "b": None}
        assert await c.aget_or_set("computed", lambda: "made") == "made"
        assert await c.aget("computed") == "made"
        assert await c.adelete("a") is True
        assert await c.adelete("a") is False
        await c.adelete_many(["b", "computed"])
        assert await c.aget_many(["b", "computed"]) == {}
        assert await c.aincr_version("n") == 2
        assert await c.aget("n", version=2) == 14
        await c.aset("gone-soon", 1, -1)
        assert await c.aget("gone-soon", "default") == "default"
        await c.aclear()
        assert c.get("n", version=2) is None
        await c.aclose()
    finally:
        await aclose_all()


async def test_many_tasks_share_one_async_cache(django_cache: PevensieCache) -> None:
    try:
        await django_cache.aset("counter", 0)
        await asyncio.gather(*(django_cache.aincr("counter") for _ in range(64)))
        assert await django_cache.aget("counter") == 64
    finally:
        await aclose_all()


# -- middleware and template fragments ---------------------------------------------------


@pytest.fixture
def default_cache(pevensie_url: str) -> Iterator[PevensieCache]:
    """``caches["default"]`` set to PevensieCache on each driver, cleared before and after."""
    setting = {
        "default": {
            "BACKEND": django_support.BACKEND,
            "LOCATION": pevensie_url,
            "OPTIONS": {"resource_type": RESOURCE},
        }
    }
    with override_settings(CACHES=setting, CACHE_MIDDLEWARE_SECONDS=30):
        made = caches["default"]
        assert isinstance(made, PevensieCache)
        made.clear()
        yield made
        made.clear()


class CountingView:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: HttpRequest) -> HttpResponse:
        self.calls += 1
        return HttpResponse(f"response {self.calls}")


def test_per_site_cache_middleware(default_cache: PevensieCache) -> None:
    view = CountingView()
    # MIDDLEWARE = [UpdateCacheMiddleware, ..., FetchFromCacheMiddleware]
    handler = UpdateCacheMiddleware(FetchFromCacheMiddleware(view))
    first = handler(RequestFactory().get("/page"))
    second = handler(RequestFactory().get("/page"))
    other = handler(RequestFactory().get("/other"))
    assert (first.content, second.content, other.content) == (
        b"response 1",
        b"response 1",
        b"response 2",
    )
    assert view.calls == 2
    default_cache.clear()
    assert handler(RequestFactory().get("/page")).content == b"response 3"


def test_per_view_cache_page(default_cache: PevensieCache) -> None:
    view = CountingView()
    cached_view = cache_page(30)(view)
    assert cached_view(RequestFactory().get("/v")).content == b"response 1"
    assert cached_view(RequestFactory().get("/v")).content == b"response 1"
    assert cached_view(RequestFactory().get("/v?page=2")).content == b"response 2"
    assert view.calls == 2


def test_template_fragment_cache(default_cache: PevensieCache) -> None:
    template = Template(
        "{% load cache %}{% cache 30 greeting who %}Hello {{ who }} {{ n }}{% endcache %}"
    )
    assert template.render(Context({"who": "Ada", "n": 1})) == "Hello Ada 1"
    assert template.render(Context({"who": "Ada", "n": 2})) == "Hello Ada 1"  # from the cache
    assert template.render(Context({"who": "Bob", "n": 3})) == "Hello Bob 3"
    key = make_template_fragment_key("greeting", ["Ada"])
    assert default_cache.get(key) == "Hello Ada 1"
    default_cache.delete(key)
    assert template.render(Context({"who": "Ada", "n": 4})) == "Hello Ada 4"
