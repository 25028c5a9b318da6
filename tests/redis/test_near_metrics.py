"""instrument(c) on a near cache: its counters, entries and bytes as OpenTelemetry instruments.

What the OpenTelemetry SDK's in-memory reader collects is compared, figure by
figure, with the driver's own ``near_cache_stats()`` after hits, misses, an
eviction, another client's write (an invalidation) and ``FLUSHDB`` (a flush).
"""

from __future__ import annotations

from typing import Any

import pytest
from near_support import FACES, near_url, open_face, settle, settled_hit, wait_until
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from pevensie_cache import instrument, uninstrument
from pevensie_redis.testing import RedisServer

FIGURES = {  # instrument -> (the NearStats field, unit)
    "pevensie.cache.near_cache.invalidations": ("invalidations", "{key}"),
    "pevensie.cache.near_cache.flushes": ("flushes", "{flush}"),
    "pevensie.cache.near_cache.evictions": ("evictions", "{entry}"),
    "pevensie.cache.near_cache.entries": ("entries", "{entry}"),
    "pevensie.cache.near_cache.memory.usage": ("bytes", "By"),
}
LOOKUPS = "pevensie.cache.near_cache.lookups"


def collect(reader: InMemoryMetricReader) -> dict[str, Any]:
    """Return the near cache's metrics of one collection, by name."""
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name.startswith("pevensie.cache.near_cache.") and metric.data.data_points
    }


@pytest.mark.parametrize("kind", FACES)
def test_instrument_exports_the_near_caches_counters_entries_and_bytes(
    kind: str, pevensie_redis_server: RedisServer
) -> None:
    pevensie_redis_server.ensure_running()
    reader = InMemoryMetricReader()
    face = open_face(kind, near_url(pevensie_redis_server.url, "near_cache=true&near_cache_size=2"))
    try:
        instrument(face.cache, meter_provider=MeterProvider(metric_readers=[reader]))
        with pevensie_redis_server.client() as raw:
            raw.mset({"metrics:1": "one", "metrics:2": "two", "metrics:3": "three"})
            settle(face, raw)
            for key in ("1", "2", "3"):  # a store of two entries: the third read evicts
                settled_hit(face, "metrics", key)
            before = face.stats()
            raw.set("metrics:3", "changed")  # held: its invalidation arrives
            wait_until(lambda: face.stats().invalidations > before.invalidations, "the write")
            raw.flushdb()
            wait_until(lambda: face.stats().flushes > before.flushes, "FLUSHDB's flush")
            settled_hit(face, "metrics", "1")  # a miss, held again
        stats = face.stats()
        metrics = collect(reader)
        assert face.stats() == stats  # nothing moved while collecting
        assert set(metrics) == {LOOKUPS, *FIGURES}
        for name, (field, unit) in FIGURES.items():
            (point,) = metrics[name].data.data_points
            assert (name, point.value) == (name, getattr(stats, field))
            assert metrics[name].unit == unit
            assert dict(point.attributes) == {"db.system.name": "redis"}
        lookups = {
            p.attributes["pevensie.cache.outcome"]: p.value
            for p in metrics[LOOKUPS].data.data_points
        }
        assert lookups == {"hit": stats.hits, "miss": stats.misses}
        assert stats.evictions >= 1
        assert stats.invalidations >= 1
        assert stats.flushes >= 1
        assert stats.entries >= 1
        assert stats.bytes > 0
        uninstrument(face.cache)
        assert collect(reader) == {}  # an uninstrumented cache reports nothing
    finally:
        face.close()


def test_a_disconnected_near_cache_reports_nothing(pevensie_redis_server: RedisServer) -> None:
    pevensie_redis_server.ensure_running()
    reader = InMemoryMetricReader()
    face = open_face("sync", near_url(pevensie_redis_server.url))
    instrument(face.cache, meter_provider=MeterProvider(metric_readers=[reader]))
    face.get("metrics", "any", None)
    assert set(collect(reader)) == {LOOKUPS, *FIGURES}
    face.close()
    assert collect(reader) == {}
