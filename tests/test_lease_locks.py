"""The lease lock as public API: ``acquire_lock`` / ``release_lock`` on both faces.

It is the lock ``get_or_set(..., lock=True)`` holds (the dogpile.cache backend's
mutex uses it): taken only by one token at a time, released only by its token,
expiring after its lease; bad arguments are typed errors that take nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from clock_support import ShiftedClock

from pevensie_cache import ArgumentTypeError, ArgumentValueError, PevensieCache, cache
from pevensie_cache.memory import MemoryDriver


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture(params=["memory", "redis"])
def any_cache(request: pytest.FixtureRequest, clock: ShiftedClock) -> Iterator[PevensieCache]:
    if request.param == "memory":
        with cache.new(driver=MemoryDriver(clock=clock)) as c:
            yield c
    else:
        yield request.getfixturevalue("pevensie_redis_cache")


@pytest.fixture
def advance(any_cache: PevensieCache, clock: ShiftedClock) -> Callable[[float], None]:
    """Let time pass for the leases: the memory store's clock moves, a server's time is waited."""
    return clock.advance if isinstance(any_cache.driver, MemoryDriver) else time.sleep


def test_one_token_holds_the_lock_until_it_releases_it(any_cache: PevensieCache) -> None:
    c = any_cache
    assert c.acquire_lock("job", "42", "token-a", 10) is True
    assert c.acquire_lock("job", "42", "token-b", 10) is False
    assert c.acquire_lock("job", "42", "token-a", 10) is False  # not reentrant
    assert c.acquire_lock("job", "43", "token-b", 10) is True  # another key
    c.release_lock("job", "42", "token-b")  # not the holder: nothing happens
    assert c.acquire_lock("job", "42", "token-b", 10) is False
    c.release_lock("job", "42", "token-a")
    assert c.acquire_lock("job", "42", "token-b", 10) is True


def test_the_lock_is_not_a_value(any_cache: PevensieCache) -> None:
    c = any_cache
    assert c.acquire_lock("job", "42", "token", 10)
    assert c.get("job", "42", None) is None
    c.set("job", "42", "value")
    assert c.acquire_lock("job", "42", "other", 10) is False


def test_a_lease_expires(any_cache: PevensieCache, advance: Callable[[float], None]) -> None:
    c = any_cache
    assert c.acquire_lock("job", "1", "crashed", 0.2)
    advance(0.4)
    assert c.acquire_lock("job", "1", "next", 10) is True


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (("job", "1", "", 1), ArgumentValueError),
        (("job", "1", b"tok", 1), ArgumentTypeError),
        (("job", "1", "\ud800", 1), ArgumentValueError),
        (("job", "1", "tok", 0), ArgumentValueError),
        (("job", "1", "tok", float("inf")), ArgumentValueError),
        (("job", "1", "tok", True), ArgumentTypeError),
        (("job", "1", "tok", "10"), ArgumentTypeError),
        (("a:b", "1", "tok", 1), ArgumentValueError),
        (("job", "", "tok", 1), ArgumentValueError),
    ],
)
def test_bad_arguments_take_nothing(
    any_cache: PevensieCache, arguments: tuple[Any, ...], error: type[Exception]
) -> None:
    with pytest.raises(error):
        any_cache.acquire_lock(*arguments)
    assert any_cache.acquire_lock("job", "1", "tok", 1) is True


async def test_the_async_face_has_the_same_lock() -> None:
    async with cache.new_async() as c:
        assert await c.acquire_lock("job", "1", "a", 10) is True
        assert await c.acquire_lock("job", "1", "b", 10) is False
        await c.release_lock("job", "1", "a")
        assert await c.acquire_lock("job", "1", "b", 10) is True
