"""Freshness options of get_or_set, on the memory driver, one server and a Cluster, both faces.

- ``stale_seconds``: 200 concurrent callers on a key past its TTL all get the
  old value at once (while the refresh's loader is still blocked), and the
  loader runs once, across two caches (two processes, as far as the lease
  lock goes) too;
- ``stale_on_error``: a raising loader leaves the stale value served, and
  ``instrument()``'s metrics count it; without it, the next caller gets the
  loader's error;
- ``early_recompute``: the loader runs before expiry in a share of reads that
  matches XFetch's probability, and a hit never waits for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import threading
import time
from typing import Any

import pytest
from aside_support import Target
from fresh_support import async_caches, past_ttl, raw_envelope, sync_caches, total, wait_until
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from pevensie_cache import cache, instrument

CALLERS = 200


class Counted:
    """A loader that counts its calls and, until released, blocks in them."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.calls = 0
        self.release = threading.Event()
        self.release_async: asyncio.Event | None = None
        self._count = threading.Lock()

    def __call__(self) -> str:
        with self._count:
            self.calls += 1
        assert self.release.wait(30)
        return self.value

    async def load_async(self) -> str:
        self.calls += 1
        if self.release_async is None:
            self.release_async = asyncio.Event()
        await asyncio.wait_for(self.release_async.wait(), 30)
        return self.value


def in_threads(count: int, call: Any) -> list[Any]:
    """Run ``call(index)`` in ``count`` threads released together; return each outcome."""
    outcomes: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = call(index)
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_200_threads_on_a_stale_key_get_the_old_value_at_once_and_the_loader_runs_once(
    store: Target,
) -> None:
    caches = sync_caches(store, 2)
    loader = Counted("new")
    try:
        first = caches[0]
        assert first.get_or_set("page", "home", lambda: "old", 1, stale_seconds=60) == "old"
        past_ttl()
        began = time.perf_counter()
        outcomes = in_threads(
            CALLERS,
            lambda n: caches[n % len(caches)].get_or_set(
                "page", "home", loader, 1, stale_seconds=60
            ),
        )
        served = time.perf_counter() - began
        # Every caller returned before the one refresh's loader was even let go.
        assert outcomes == ["old"] * CALLERS
        wait_until(lambda: loader.calls == 1)
        loader.release.set()
        for c in caches:
            c._fresh.background.idle()
        assert loader.calls == 1
        assert first.get("page", "home") == "new"
        assert first.get_or_set("page", "home", loader, 1, stale_seconds=60) == "new"
        assert loader.calls == 1
    finally:
        loader.release.set()
        for c in caches:
            c.disconnect()
    print(f"\n{store.name}: {CALLERS} threads served the stale value in {served:.3f} s")


async def test_200_tasks_on_a_stale_key_get_the_old_value_at_once_and_the_loader_runs_once(
    store: Target,
) -> None:
    caches = await async_caches(store, 2)
    loader = Counted("new")
    try:
        first = caches[0]
        assert await first.get_or_set("page", "home", lambda: "old", 1, stale_seconds=60) == "old"
        await asyncio.to_thread(past_ttl)
        outcomes = await asyncio.gather(
            *(
                caches[n % len(caches)].get_or_set(
                    "page", "home", loader.load_async, 1, stale_seconds=60
                )
                for n in range(CALLERS)
            )
        )
        assert outcomes == ["old"] * CALLERS
        # The refreshes were started as tasks; let them reach the loader (or the lease).
        for _ in range(100):
            await asyncio.sleep(0.01)
            if loader.calls:
                break
        assert loader.calls == 1
        assert loader.release_async is not None
        loader.release_async.set()
        for c in caches:
            await c._fresh.background.idle()
        assert loader.calls == 1
        assert await first.get("page", "home") == "new"
    finally:
        if loader.release_async is not None:
            loader.release_async.set()
        for c in caches:
            await c.disconnect()


def failing() -> str:
    raise LookupError("the database is down")


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


def test_a_raising_loader_yields_the_stale_value_and_the_metric_counts_it(
    store: Target, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    options: dict[str, Any] = {"stale_seconds": 60, "stale_on_error": True}
    with instrument(cache.from_url(store.url), MeterProvider(metric_readers=[reader])) as c:
        assert c.get_or_set("page", "home", lambda: "old", 1, **options) == "old"
        past_ttl()
        with caplog.at_level(logging.WARNING, logger="pevensie_cache"):
            for _ in range(3):
                assert c.get_or_set("page", "home", failing, 1, **options) == "old"
                c._fresh.background.idle()
        refreshes = {"pevensie.cache.refresh.trigger": "stale", "pevensie.cache.outcome": "error"}
        assert total(reader, "pevensie.cache.refreshes", refreshes) == 3
        failed = {**refreshes, "error.type": "builtins.LookupError"}
        assert total(reader, "pevensie.cache.refreshes", failed) == 3
        assert total(reader, "pevensie.cache.stale_reads", {}) == 3
        lookups = {"db.operation.name": "get_or_set", "pevensie.cache.outcome": "hit"}
        assert total(reader, "pevensie.cache.lookups", lookups) == 3  # stale reads are hits
        missed = {**lookups, "pevensie.cache.outcome": "miss"}
        assert total(reader, "pevensie.cache.lookups", missed) == 1  # the first load
        assert "failed with LookupError; still serving the old value" in caplog.text
        assert "the database is down" not in caplog.text  # the type only, never the text
        # The loader works again: the next stale read refreshes it.
        assert c.get_or_set("page", "home", lambda: "new", 1, **options) == "old"
        c._fresh.background.idle()
        assert c.get("page", "home") == "new"
        ok = {"pevensie.cache.refresh.trigger": "stale", "pevensie.cache.outcome": "ok"}
        assert total(reader, "pevensie.cache.refreshes", ok) == 1


async def test_a_raising_async_loader_yields_the_stale_value_and_the_metric_counts_it(
    store: Target, reader: InMemoryMetricReader
) -> None:
    options: dict[str, Any] = {"stale_seconds": 60, "stale_on_error": True}

    async def failing_async() -> str:
        raise LookupError("the database is down")

    c = instrument(cache.from_url_async(store.url), MeterProvider(metric_readers=[reader]))
    async with c:
        assert await c.get_or_set("page", "home", lambda: "old", 1, **options) == "old"
        await asyncio.to_thread(past_ttl)
        for _ in range(2):
            assert await c.get_or_set("page", "home", failing_async, 1, **options) == "old"
            await c._fresh.background.idle()
        failed = {
            "pevensie.cache.refresh.trigger": "stale",
            "pevensie.cache.outcome": "error",
            "error.type": "builtins.LookupError",
        }
        assert total(reader, "pevensie.cache.refreshes", failed) == 2
        assert total(reader, "pevensie.cache.stale_reads", {}) == 2


def test_without_stale_on_error_a_failed_refresh_drops_the_stale_value_and_the_error_shows(
    store: Target,
) -> None:
    with cache.from_url(store.url) as c:
        assert c.get_or_set("page", "home", lambda: "old", 1, stale_seconds=60) == "old"
        past_ttl()
        # This caller is served at once; its background refresh fails and drops the value...
        assert c.get_or_set("page", "home", failing, 1, stale_seconds=60) == "old"
        c._fresh.background.idle()
        assert c.get("page", "home", None) is None
        # ... so the next caller loads in the foreground and gets the error, as without options.
        with pytest.raises(LookupError):
            c.get_or_set("page", "home", failing, 1, stale_seconds=60)


def test_a_value_written_while_a_failing_refresh_runs_survives_its_failure(
    store: Target,
) -> None:
    started, written = threading.Event(), threading.Event()

    def fails_after_a_write() -> str:
        started.set()
        assert written.wait(30)
        raise LookupError("the database is down")

    with cache.from_url(store.url) as c:
        c.get_or_set("page", "home", lambda: "old", 1, stale_seconds=60)
        past_ttl()
        assert c.get_or_set("page", "home", fails_after_a_write, 1, stale_seconds=60) == "old"
        assert started.wait(30)
        c.set("page", "home", "written meanwhile", 60)  # while the refresh's loader runs
        written.set()
        c._fresh.background.idle()
        assert c.get("page", "home", None) == "written meanwhile"


async def test_a_value_written_while_a_failing_async_refresh_runs_survives_its_failure(
    store: Target,
) -> None:
    started, written = asyncio.Event(), asyncio.Event()

    async def fails_after_a_write() -> str:
        started.set()
        await asyncio.wait_for(written.wait(), 30)
        raise LookupError("the database is down")

    async with cache.from_url_async(store.url) as c:
        await c.get_or_set("page", "home", lambda: "old", 1, stale_seconds=60)
        past_ttl()
        assert await c.get_or_set("page", "home", fails_after_a_write, 1, stale_seconds=60) == "old"
        await asyncio.wait_for(started.wait(), 30)
        await c.set("page", "home", "written meanwhile", 60)
        written.set()
        await c._fresh.background.idle()
        assert await c.get("page", "home", None) == "written meanwhile"


TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="<no tenant>")


def test_a_background_refresh_sees_the_callers_context_variables(store: Target) -> None:
    # A loader that reads a tenant (a database session, a span) from a ContextVar must
    # not load another tenant's page under this caller's key.
    with cache.from_url(store.url) as c:
        c.get_or_set("page", "acme", lambda: "old", 1, stale_seconds=60)
        past_ttl()
        TENANT.set("acme")
        try:
            loader = lambda: f"page of {TENANT.get()}"  # noqa: E731
            assert c.get_or_set("page", "acme", loader, 1, stale_seconds=60) == "old"
        finally:
            TENANT.set("<no tenant>")
        c._fresh.background.idle()
        assert c.get("page", "acme") == "page of acme"


async def test_an_async_background_refresh_sees_the_callers_context_variables(
    store: Target,
) -> None:
    async with cache.from_url_async(store.url) as c:
        await c.get_or_set("page", "acme", lambda: "old", 1, stale_seconds=60)
        past_ttl()
        TENANT.set("acme")
        loader = lambda: f"page of {TENANT.get()}"  # noqa: E731
        assert await c.get_or_set("page", "acme", loader, 1, stale_seconds=60) == "old"
        await c._fresh.background.idle()
        assert await c.get("page", "acme") == "page of acme"


def test_a_stale_value_is_not_served_past_its_window_nor_to_a_caller_without_one(
    store: Target,
) -> None:
    with cache.from_url(store.url) as c:
        c.get_or_set("page", "home", lambda: "old", 1, stale_seconds=60)
        past_ttl()
        # A plain read, and a caller without a stale window, see a value past its TTL as gone.
        assert c.get("page", "home", None) is None
        assert c.get_many("page", ["home"]) == {}
        assert c.get_or_set("page", "home", lambda: "loaded", 1) == "loaded"
        c.get_or_set("page", "short", lambda: "old", 1, stale_seconds=1)
        past_ttl(2.1)
        assert c.get_or_set("page", "short", lambda: "new", 1, stale_seconds=1) == "new"


def test_early_recompute_runs_the_loader_before_expiry_in_the_share_xfetch_gives(
    store: Target,
) -> None:
    keys = 100
    ttl = 30
    with cache.from_url(store.url) as c:

        def slow(n: int) -> Any:
            def load() -> str:
                time.sleep(0.02)
                return f"first {n}"

            return load

        for n in range(keys):
            c.get_or_set("page", str(n), slow(n), ttl, early_recompute=True)
        envelopes = [raw_envelope(store, c, f"page:{n}") for n in range(keys)]
        compute = sum(e.compute for e in envelopes) / keys
        left = min(e.expiry or 0 for e in envelopes) - time.time()
        # A beta that makes the chance about one half here; the share expected is worked
        # out below from each entry's own recorded loader time and expiry.
        beta = left / (compute * math.log(2))
        expected = 0.0
        early: list[int] = []
        for n, envelope in enumerate(envelopes):
            assert envelope.expiry is not None
            at = time.time()
            value = c.get_or_set(
                "page",
                str(n),
                lambda n=n: early.append(n) or f"early {n}",
                ttl,
                early_recompute=beta,
            )
            assert value == f"first {n}"  # a hit: the old value, never the refresh's
            expected += math.exp(-(envelope.expiry - at) / (envelope.compute * beta))
        c._fresh.background.idle()
        share = len(early) / keys
        expected /= keys
        # A binomial count of 100 at p ~ 0.5 has a standard deviation of 5: 4 of them.
        assert abs(share - expected) <= 0.2, (share, expected)
        for n in early:
            assert c.get("page", str(n)) == f"early {n}"  # refreshed, before expiry
    print(f"\n{store.name}: recomputed early in {share:.2f} of reads, XFetch: {expected:.2f}")


def test_a_hit_never_waits_for_an_early_recomputation(store: Target) -> None:
    with cache.from_url(store.url) as c:

        def first() -> str:
            time.sleep(0.05)
            return "first"

        c.get_or_set("page", "home", first, 30, early_recompute=True)
        loader = Counted("second")
        try:
            # With a huge beta every hit is chosen; each one returns while the loader blocks.
            for _ in range(20):
                assert c.get_or_set("page", "home", loader, 30, early_recompute=1e9) == "first"
            wait_until(lambda: loader.calls == 1)
        finally:
            loader.release.set()
        c._fresh.background.idle()
        assert loader.calls == 1
        assert c.get("page", "home") == "second"


async def test_an_async_hit_never_waits_for_an_early_recomputation(store: Target) -> None:
    async with cache.from_url_async(store.url) as c:
        await c.get_or_set("page", "home", lambda: "first", 30, early_recompute=True)
        # A loader this fast records 0 ms: write its time by hand with a slow one.
        loader = Counted("second")

        async def slow_first() -> str:
            await asyncio.sleep(0.05)
            return "first"

        await c.delete("page", "home")
        await c.get_or_set("page", "home", slow_first, 30, early_recompute=True)
        for _ in range(20):
            got = await c.get_or_set("page", "home", loader.load_async, 30, early_recompute=1e9)
            assert got == "first"
        for _ in range(100):
            await asyncio.sleep(0.01)
            if loader.calls:
                break
        assert loader.calls == 1
        assert loader.release_async is not None
        loader.release_async.set()
        await c._fresh.background.idle()
        assert await c.get("page", "home") == "second"
