"""instrument(c): what the OpenTelemetry SDK's in-memory reader receives, sync and async.

Every operation runs once or twice on the memory driver and on a real Redis
server, on both faces; the recorded counts, outcomes, lookups and durations
are checked point by point.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from pevensie_cache import (
    AsyncPevensieCache,
    CacheMiss,
    ConfigError,
    PevensieCache,
    cache,
    instrument,
    uninstrument,
)
from pevensie_cache.memory import MemoryDriver
from pevensie_cache.observability import recorder_of
from pevensie_redis.testing.servers import RedisServer

Key = tuple[str, str, str]  # (operation, resource type, outcome)

EXPECTED_OPERATIONS: dict[Key, int] = {
    ("set", "user", "ok"): 2,  # one by hand, one inside get_or_set
    ("get", "user", "hit"): 2,  # one by hand, one inside get_or_set
    ("get", "user", "miss"): 3,  # raised, defaulted, and inside get_or_set
    ("get_many", "user", "ok"): 1,
    ("set_many", "user", "ok"): 1,
    ("delete", "user", "ok"): 1,
    ("delete_many", "user", "ok"): 1,
    ("add", "user", "ok"): 1,
    ("add", "user", "hit"): 1,
    ("incr", "counter", "ok"): 1,
    ("incr", "user", "error"): 1,
    ("touch", "user", "hit"): 1,
    ("touch", "user", "miss"): 1,
    ("get_or_set", "user", "miss"): 1,
    ("get_or_set", "user", "hit"): 1,
    ("clear", "user", "ok"): 1,
    ("get", "bad:type", "error"): 1,
}
EXPECTED_LOOKUPS: dict[Key, int] = {
    ("get", "user", "hit"): 2,
    ("get", "user", "miss"): 3,
    ("get_many", "user", "hit"): 1,
    ("get_many", "user", "miss"): 2,
}
ERROR_TYPES = {
    ("incr", "user"): "pevensie_cache.errors.CounterError",
    ("get", "bad:type"): "pevensie_cache.errors.ArgumentValueError",
}


def run_sync(c: PevensieCache) -> None:
    c.set("user", "1", "a")
    assert c.get("user", "1") == "a"
    with pytest.raises(CacheMiss):
        c.get("user", "2")
    assert c.get("user", "2", None) is None
    assert c.get_many("user", iter(["1", "2", "3"])) == {"1": "a"}
    c.set_many("user", {"3": "c", "4": "d"})
    c.delete("user", "3")
    c.delete_many("user", ["4"])
    assert c.add("user", "5", "e") is True
    assert c.add("user", "5", "f") is False
    assert c.incr("counter", "n") == 1
    with pytest.raises(Exception, match="not a 64-bit integer"):
        c.incr("user", "1")
    assert c.touch("user", "1", 60) is True
    assert c.touch("user", "nope", 60) is False
    assert c.get_or_set("user", "6", lambda: "g") == "g"
    assert c.get_or_set("user", "6", lambda: "never") == "g"
    assert c.clear("user") == 3
    with pytest.raises(ValueError, match="must not contain ':'"):
        c.get("bad:type", "k")


async def run_async(c: AsyncPevensieCache) -> None:
    await c.set("user", "1", "a")
    assert await c.get("user", "1") == "a"
    with pytest.raises(CacheMiss):
        await c.get("user", "2")
    assert await c.get("user", "2", None) is None
    assert await c.get_many("user", iter(["1", "2", "3"])) == {"1": "a"}
    await c.set_many("user", {"3": "c", "4": "d"})
    await c.delete("user", "3")
    await c.delete_many("user", ["4"])
    assert await c.add("user", "5", "e") is True
    assert await c.add("user", "5", "f") is False
    assert await c.incr("counter", "n") == 1
    with pytest.raises(Exception, match="not a 64-bit integer"):
        await c.incr("user", "1")
    assert await c.touch("user", "1", 60) is True
    assert await c.touch("user", "nope", 60) is False

    async def load() -> str:
        return "g"

    assert await c.get_or_set("user", "6", load) == "g"
    assert await c.get_or_set("user", "6", lambda: "never") == "g"
    assert await c.clear("user") == 3
    with pytest.raises(ValueError, match="must not contain ':'"):
        await c.get("bad:type", "k")


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def key_of(point: Any) -> Key:
    attributes = point.attributes
    return (
        attributes["db.operation.name"],
        attributes["pevensie.cache.resource_type"],
        attributes["pevensie.cache.outcome"],
    )


def check_recorded(reader: InMemoryMetricReader, system: str) -> None:
    operations = points(reader, "pevensie.cache.operations")
    assert {key_of(point): point.value for point in operations} == EXPECTED_OPERATIONS
    for point in operations:
        assert point.attributes["db.system.name"] == system
        operation, resource_type, outcome = key_of(point)
        if outcome == "error":
            assert point.attributes["error.type"] == ERROR_TYPES[(operation, resource_type)]
        else:
            assert "error.type" not in point.attributes

    durations = points(reader, "pevensie.cache.operation.duration")
    assert {key_of(point): point.count for point in durations} == EXPECTED_OPERATIONS
    for point in durations:
        assert 0 < point.min <= point.max < 30
        assert point.min * point.count <= point.sum <= point.max * point.count
    # get_or_set's duration holds the get and set inside it.
    by_key = {key_of(point): point for point in durations}
    assert by_key[("get_or_set", "user", "miss")].sum > by_key[("set", "user", "ok")].min

    lookups = points(reader, "pevensie.cache.lookups")
    assert {key_of(point): point.value for point in lookups} == EXPECTED_LOOKUPS


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture(params=["memory", "redis"])
def driver_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
        return
    server: RedisServer = request.getfixturevalue("pevensie_redis_server")
    server.ensure_running()
    with server.client() as raw:
        raw.flushdb()
    yield server.url


def test_sync_cache_records_every_operation(driver_url: str, reader: InMemoryMetricReader) -> None:
    provider = MeterProvider(metric_readers=[reader])
    c = instrument(cache.from_url(driver_url), meter_provider=provider)
    with c:
        run_sync(c)
    check_recorded(reader, "memory" if driver_url == "memory://" else "redis")


async def test_async_cache_records_every_operation(
    driver_url: str, reader: InMemoryMetricReader
) -> None:
    provider = MeterProvider(metric_readers=[reader])
    c = instrument(cache.from_url_async(driver_url), meter_provider=provider)
    async with c:
        await run_async(c)
    check_recorded(reader, "memory" if driver_url == "memory://" else "redis")


def test_spans_only_with_a_tracer_provider(reader: InMemoryMetricReader) -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])

    quiet = instrument(cache.new(driver="memory"), meter_provider=meter_provider).connect()
    quiet.set("user", "1", "a")
    assert exporter.get_finished_spans() == ()

    traced = instrument(
        cache.new(driver="memory"), meter_provider=meter_provider, tracer_provider=tracer_provider
    ).connect()
    traced.set("user", "1", "a")
    traced.get("user", "2", None)
    with pytest.raises(Exception, match="not a 64-bit integer"):
        traced.incr("user", "1")
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["set user", "get user", "incr user"]
    assert all(span.kind is SpanKind.CLIENT for span in spans)
    set_span, get_span, incr_span = spans
    assert dict(get_span.attributes or {}) == {
        "db.system.name": "memory",
        "db.operation.name": "get",
        "pevensie.cache.resource_type": "user",
        "pevensie.cache.outcome": "miss",
    }
    assert set_span.status.status_code is StatusCode.UNSET
    assert incr_span.status.status_code is StatusCode.ERROR
    assert incr_span.attributes["error.type"] == "pevensie_cache.errors.CounterError"  # type: ignore[index]
    assert [event.name for event in incr_span.events] == ["exception"]


def test_resource_types_are_bounded(reader: InMemoryMetricReader) -> None:
    provider = MeterProvider(metric_readers=[reader])
    capped = instrument(cache.new(driver="memory"), meter_provider=provider, max_resource_types=2)
    allowed = instrument(cache.new(driver="memory"), meter_provider=provider, resource_types=["r3"])
    with capped, allowed:
        for resource_type in ("r1", "r2", "r3", "r4", "r1"):
            capped.set(resource_type, "k", "v")
            allowed.set(resource_type, "k", "v")
    counts: dict[str, int] = {}
    for point in points(reader, "pevensie.cache.operations"):
        label = point.attributes["pevensie.cache.resource_type"]
        counts[label] = counts.get(label, 0) + point.value
    # capped: r1 r2 r1 by name, r3 r4 as other; allowed: r3 by name, four others.
    assert counts == {"r1": 2, "r2": 1, "other": 2 + 4, "r3": 1}

    with pytest.raises(ConfigError):
        instrument(cache.new(driver="memory"), resource_types="r1")
    with pytest.raises(ConfigError):
        instrument(cache.new(driver="memory"), max_resource_types=-1)


def test_an_uninstrumented_cache_runs_the_plain_facade(reader: InMemoryMetricReader) -> None:
    provider = MeterProvider(metric_readers=[reader])
    plain = cache.new(driver="memory")
    instrumented = instrument(cache.new(driver="memory"), meter_provider=provider)
    assert type(plain) is PevensieCache  # instrumenting another cache changed nothing here
    assert isinstance(instrumented, PevensieCache)
    assert type(instrumented) is not PevensieCache
    assert recorder_of(plain) is None
    assert recorder_of(instrumented) is not None

    with instrumented:
        instrumented.set("user", "1", "a")
        assert uninstrument(instrumented) is instrumented
        assert type(instrumented) is PevensieCache
        assert instrumented.get("user", "1") == "a"  # the same cache, still connected
    values = {key_of(p): p.value for p in points(reader, "pevensie.cache.operations")}
    assert values == {("set", "user", "ok"): 1}


def near_lookups(reader: InMemoryMetricReader) -> dict[str, int]:
    return {
        point.attributes["pevensie.cache.outcome"]: point.value
        for point in points(reader, "pevensie.cache.near_cache.lookups")
    }


def test_near_cache_reads_are_counted_when_collected(
    pevensie_redis_server: RedisServer, reader: InMemoryMetricReader
) -> None:
    pevensie_redis_server.ensure_running()
    provider = MeterProvider(metric_readers=[reader])
    url = f"{pevensie_redis_server.url}?near_cache=true"
    with instrument(cache.from_url(url), meter_provider=provider) as c:
        c.set("user", "1", "a")
        for _ in range(5):
            assert c.get("user", "1") == "a"
        stats = c.driver.near_cache_stats()  # type: ignore[attr-defined]
        found = near_lookups(reader)
        assert found == {"hit": stats.hits, "miss": stats.misses}
        assert found["hit"] >= 1  # the first read went to the server, later ones may not
        assert found["hit"] + found["miss"] == 5
        assert {
            p.attributes["db.system.name"]
            for p in points(reader, "pevensie.cache.near_cache.lookups")
        } == {"redis"}
        uninstrument(c)
        assert near_lookups(reader) == {}  # an uninstrumented cache reports nothing


async def test_near_cache_reads_are_counted_on_the_async_face(
    pevensie_redis_server: RedisServer, reader: InMemoryMetricReader
) -> None:
    pevensie_redis_server.ensure_running()
    provider = MeterProvider(metric_readers=[reader])
    url = f"{pevensie_redis_server.url}?near_cache=true"
    async with instrument(cache.from_url_async(url), meter_provider=provider) as c:
        await c.set("user", "2", "b")
        for _ in range(4):
            assert await c.get("user", "2") == "b"
        found = near_lookups(reader)
        assert found["hit"] + found["miss"] == 4


def test_a_cache_without_a_near_cache_reports_no_near_lookups(
    reader: InMemoryMetricReader,
) -> None:
    c = instrument(
        cache.new(driver="memory"), meter_provider=MeterProvider(metric_readers=[reader])
    )
    with c:
        c.set("user", "1", "a")
        c.get("user", "1")
    assert points(reader, "pevensie.cache.near_cache.lookups") == []


class CountingDriver(MemoryDriver):
    """A third-party driver whose near cache reports hits and misses only."""

    def near_cache_stats(self) -> Any:
        return SimpleNamespace(hits=7, misses=3)


def test_a_driver_reporting_only_hits_and_misses_gets_its_lookups_and_nothing_else(
    reader: InMemoryMetricReader,
) -> None:
    c = instrument(
        PevensieCache(CountingDriver()), meter_provider=MeterProvider(metric_readers=[reader])
    )
    with c:
        assert near_lookups(reader) == {"hit": 7, "miss": 3}
        for figure in ("invalidations", "flushes", "evictions", "entries", "memory.usage"):
            assert points(reader, f"pevensie.cache.near_cache.{figure}") == []


def test_without_opentelemetry_instrument_says_what_to_install() -> None:
    script = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'opentelemetry':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from pevensie_cache import cache, instrument, ConfigError\n"
        "try:\n"
        "    instrument(cache.new(driver='memory'))\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert "pip install 'pevensie-cache[otel]'" in result.stdout, result.stderr


def test_the_readme_prometheus_example_serves_the_metrics(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "docs" / "guide" / "cli-observability.md").read_text(
        encoding="utf-8"
    )
    match = re.search(r"<!-- prometheus-example -->\n```python\n(.*?)```", readme, re.DOTALL)
    assert match, "the docs' Prometheus example is marked <!-- prometheus-example -->"
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    example = (
        match.group(1)
        .replace("9464", str(port))
        .replace('cache.from_url("redis://localhost:6379/0")', 'cache.from_url("memory://")')
    )
    script = tmp_path / "example.py"
    script.write_text(
        example + "\nwith c:\n"
        "    c.set('user', '1', 'Ada')\n"
        "    c.get('user', '1')\n"
        "import urllib.request\n"
        f"print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    scraped = result.stdout
    assert re.search(
        r'pevensie_cache_operations_total\{[^}]*db_operation_name="get"[^}]*'
        r'pevensie_cache_outcome="hit"[^}]*\} 1\.0',
        scraped,
    ), scraped
    assert "pevensie_cache_operation_duration_seconds_bucket{" in scraped
    assert 'db_system_name="memory"' in scraped
