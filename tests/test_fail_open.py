"""fail_open=True: the store's unavailability served as misses and no-ops, logged and counted.

The store here is a memory store that can be switched "down", raising what an
unreachable store raises (``DriverUnavailable``, or Python's ``ConnectionError``
from a third-party driver); the Redis driver's own (a killed or paused real
server) are in tests/redis.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from pevensie_cache import (
    ArgumentTypeError,
    ArgumentValueError,
    AsyncPevensieCache,
    CacheMiss,
    DriverError,
    DriverUnavailable,
    PevensieCache,
    ThreadedAsyncDriver,
    cache,
    instrument,
)
from pevensie_cache.failures import FailureLog
from pevensie_cache.memory import MemoryDriver


class Down(DriverUnavailable):
    """What the switched-off store raises."""


class Switchable(MemoryDriver):
    """A memory store that raises ``failure`` from every operation while ``down``."""

    def __init__(self, failure: type[Exception] = Down) -> None:
        super().__init__()
        self.down = False
        self.failure = failure
        self.connects = 0
        for name in (
            "get", "set", "delete", "get_many", "set_many", "delete_many", "add", "incr",
            "touch", "clear", "exists", "ttl_ms", "acquire_lock", "release_lock", "extend_lock",
            "connect",
        ):  # fmt: skip
            setattr(self, name, self._guarded(getattr(self, name)))

    def _guarded(self, operation: Any) -> Any:
        def call(*args: Any) -> Any:
            if operation.__name__ == "connect":
                self.connects += 1
            if self.down:
                raise self.failure("connection refused by 127.0.0.1:1")
            return operation(*args)

        return call


def served_open(c: PevensieCache) -> None:
    """Every operation, against a store that is down."""
    assert c.get("user", "1", None) is None
    with pytest.raises(CacheMiss):
        c.get("user", "1")
    assert c.get_many("user", ["1", "2"]) == {}
    assert c.exists("user", "1") is False
    with pytest.raises(CacheMiss):
        c.ttl("user", "1")
    c.set("user", "1", "x", ttl_seconds=60)
    c.set_many("user", {"2": "y"})
    assert c.delete("user", "1") is False
    c.delete_many("user", ["1", "2"])
    assert c.add("user", "3", "z") is False
    assert c.incr("hits", "page", 5) == 5  # as for a new counter: a rate limiter lets it through
    assert c.decr("hits", "page", 2) == -2
    assert c.touch("user", "1", 10) is False
    assert c.clear("user") == 0
    assert c.get_or_set("page", "home", lambda: "rendered", 60) == "rendered"
    assert c.get_or_set("page", "home", lambda: "again", 60, lock=True) == "again"


def test_reads_miss_and_writes_do_nothing_while_the_store_is_down() -> None:
    store = Switchable()
    with PevensieCache(store, fail_open=True) as c:
        c.set("user", "1", "kept")
        store.down = True
        served_open(c)
        store.down = False
        assert c.get("user", "1") == "kept"  # the writes served open changed nothing
        assert store.keys() == {"user:1"}


def test_a_foreign_connection_error_of_a_third_party_driver_is_served_open_too() -> None:
    store = Switchable(failure=ConnectionResetError)
    with cache.new(store, fail_open=True) as c:
        store.down = True
        assert c.get("user", "1", None) is None
        store.failure = TimeoutError
        c.set("user", "1", "x")


def test_without_fail_open_the_failure_raises() -> None:
    store = Switchable()
    with cache.new(store) as c:
        store.down = True
        with pytest.raises(DriverUnavailable):
            c.get("user", "1", None)
        with pytest.raises(DriverUnavailable):
            c.set("user", "1", "x")


def test_bad_input_other_failures_and_locks_still_raise() -> None:
    store = Switchable()
    with cache.new(store, fail_open=True) as c:
        store.down = True
        with pytest.raises(ArgumentValueError):
            c.set("a:b", "1", "x")
        with pytest.raises(ArgumentTypeError):
            c.get("user", 1)  # type: ignore[arg-type]
        with pytest.raises(DriverUnavailable):  # a lock is never served open
            c.lock("job", "nightly", wait_seconds=0).acquire()
        store.failure = type("ServerSaidNo", (DriverError,), {})
        with pytest.raises(DriverError):  # not an unavailability: raised
            c.get("user", "1", None)


def test_failures_are_logged_at_warning_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Switchable()
    with PevensieCache(store, fail_open=True) as c, caplog.at_level(logging.WARNING):
        store.down = True
        for _ in range(50):
            c.get("user", "1", None)
            c.set("user", "1", "x")
    warnings = [r for r in caplog.records if r.name == "pevensie_cache"]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "fail_open: get on resource type 'user' failed with Down" in message
    assert "served as a miss" in message


def test_the_log_says_how_many_it_left_out_once_the_interval_passed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = FailureLog(every=0.05)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            log.failed("set", "user", Down("refused"))
        import time

        time.sleep(0.1)
        log.failed("set", "user", Down("refused"))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "served as a no-op (4 more since the last warning)" in messages[1]
    assert log.total == 6


def test_a_foreign_exception_text_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    log = FailureLog()
    with caplog.at_level(logging.WARNING):
        log.failed("get", "user", ConnectionError("redis://u:hunter2@db refused"))
    assert "hunter2" not in caplog.text
    assert "ConnectionError" in caplog.text


def test_every_failure_served_open_is_counted_in_the_metrics() -> None:
    reader = InMemoryMetricReader()
    store = Switchable()
    c = instrument(cache.new(store, fail_open=True), MeterProvider(metric_readers=[reader]))
    with c:
        store.down = True
        for _ in range(3):
            c.get("user", "1", None)
        c.set("session", "1", "x")
    counted: dict[tuple[str, str, str], int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name != "pevensie.cache.fail_open.errors":
                    continue
                for point in metric.data.data_points:
                    a = point.attributes
                    key = (
                        a["db.operation.name"],
                        a["pevensie.cache.resource_type"],
                        a["error.type"],
                    )
                    counted[key] = point.value
    assert counted == {
        ("get", "user", "test_fail_open.Down"): 3,
        ("set", "session", "test_fail_open.Down"): 1,
    }


def test_an_add_served_open_is_a_miss_not_a_hit_in_the_metrics() -> None:
    # "hit" for add means the key was there; an unreachable store once counted as one,
    # inflating hits during an outage.
    reader = InMemoryMetricReader()
    store = Switchable()
    c = instrument(cache.new(store, fail_open=True), MeterProvider(metric_readers=[reader]))
    with c:
        assert c.add("user", "1", "x") is True
        assert c.add("user", "1", "y") is False  # there already
        store.down = True
        assert c.add("user", "2", "z") is False  # served open
    outcomes: dict[str, int] = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "pevensie.cache.operations":
                    for point in metric.data.data_points:
                        if point.attributes["db.operation.name"] == "add":
                            outcome = str(point.attributes["pevensie.cache.outcome"])
                            outcomes[outcome] = outcomes.get(outcome, 0) + int(point.value)
    assert outcomes == {"ok": 1, "hit": 1, "miss": 1}


def test_the_async_face_serves_failures_open_the_same_way() -> None:
    async def main() -> None:
        store = Switchable()
        async with AsyncPevensieCache(ThreadedAsyncDriver(store), fail_open=True) as c:
            await c.set("user", "1", "kept")
            store.down = True
            assert await c.get("user", "1", None) is None
            assert await c.get_many("user", ["1"]) == {}
            await c.set("user", "1", "lost")
            assert await c.incr("hits", "page") == 1
            assert await c.get_or_set("page", "home", lambda: "loaded", lock=True) == "loaded"
            store.down = False
            assert await c.get("user", "1") == "kept"
            assert c.fail_open

    asyncio.run(main())


@pytest.mark.parametrize(
    "build",
    [
        lambda: cache.from_url("memory://?fail_open=true"),
        lambda: cache.from_url("memory://", fail_open=True),
        lambda: cache.from_config({"driver": "memory", "fail_open": "yes"}),
        lambda: cache.new(fail_open=True),
        lambda: cache.new_async(fail_open=True),
    ],
)
def test_every_builder_takes_fail_open(build: Any) -> None:
    assert build().fail_open is True


def test_fail_open_must_be_a_bool() -> None:
    from pevensie_cache import ConfigError

    with pytest.raises(ConfigError, match="fail_open must be a bool"):
        cache.new(fail_open="true")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fail_open must be true or false"):
        cache.from_url("memory://?fail_open=maybe")


def test_a_store_down_at_connect_is_served_open_and_connected_once_it_answers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import pevensie_cache.layers as layers

    monkeypatch.setattr(layers, "RECONNECT_EVERY", 0.2)
    store = Switchable()
    store.down = True
    with caplog.at_level(logging.WARNING):
        c = PevensieCache(store, fail_open=True).connect()  # no error: served open
    assert c.connected
    assert "fail_open: connect failed with Down" in caplog.text
    assert c.get("user", "1", None) is None
    c.set("user", "1", "x")
    assert store.connects == 1  # nobody tried again before the interval
    store.down = False
    import time

    time.sleep(0.3)
    c.set("user", "1", "x")  # connects first, then writes
    assert store.connects == 2
    assert c.get("user", "1") == "x"
    c.disconnect()


def test_a_store_down_at_connect_still_raises_without_fail_open() -> None:
    store = Switchable()
    store.down = True
    with pytest.raises(DriverUnavailable):
        PevensieCache(store).connect()


def test_disconnecting_a_cache_whose_store_never_answered_closes_nothing() -> None:
    store = Switchable()
    store.down = True
    c = PevensieCache(store, fail_open=True).connect()
    store.disconnect = lambda: (_ for _ in ()).throw(AssertionError("never connected"))  # type: ignore[method-assign]
    c.disconnect()
    assert not c.connected


def test_a_store_reached_by_a_later_connect_is_used_not_connected_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pevensie_cache.layers as layers

    monkeypatch.setattr(layers, "RECONNECT_EVERY", 0.0)  # an operation may reconnect at once
    store = Switchable()
    store.down = True
    c = PevensieCache(store, fail_open=True).connect()  # served open: the store is down
    c.disconnect()
    store.down = False
    c.connect()  # reaches the store
    c.set("user", "1", "x")
    assert c.get("user", "1") == "x"
    assert store.connects == 2  # no operation connected it again over that connection
    c.disconnect()


def test_the_async_face_uses_a_store_reached_by_a_later_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pevensie_cache.layers_async as layers_async

    monkeypatch.setattr(layers_async, "RECONNECT_EVERY", 0.0)

    async def main() -> None:
        store = Switchable()
        store.down = True
        c = await AsyncPevensieCache(ThreadedAsyncDriver(store), fail_open=True).connect()
        await c.disconnect()
        store.down = False
        await c.connect()
        await c.set("user", "1", "x")
        assert await c.get("user", "1") == "x"
        assert store.connects == 2
        await c.disconnect()

    asyncio.run(main())


def test_the_redis_drivers_unavailability_errors_are_driver_unavailable() -> None:
    from pevensie_redis import (
        RedisAuthenticationError,
        RedisConnectionError,
        RedisPoolExhausted,
        RedisProtocolError,
        RedisServerError,
        RedisTimeoutError,
    )

    for served in (RedisConnectionError, RedisProtocolError, RedisTimeoutError, RedisPoolExhausted):
        assert issubclass(served, DriverUnavailable)
    for raised in (RedisAuthenticationError, RedisServerError):
        assert not issubclass(raised, DriverUnavailable)


def test_once_a_round_trip_is_served_open_the_rest_of_the_call_are_but_not_the_loaders() -> None:
    # A call of several round trips takes one failure (one timeout, on a stalled server),
    # not one per round trip; the loader's own cache calls are its own, and are tried.
    store = Switchable()
    c = cache.new(driver=store, fail_open=True).connect()

    def loader() -> str:
        store.down = False  # back while the loader runs (a transient failure)
        c.set("other", "k", "written by the loader")
        return "rendered"

    store.down = True
    assert c.get_or_set("page", "home", loader, 60) == "rendered"
    assert c.get("other", "k") == "written by the loader"  # the loader's set was tried
    assert c.get("page", "home", None) is None  # this call's own store was served open
    assert c.get_or_set("page", "home", lambda: "next", 60) == "next"  # a new call tries
    assert c.get("page", "home") == "next"
    c.disconnect()


async def test_the_async_face_serves_the_rest_of_a_call_open_too() -> None:
    store = Switchable()
    c = await cache.new_async(driver=ThreadedAsyncDriver(store), fail_open=True).connect()

    async def loader() -> str:
        store.down = False
        await c.set("other", "k", "written by the loader")
        return "rendered"

    store.down = True
    assert await c.get_or_set("page", "home", loader, 60, tags=["t"]) == "rendered"
    assert await c.get("other", "k") == "written by the loader"
    assert await c.get("page", "home", None) is None
    await c.disconnect()


class FailsOneSet(MemoryDriver):
    """A memory store whose next ``set`` fails as an unreachable store's does, once."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next_set = False

    def set(self, resource_type: str, key: str, value: str, ttl_seconds: int | None) -> None:
        if self.fail_next_set:
            self.fail_next_set = False
            raise Down("connection reset by 127.0.0.1:1")
        super().set(resource_type, key, value, ttl_seconds)


def test_a_lease_taken_before_a_round_trip_was_served_open_is_still_released() -> None:
    store = FailsOneSet()
    c = cache.new(driver=store, fail_open=True).connect()

    def loader() -> str:
        store.fail_next_set = True  # the store of the loaded value fails, served open
        return "v"

    assert c.get_or_set("page", "k", loader, 60, lock=True) == "v"
    # The lease was released all the same: another caller takes it at once.
    assert store.acquire_lock("page", "k", "another holder", 1000) is True
    c.disconnect()
