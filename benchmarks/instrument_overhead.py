"""What instrument(c) costs per operation: plain cache vs instrumented, memory and Redis.

``python benchmarks/instrument_overhead.py [--ops N] [--rounds R] [--markdown FILE]``
starts its own pinned valkey-server (as ``run.py`` does) and measures, in
interleaved rounds, the wall-clock microseconds per call of ``get`` (hit),
``get`` (miss, with a default), ``set`` (with a TTL) and ``get_many`` of 100,
on four caches per driver:

- ``plain``: an uninstrumented cache (the facade's code, untouched);
- ``no SDK``: instrumented on the OpenTelemetry API's global meter provider
  with no SDK configured (the recordings go nowhere);
- ``metrics``: instrumented on an SDK ``MeterProvider`` (an in-memory reader:
  the aggregation work of any exporter, without the export);
- ``metrics + spans``: the same, plus an SDK ``TracerProvider`` whose batch
  processor hands spans to an exporter that drops them.

CPU time rather than wall-clock time, because the cost of instrumenting is
client work and because on a shared machine other processes stretch the wall
clock of every row alike. The machine's load average is printed before and
after: read the figures with it. Two reference rows time one SDK
``Counter.add`` and one ``Histogram.record`` with this package's four
attributes: an instrumented ``get`` makes three such recordings (the
operation, its duration, the key lookup), a ``set`` two. Asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from server import ValkeyServer, pin_pid, pin_to_one_cpu

from pevensie_cache import PevensieCache, cache, instrument

VALUE = "v" * 100
KEYS = [f"k{i}" for i in range(100)]
VARIANTS = ["plain", "no SDK", "metrics", "metrics + spans"]


class DropSpans(SpanExporter):
    """A span exporter that sends nothing anywhere."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def caches(url: str) -> dict[str, PevensieCache]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropSpans()))
    built = {
        "plain": cache.from_url(url),
        "no SDK": instrument(cache.from_url(url)),
        "metrics": instrument(
            cache.from_url(url), meter_provider=MeterProvider([InMemoryMetricReader()])
        ),
        "metrics + spans": instrument(
            cache.from_url(url),
            meter_provider=MeterProvider([InMemoryMetricReader()]),
            tracer_provider=tracer_provider,
        ),
    }
    for c in built.values():
        c.connect()
        c.set_many("bench", dict.fromkeys(KEYS, VALUE), ttl_seconds=3600)
    return built


def operations(c: PevensieCache) -> dict[str, Callable[[], object]]:
    return {
        "get (hit)": lambda: c.get("bench", "k1"),
        "get (miss)": lambda: c.get("bench", "absent", None),
        "set (TTL)": lambda: c.set("bench", "k2", VALUE, 3600),
        "get_many of 100": lambda: c.get_many("bench", KEYS),
    }


def measure(
    cases: dict[tuple[str, str], Callable[[], object]], ops: int, rounds: int
) -> dict[tuple[str, str], float]:
    """Median client CPU µs per call of every (operation, variant), interleaved rounds."""
    samples: dict[tuple[str, str], list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(rounds):
        shift = (r * 7) % len(names)
        for name in names[shift:] + names[:shift]:
            call = cases[name]
            gc.collect()
            gc.disable()
            try:
                began = time.process_time_ns()
                for _ in range(ops):
                    call()
                spent = time.process_time_ns() - began
            finally:
                gc.enable()
            samples[name].append(spent / 1000 / ops)
    return {name: statistics.median(values) for name, values in samples.items()}


def sdk_references(rounds: int, ops: int) -> list[str]:
    meter = MeterProvider([InMemoryMetricReader()]).get_meter("reference")
    counter = meter.create_counter("reference.count")
    histogram = meter.create_histogram("reference.duration", unit="s")
    attributes = {
        "db.system.name": "memory",
        "db.operation.name": "get",
        "pevensie.cache.resource_type": "bench",
        "pevensie.cache.outcome": "hit",
    }
    cases: dict[tuple[str, str], Callable[[], object]] = {
        ("SDK Counter.add", "-"): lambda: counter.add(1, attributes),
        ("SDK Histogram.record", "-"): lambda: histogram.record(0.0001, attributes),
        ("empty call (a lambda)", "-"): lambda: None,
    }
    results = measure(cases, ops, rounds)
    lines = ["#### OpenTelemetry SDK, one recording with four attributes", ""]
    lines += ["| call | CPU µs |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f} |" for (name, _), value in results.items()]
    return [*lines, ""]


def report(driver: str, results: dict[tuple[str, str], float]) -> list[str]:
    lines = [
        f"#### {driver}",
        "",
        "| operation | plain | no SDK (Δ) | metrics (Δ) | metrics + spans (Δ) |",
        "|---|---:|---:|---:|---:|",
    ]
    for operation in dict.fromkeys(op for op, _ in results):
        plain = results[(operation, "plain")]
        cells = [f"{plain:.2f}"]
        for variant in VARIANTS[1:]:
            value = results[(operation, variant)]
            cells.append(f"{value:.2f} (+{value - plain:.2f})")
        lines.append(f"| {operation} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000, help="calls per sample")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--markdown", metavar="FILE", help="also write the report here")
    args = parser.parse_args()
    load_before = os.getloadavg()
    pin = pin_to_one_cpu()
    lines: list[str] = []
    with ValkeyServer() as server:
        if pin.cpu is not None:
            pin_pid(server.pid, pin.cpu)
        for driver, url in (("memory", "memory://"), ("redis (valkey-server)", server.url)):
            built = caches(url)
            try:
                cases = {
                    (operation, variant): call
                    for variant, c in built.items()
                    for operation, call in operations(c).items()
                }
                ops = args.ops if driver == "memory" else max(args.ops // 4, 1)
                results = measure(cases, ops, args.rounds)
            finally:
                for c in built.values():
                    c.disconnect()
            lines += report(driver, results)
    lines += sdk_references(args.rounds, args.ops)
    load_after = os.getloadavg()
    header = [
        f"CPU: {pin.note}; {args.rounds} interleaved rounds; median client CPU µs per call "
        f"(memory: {args.ops} calls per sample, redis: {max(args.ops // 4, 1)}).",
        f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in load_after)} ({os.cpu_count()} CPUs).",
        "",
    ]
    text = "\n".join(header + lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
