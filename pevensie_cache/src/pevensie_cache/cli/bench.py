"""``pevensie-cache bench``: a short benchmark of one cache, from where the command runs.

Single ``set`` (with a TTL) and ``get`` (hits), ``--ops`` calls each, then
``set_many`` and ``get_many`` batches of ``--batch`` keys, a tenth as many
calls; each timed call by call on one thread, after a short warm-up.
Throughput is calls (and keys) per second of time spent in the calls;
latency percentiles are per call. With ``--compare``, the driver's own client
library (redis-py for the Redis driver) runs the same workload on the same
connections. Every key lives under one fresh resource type, cleared at the
end. This is a quick look from one client, not the project's benchmark
(``benchmarks/run.py``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from pevensie_cache.facade import PevensieCache
from pevensie_cache.inspection import Baseline

__all__ = [
    "BenchResult",
    "Workload",
    "fresh_resource_type",
    "percentile",
    "run_bench",
    "workloads",
]

TTL_SECONDS = 300
WARM_UP = 50


@dataclass(frozen=True)
class BenchResult:
    """One (contender, operation) row of the report."""

    contender: str
    operation: str
    calls: int
    keys_per_call: int
    calls_per_second: float
    keys_per_second: float
    p50_us: float
    p95_us: float
    p99_us: float

    def as_dict(self) -> dict[str, object]:
        """Return the row as a JSON-ready mapping."""
        return asdict(self)


@dataclass(frozen=True)
class Workload:
    """One operation of one contender: ``call(i)`` does the ``i``-th of ``calls`` calls."""

    contender: str
    operation: str
    keys_per_call: int
    calls: int
    call: Callable[[int], object]


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Return the ``fraction`` percentile of ``sorted_values`` (nearest rank)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def workloads(
    c: PevensieCache,
    baseline: Baseline | None,
    resource_type: str,
    batch: int,
    value_size: int,
    ops: int,
) -> list[Workload]:
    """Return the workloads, the cache's first and then, if given, the baseline's."""
    value = "v" * value_size
    count = max(ops, 1)
    batch_calls = max(count // 10, 1)
    keys = [f"k{i}" for i in range(count)]
    batches = [[keys[(i * batch + j) % count] for j in range(batch)] for i in range(batch_calls)]
    items = [dict.fromkeys(group, value) for group in batches]
    found: list[Workload] = [
        Workload(
            "pevensie",
            "set",
            1,
            count,
            lambda i: c.set(resource_type, keys[i], value, TTL_SECONDS),
        ),
        Workload("pevensie", "get", 1, count, lambda i: c.get(resource_type, keys[i])),
        Workload(
            "pevensie",
            "set_many",
            batch,
            batch_calls,
            lambda i: c.set_many(resource_type, items[i], TTL_SECONDS),
        ),
        Workload(
            "pevensie",
            "get_many",
            batch,
            batch_calls,
            lambda i: c.get_many(resource_type, batches[i]),
        ),
    ]
    if baseline is not None:
        raw = baseline
        prefix = f"{resource_type}:raw-"
        raw_keys = [prefix + key for key in keys]
        raw_batches = [[prefix + key for key in group] for group in batches]
        raw_items = [dict.fromkeys(group, value) for group in raw_batches]
        name = raw.name
        found += [
            Workload(name, "set", 1, count, lambda i: raw.set(raw_keys[i], value, TTL_SECONDS)),
            Workload(name, "get", 1, count, lambda i: raw.get(raw_keys[i])),
            Workload(
                name,
                "set_many",
                batch,
                batch_calls,
                lambda i: raw.set_many(raw_items[i], TTL_SECONDS),
            ),
            Workload(name, "get_many", batch, batch_calls, lambda i: raw.get_many(raw_batches[i])),
        ]
    return found


def run_bench(found: list[Workload], advance: Callable[[int], None]) -> list[BenchResult]:
    """Run every workload; ``advance(n)`` reports ``n`` more calls done, between timed calls."""
    results: list[BenchResult] = []
    clock = time.perf_counter_ns
    for workload in found:
        call = workload.call
        calls = workload.calls
        for i in range(min(WARM_UP, calls)):
            call(i)
        step = max(1, calls // 50)
        latencies: list[int] = []
        record = latencies.append
        for start in range(0, calls, step):
            for i in range(start, min(start + step, calls)):
                began = clock()
                call(i)
                record(clock() - began)
            advance(min(step, calls - start))
        spent = sum(latencies) / 1e9 or 1e-9
        ordered = sorted(value / 1000 for value in latencies)
        results.append(
            BenchResult(
                contender=workload.contender,
                operation=workload.operation,
                calls=calls,
                keys_per_call=workload.keys_per_call,
                calls_per_second=calls / spent,
                keys_per_second=calls * workload.keys_per_call / spent,
                p50_us=percentile(ordered, 0.50),
                p95_us=percentile(ordered, 0.95),
                p99_us=percentile(ordered, 0.99),
            )
        )
    return results


def fresh_resource_type() -> str:
    """Return a resource type no other run uses."""
    return f"pevensie-bench-{secrets.token_hex(4)}"
