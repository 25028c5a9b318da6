"""The soak suite: every face and mode under sustained mixed traffic; nothing may grow.

Each variant runs in a process of its own (``soak/worker.py``): 60% reads, 30%
writes with TTLs, deletes, ``get_many``/``set_many`` batches of 10 and
``get_or_set`` with a lease lock, over 200,000 keys (half the reads from a hot
set of 2,000, so a near cache of 1,000 entries hits and evicts), through the
public API only, while a foreign client writes into the hot set from this
process. The worker samples its resident memory, its Python heap
(tracemalloc), its open file descriptors, its threads, its asyncio tasks and
its connections on the servers (CLIENT LIST, by client name). After the
warm-up (the first 30% of the run) none of them may grow beyond
:data:`variants.BOUNDS` (see :func:`growth`), and no call may fail.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from results import ROW_PROPERTY
from variants import (
    BOUNDS,
    CONCURRENCY,
    HOT_KEYS,
    KEYSPACE,
    MIB,
    NEAR_CACHE_SIZE,
    WARM_UP_SHARE,
    Variant,
    all_variants,
)

from pevensie_redis.testing import ProcessServer
from pevensie_test_support import LocalCluster, LocalSentinel

WORKER = Path(__file__).with_name("worker.py")


class Topology:
    """Where a variant connects, the nodes to count its connections on, and a foreign client."""

    def __init__(self, url: str, nodes: list[tuple[str, int]], foreign: Any) -> None:
        self.url = url
        self.nodes = nodes
        self.foreign = foreign


@pytest.fixture
def topology(request: pytest.FixtureRequest, variant: Variant) -> Iterator[Topology]:
    if variant.topology == "single":
        server: ProcessServer = request.getfixturevalue("single_server")
        with server.client() as raw:
            yield Topology(server.url, [server.address], raw)
    elif variant.topology == "sentinel":
        sentinel: LocalSentinel = request.getfixturevalue("sentinel_topology")
        hosts = ",".join(f"{host}:{port}" for host, port in sentinel.sentinels)
        url = f"redis+sentinel://{hosts}/{sentinel.service_name}"
        nodes = [node.address for node in (*sentinel.data_nodes, *sentinel.sentinel_nodes)]
        with sentinel.current_primary().client() as raw:
            yield Topology(url, nodes, raw)
    else:
        cluster: LocalCluster = request.getfixturevalue("cluster_topology")
        url = f"redis://{cluster.host}:{cluster.port}/0?cluster=true"
        raw = RedisCluster(host=cluster.host, port=cluster.port, decode_responses=True)
        try:
            yield Topology(url, cluster.startup_nodes, raw)
        finally:
            raw.close()


def foreign_writes(client: redis.Redis | RedisCluster, stop: threading.Event) -> int:
    """Another application writes into the hot keys, about 200 times a second."""
    rng = random.Random(7)
    written = 0
    while not stop.wait(0.005):
        client.set(f"soak:k{rng.randrange(HOT_KEYS)}", f"foreign {written}", ex=60)
        written += 1
    return written


def growth(samples: list[dict[str, float]], seconds: float) -> dict[str, float]:
    """How much each figure's floor rose after the warm-up.

    The lowest value of the last quarter of the judged samples against the
    lowest of the first quarter: what a call has in flight at the moment of a
    sample (a task per node of a Cluster batch, a buffer) comes and goes; what
    leaks raises the floor.
    """
    judged = [s for s in samples if s["t"] >= WARM_UP_SHARE * seconds]
    if len(judged) < 2:
        judged = samples[-2:]
    window = max(2, len(judged) // 4)
    early, late = judged[:window], judged[-window:]
    return {name: min(s[name] for s in late) - min(s[name] for s in early) for name in BOUNDS}


def run_variant(variant: Variant, topology: Topology, seconds: float) -> dict[str, Any]:
    client_name = f"soak-{variant.id}-{os.getpid()}"
    query = {"client_name": client_name, "timeout": "5000"}
    if variant.near:
        query.update(near_cache="true", near_cache_size=str(NEAR_CACHE_SIZE))
    separator = "&" if "?" in topology.url else "?"
    url = topology.url + separator + "&".join(f"{k}={v}" for k, v in query.items())
    settings = {
        "url": url,
        "face": variant.face,
        "parser": variant.parser,
        "seconds": seconds,
        "interval": max(0.1, seconds / 40),
        "concurrency": CONCURRENCY[variant.face],
        "keyspace": KEYSPACE,
        "hot_keys": HOT_KEYS,
        "client_name": client_name,
        "nodes": topology.nodes,
    }
    stop = threading.Event()
    writer = threading.Thread(target=foreign_writes, args=(topology.foreign, stop), daemon=True)
    writer.start()
    try:
        done = subprocess.run(
            [sys.executable, str(WORKER), json.dumps(settings)],
            capture_output=True,
            text=True,
            timeout=seconds + 120,
            check=False,
        )
    finally:
        stop.set()
        writer.join(10)
    if done.returncode != 0:
        pytest.fail(f"the worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.soak
@pytest.mark.parametrize("variant", all_variants(), ids=lambda v: v.id)
def test_nothing_grows_under_sustained_traffic(
    variant: Variant,
    topology: Topology,
    seconds_per_variant: float,
    request: pytest.FixtureRequest,
) -> None:
    result = run_variant(variant, topology, seconds_per_variant)
    grown = growth(result["samples"], seconds_per_variant)
    first, last = result["samples"][0], result["samples"][-1]
    row = {
        "variant": variant.id,
        "seconds": round(last["t"], 1),
        "operations": result["operations"],
        "rss_start_mib": round(first["rss"] / MIB, 1),
        "rss_end_mib": round(last["rss"] / MIB, 1),
        "connections": first["connections"],
        "growth": grown,
    }
    request.node.user_properties.append((ROW_PROPERTY, row))  # sent with the report
    print(json.dumps(row))
    assert result["errors"] == {}, result["first_errors"]
    assert result["hiredis_loaded"] == (variant.parser == "hiredis")
    assert result["operations"] > 0
    assert first["connections"] >= 1  # the cache's connections are the ones counted
    over = {name: value for name, value in grown.items() if value > BOUNDS[name]}
    assert over == {}, (over, result["samples"])
