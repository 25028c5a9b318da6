"""Helpers of the freshness and tag tests: caches on a store, raw envelopes, metrics, waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aside_support import Target
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from redis.cluster import RedisCluster

from pevensie_cache import AsyncPevensieCache, PevensieCache, cache
from pevensie_cache.envelope import Envelope, unpack


class Loads:
    """A loader returning ``v1``, ``v2``... in turn, and counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return f"v{self.calls}"


def sync_caches(store: Target, count: int) -> list[PevensieCache]:
    """``count`` connected caches on ``store``: separate processes, as far as locks go.

    The memory driver's store lives in its cache, so on memory there is one.
    """
    if store.name == "memory":
        return [cache.from_url(store.url).connect()]
    return [cache.from_url(store.url).connect() for _ in range(count)]


async def async_caches(store: Target, count: int) -> list[AsyncPevensieCache]:
    """:func:`sync_caches` for the async face."""
    if store.name == "memory":
        return [await cache.from_url_async(store.url).connect()]
    return [await cache.from_url_async(store.url).connect() for _ in range(count)]


def raw_envelope(store: Target, c: PevensieCache | AsyncPevensieCache, full_key: str) -> Envelope:
    """The envelope stored under ``full_key``, read without the facade."""
    if store.name == "memory":
        driver: Any = c.driver
        text = getattr(driver, "store", driver)._data[full_key][0]
    else:
        text = raw_bytes(store, full_key).decode("utf-8", "surrogateescape")
    return unpack(text, "test", full_key)


def raw_bytes(store: Target, full_key: str) -> bytes:
    """The bytes stored under ``full_key`` on the server, read with a raw client."""
    if store._server is not None:
        with store._server.client(decode_responses=False) as client:
            data = client.get(full_key)
    else:
        assert store._cluster is not None
        cluster = store._cluster
        client = RedisCluster(host=cluster.host, port=cluster.port, decode_responses=False)
        try:
            data = client.get(full_key)
        finally:
            client.close()
    assert isinstance(data, bytes), data
    return data


def total(reader: InMemoryMetricReader, name: str, attributes: dict[str, str]) -> int:
    """The sum of the counter ``name``'s points whose attributes include ``attributes``."""
    data = reader.get_metrics_data()
    if data is None:
        return 0
    return sum(
        point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
        if all(point.attributes.get(k) == v for k, v in attributes.items())
    )


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until ``check()`` is true (a bound, not a speed goal)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(0.005)


def past_ttl(seconds: float = 1.05) -> None:
    """Sleep until an entry written just before with ``ttl_seconds=1`` is past its TTL."""
    time.sleep(seconds)
