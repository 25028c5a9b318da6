"""Cache-aside on any driver: what works without the optional operations, and what says so."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from pevensie_test_echo.driver import EchoDriver

from pevensie_cache import ArgumentValueError, ThreadedAsyncDriver, UnsupportedOperation, cache
from pevensie_cache.keys import KeyMaker


def test_a_driver_without_the_optional_operations_names_what_it_lacks() -> None:
    with cache.new(driver=EchoDriver()) as c:
        for call in (
            lambda: c.add("user", "1", "x"),
            lambda: c.incr("user", "n"),
            lambda: c.touch("user", "1", 5),
            lambda: c.clear("user"),
            lambda: c.get_or_set("user", "1", lambda: "x", lock=True),
        ):
            with pytest.raises(
                UnsupportedOperation, match=r"EchoDriver driver does not implement \w+\(\)"
            ):
                call()
        assert c.get("user", "1", default=None) is None  # nothing was emulated


def test_get_or_set_resources_and_cached_work_on_any_driver() -> None:
    with cache.new(driver=EchoDriver()) as c:
        assert c.get_or_set("user", "1", lambda: "loaded") == "loaded"
        assert c.get("user", "1") == "loaded"
        users = c.resource("profile", codec="json")
        users.set("1", {"name": "Ada"})
        assert users.get("1") == {"name": "Ada"}
        calls: list[int] = []

        @c.cached("memo")
        def double(n: int) -> int:
            calls.append(n)
            return 2 * n

        assert double(2) == double(2) == 4
        assert calls == [2]


def load_user(n: int) -> str:
    return str(n)


async def load_user_async(n: int) -> str:
    return str(n)


@pytest.mark.parametrize(
    ("builder", "function", "shown"),
    [
        (cache.from_url, load_user, "CachedFunction"),
        (cache.from_url_async, load_user_async, "AsyncCachedFunction"),
    ],
)
def test_a_cached_function_repr_names_the_function_and_resource_type_only(
    builder: Any, function: Any, shown: str
) -> None:
    c = builder("redis://:s3cret@cache.internal:6390/0")  # never connected: the repr needs none
    memoised = c.cached("user")(function)
    text = repr(memoised)
    assert text == f"<{shown} {__name__}.{function.__name__} resource_type='user'>"
    for secret in ("s3cret", "cache.internal", "redis://"):
        assert secret not in text


@pytest.mark.parametrize(
    ("builder", "shown"),
    [(cache.from_url, "CachedFunction"), (cache.from_url_async, "AsyncCachedFunction")],
)
def test_a_cached_method_bound_to_an_instance_repr_names_the_method_and_resource_type(
    builder: Any, shown: str
) -> None:
    c = builder("redis://:s3cret@cache.internal:6390/0")  # never connected: the repr needs none

    class Users:
        def __repr__(self) -> str:
            return "Users(token='t0ken')"  # an instance's own repr may hold anything

        if shown == "CachedFunction":

            @c.cached("user")
            def load(self, n: int) -> str:
                """Load user n."""
                return str(n)
        else:

            @c.cached("user")
            async def load(self, n: int) -> str:
                """Load user n."""
                return str(n)

    users = Users()
    method = f"{__name__}.{Users.__qualname__}.load"
    text = repr(users.load)
    assert text == f"<bound {shown} {method} of {object.__repr__(users)} resource_type='user'>"
    for secret in ("s3cret", "cache.internal", "redis://", "t0ken"):
        assert secret not in text
    assert repr(Users.load) == f"<{shown} {method} resource_type='user'>"
    # What a bound method answers, as a plain method would.
    bound = users.load
    assert (bound.__name__, bound.__qualname__, bound.__doc__) == (
        "load",
        f"{Users.__qualname__}.load",
        "Load user n.",
    )
    assert bound.__self__ is users
    assert bound.__func__ is Users.load
    assert bound.__wrapped__ is Users.load.__wrapped__
    assert inspect.unwrap(bound).__name__ == "load"


async def test_the_async_face_of_a_sync_only_driver_names_what_it_lacks() -> None:
    async with cache.new_async(driver=ThreadedAsyncDriver(EchoDriver())) as c:
        with pytest.raises(UnsupportedOperation, match=r"add\(\)"):
            await c.add("user", "1", "x")
        assert await c.get_or_set("user", "1", lambda: "loaded") == "loaded"


def test_cached_keys_are_the_same_in_another_process() -> None:
    program = textwrap.dedent(
        """
        from pevensie_cache.keys import KeyMaker
        def report(region, year=2026, *, tags=()):
            return None
        report.__module__, report.__qualname__ = "reports", "report"
        print(KeyMaker(report, None)("eu", tags=("a", "b")))
        """
    )

    def report(region: str, year: int = 2026, *, tags: tuple[str, ...] = ()) -> None:
        return None

    report.__module__, report.__qualname__ = "reports", "report"
    here = KeyMaker(report, None)("eu", tags=("a", "b"))
    there = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert here == there
    assert here.startswith("reports.report:")
    assert here != KeyMaker(report, None)("eu", tags=["a", "b"])  # a list is not a tuple
    assert KeyMaker(report, None)("eu") == KeyMaker(report, None)(region="eu", year=2026)


def traceback_length(error: BaseException) -> int:
    length, tb = 0, error.__traceback__
    while tb is not None:
        length, tb = length + 1, tb.tb_next
    return length


def test_waiters_of_a_failed_load_do_not_pile_their_frames_onto_its_exception() -> None:
    """31 threads wait on one failing load and each raise its exception.

    Raising the shared exception as it is chained every waiter's frames (and
    their locals) onto its traceback, for as long as anyone keeps it.
    """
    failure = LookupError("upstream is down")
    loading, release = threading.Event(), threading.Event()
    outcomes: list[BaseException] = []

    def loader() -> str:
        loading.set()
        release.wait(10)
        raise failure

    c = cache.new().connect()

    def call() -> None:
        try:
            c.get_or_set("page", "broken", loader)
        except LookupError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=call)]
    threads[0].start()
    assert loading.wait(10)
    threads += [threading.Thread(target=call) for _ in range(31)]
    for thread in threads[1:]:
        thread.start()
    time.sleep(0.3)  # every waiter is waiting on the run by now
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(outcomes) == 32
    assert all(outcome is failure for outcome in outcomes)
    assert traceback_length(failure) < 16, traceback_length(failure)


def test_get_or_set_called_for_its_key_from_its_own_loader_is_an_error_not_a_hang() -> None:
    with cache.new(driver="memory") as c:
        outcome: list[object] = []

        def loader() -> str:
            return c.get_or_set("user", "1", lambda: "inner")  # waits for itself

        def call() -> None:
            try:
                outcome.append(c.get_or_set("user", "1", loader))
            except Exception as exc:
                outcome.append(exc)

        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        thread.join(10)  # a bound, not a speed: it hung for ever before
        assert not thread.is_alive(), "get_or_set waits for its own load"
        assert isinstance(outcome[0], ArgumentValueError), outcome
        assert "its own loader" in str(outcome[0])
        assert c.get_or_set("user", "1", lambda: "Ada") == "Ada"  # no load left under way


async def test_an_async_get_or_set_called_from_its_own_loader_is_an_error_not_a_hang() -> None:
    async with cache.new_async(driver="memory") as c:

        async def loader() -> str:
            return await c.get_or_set("user", "1", lambda: "inner")  # waits for itself

        with pytest.raises(ArgumentValueError, match="its own loader"):
            # A bound, not a speed: it hung for ever before.
            await asyncio.wait_for(c.get_or_set("user", "1", loader), 10)
        assert await c.get_or_set("user", "1", lambda: "Ada") == "Ada"
