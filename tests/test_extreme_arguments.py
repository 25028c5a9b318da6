"""Arguments at the edges get the library's typed errors, change nothing, and leak no secret.

Ints of thousands of digits (which have no text: Python's digit limit), lone
surrogates in settings, non-callables where a function is expected, and truthy
objects where a flag is expected. Each was once a bare ``ValueError``,
``OverflowError``, ``TypeError`` or ``UnicodeEncodeError``, or silently accepted.
On the memory driver, both faces; the Redis driver's settings are built without
a server (nothing here connects).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pevensie_cache import (
    ArgumentTypeError,
    ArgumentValueError,
    ConfigError,
    PevensieCacheError,
    cache,
)

HUGE = 10**5000  # no text: str(HUGE) raises ValueError
SECRET = "s3cretPW"


def _values(c: Any) -> dict[str, str]:
    return {key: c.get("t", key, None) for key in ("k", "z", "L")}


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.set("t", "z", "x", ttl_seconds=-HUGE),
        lambda c: c.set("t", "z", "x", ttl_seconds=HUGE),
        lambda c: c.incr("t", "k", HUGE),
        lambda c: c.incr("t", "k", -HUGE),
        lambda c: c.decr("t", "k", HUGE),
        lambda c: c.touch("t", "k", -HUGE),
        lambda c: c.get_or_set("t", "z", lambda: "x", 60, stale_seconds=-HUGE),
        lambda c: c.get_or_set("t", "z", lambda: "x", 60, lock=True, lock_lease=-(10**400)),
        lambda c: c.get_or_set("t", "z", lambda: "x", 60, lock=True, lock_wait=-HUGE),
        lambda c: c.lock("t", "L", ttl_seconds=-(10**400)),
        lambda c: c.lock("t", "L", wait_seconds=-HUGE),
    ],
)
def test_an_int_with_thousands_of_digits_is_an_argument_error_that_changes_nothing(
    call: Callable[[Any], object],
) -> None:
    with cache.new() as c:
        c.set("t", "k", "1")
        before = _values(c)
        with pytest.raises(ArgumentValueError) as caught:
            call(c)
        assert "more than 30 digits" in str(caught.value)
        assert _values(c) == before


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0?pool_size=" + "9" * 5000,
        "redis://127.0.0.1:6379/0?timeout=" + "9" * 5000 + "ms",
        "memory://?max_entries=" + "1" * 5000,
    ],
)
def test_a_number_option_of_thousands_of_digits_is_a_config_error_naming_it(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cache.from_url(url)
    name = url.rsplit("?", 1)[1].split("=")[0]
    assert str(caught.value).startswith(name)
    assert "5000 characters" in str(caught.value) or "500" in str(caught.value)


def test_an_int_keyword_of_thousands_of_digits_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"^port must be .*more than 30 digits"):
        cache.new(driver="redis", host="127.0.0.1", port=HUGE)


@pytest.mark.parametrize(
    "path",
    ["/\u00b2", "/\u0661", "/1\u0662", "/" + "9" * 5000],
    ids=["super-2", "arabic-1", "1-arabic-2", "5000-digits"],
)
def test_a_database_path_is_ascii_digits_only(path: str) -> None:
    with pytest.raises(ConfigError, match="the path of a Redis URL is the database number"):
        cache.from_url(f"redis://127.0.0.1:6379{path}")
    with pytest.raises(ConfigError, match="service_name/db"):
        cache.from_url(f"redis+sentinel://127.0.0.1:26379/mymaster{path}")


@pytest.mark.parametrize(
    "options",
    [
        {"username": "u\ud800"},
        {"tls": True, "tls_ca_file": "/x\ud800"},
        {"namespace": "n\ud800"},
    ],
)
def test_a_lone_surrogate_in_a_setting_is_a_config_error_when_the_cache_is_built(
    options: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError, match="must be encodable as UTF-8"):
        cache.new(driver="redis", host="127.0.0.1", **options)


def test_a_lone_surrogate_in_the_memory_drivers_namespace_is_refused_too() -> None:
    with pytest.raises(ConfigError, match="namespace must be encodable as UTF-8"):
        cache.new(namespace="n\ud800")


def test_a_password_with_a_lone_surrogate_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        cache.new(driver="redis", host="127.0.0.1", password=SECRET + "\ud800")
    error = caught.value
    assert "password must be encodable as UTF-8" in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__
    shown = f"{error!s} {error!r} {error.args!r}"
    assert SECRET not in shown


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.resource("u", codec="json").get_or_set("a", None),
        lambda c: c.resource("u", codec="json").get_or_set("a", 5),
        lambda c: c.resource("u").get_or_set("a", None),
        lambda c: c.get_or_set("u", "a", None),
    ],
)
def test_a_loader_that_is_not_callable_is_a_type_error_even_on_a_hit(
    call: Callable[[Any], object],
) -> None:
    with cache.new() as c:
        c.resource("u", codec="json").set("a", 1)
        with pytest.raises(ArgumentTypeError, match="loader must be callable"):
            call(c)
        c.delete("u", "a")
        with pytest.raises(ArgumentTypeError, match="loader must be callable"):
            call(c)
        assert c.get("u", "a", None) is None


def test_cached_refuses_what_is_not_a_function_when_it_decorates() -> None:
    with cache.new() as c:
        with pytest.raises(ArgumentTypeError, match=r"cached\(\) decorates a function, not int"):
            c.cached("p")(5)  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError, match=r"the key of .* must be a function"):
            c.cached("p", key=5)(lambda a: str(a))  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError, match="tags of a cached function must be a callable"):
            c.cached("p", stale_seconds=None, tags=["t"])(lambda a: str(a))  # type: ignore[arg-type]


def test_the_async_face_refuses_them_too() -> None:
    async def main() -> None:
        async with cache.new_async() as c:
            with pytest.raises(ArgumentTypeError, match="loader must be callable"):
                await c.resource("u", codec="json").get_or_set("a", None)  # type: ignore[arg-type]
            with pytest.raises(ArgumentTypeError, match="lock must be True or False"):
                await c.get_or_set("u", "a", lambda: "x", lock="false")  # type: ignore[arg-type]

            async def f(a: int) -> str:
                return str(a)

            with pytest.raises(ArgumentTypeError, match=r"the key of .* must be a function"):
                c.cached("p", key="k")(f)  # type: ignore[arg-type]
            assert await c.get("u", "a", None) is None

    asyncio.run(main())


@pytest.mark.parametrize("flag", ["false", "no", 0, 1, 2, None, [True]])
def test_lock_is_true_or_false_never_merely_truthy(flag: object) -> None:
    calls: list[int] = []
    with cache.new() as c:
        with pytest.raises(ArgumentTypeError, match="lock must be True or False"):
            c.get_or_set("t", "k", lambda: calls.append(1) or "v", 60, lock=flag)  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError, match="lock must be True or False"):
            c.resource("t", codec="json").get_or_set(
                "k",
                lambda: calls.append(1) or 1,
                60,
                lock=flag,  # type: ignore[arg-type]
            )
        with pytest.raises(ArgumentTypeError, match="lock must be True or False"):
            c.cached("t", 60, lock=flag)(lambda: "v")  # type: ignore[arg-type]
        assert calls == []
        assert c.get("t", "k", None) is None


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: cache.from_config({"driver": "memory"}, prefix=None), "prefix must be a str"),
        (lambda: cache.from_env(None), "var must be the name of an environment variable"),
        (lambda: cache.from_env(""), "var must be the name of an environment variable"),
        (lambda: cache.from_env("NO_SUCH_VAR_X", default=5), "default must be a URL"),
    ],
)
def test_the_builders_refuse_arguments_of_the_wrong_type(
    build: Callable[[], object], error: str
) -> None:
    with pytest.raises(ArgumentTypeError, match=error) as caught:
        build()
    assert isinstance(caught.value, PevensieCacheError)
