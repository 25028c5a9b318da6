"""Framework backends side by side: ours against the backends users would otherwise use.

Run with ``nox -s bench_frameworks`` or directly, in an environment with
``pevensie-cache[django,flask,dogpile]``, django-redis and hiredis installed:
``python benchmarks/frameworks_bench.py [--quick] [--rounds N] [--seconds S]``.

Contenders, each with its own defaults as users configure it, all on one
valkey-server the script starts (``server.py``), hiredis installed:

- Django: its built-in ``RedisCache``, django-redis ``RedisCache``, and
  ``pevensie_cache.contrib.django.PevensieCache``; the async methods of
  Django's ``RedisCache`` (a worker-thread hop through ``sync_to_async``; so
  are django-redis's) against ours (native);
- Flask-Caching: its ``RedisCache`` (cachelib) against ours, the backend
  objects its ``Cache`` (and ``@cached``/``@memoize``) call;
- dogpile.cache: its ``dogpile.cache.redis`` backend against ``"pevensie"``,
  through a region.

Every one pickles values (100-byte strings here) and sets a 300 s TTL. As in
``run.py``: the script pins itself and the server to one CPU, calibrates each
(contender, workload) to about ``--seconds`` per sample and runs interleaved
rounds (order rotated each round); it reports the median and the min of the
rounds and each contender's ratio to the framework's built-in backend. It
asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from server import (
    ValkeyServer,
    find_valkey_server,
    install_signal_handlers,
    pin_pid,
    pin_to_one_cpu,
    server_version,
)

VALUE = "v" * 100
TTL = 300
KEYSPACE = 1000
BATCH = 100
KEYS = [f"key:{i}" for i in range(KEYSPACE)]
MISSING = [f"missing:{i}" for i in range(KEYSPACE)]
BATCHES = [KEYS[i : i + BATCH] for i in range(0, KEYSPACE, BATCH)]
TASKS = 64

Op = Callable[[int], None]
"""Runs a workload ``n`` times (a batch workload: ``n`` batches)."""


class Contender:
    """One backend of one framework: its workloads as ``name -> op``."""

    def __init__(self, framework: str, name: str, ops: dict[str, Op], units: dict[str, int]):
        self.framework = framework
        self.name = name
        self.ops = ops
        self.units = units  # keys per call for batch workloads


def _cycle(n: int, items: Sequence[Any]) -> list[Any]:
    return [items[i % len(items)] for i in range(n)]


def kv_ops(
    get: Callable[[str], Any],
    set_: Callable[[str, Any], Any],
    get_many: Callable[[list[str]], Any],
    set_many: Callable[[dict[str, Any]], Any],
    incr: Callable[[str], Any] | None,
) -> dict[str, Op]:
    """The common workloads over one backend's calls."""

    def op_set(n: int) -> None:
        for key in _cycle(n, KEYS):
            set_(key, VALUE)

    def op_get_hit(n: int) -> None:
        for key in _cycle(n, KEYS):
            get(key)

    def op_get_miss(n: int) -> None:
        for key in _cycle(n, MISSING):
            get(key)

    def op_get_many(n: int) -> None:
        for keys in _cycle(n, BATCHES):
            get_many(keys)

    items = [dict.fromkeys(keys, VALUE) for keys in BATCHES]

    def op_set_many(n: int) -> None:
        for batch in _cycle(n, items):
            set_many(batch)

    ops = {
        "set": op_set,
        "get_hit": op_get_hit,
        "get_miss": op_get_miss,
        "get_many": op_get_many,
        "set_many": op_set_many,
    }
    if incr is not None:
        counter = incr

        def op_incr(n: int) -> None:
            for _ in range(n):
                counter("counter")

        ops["incr"] = op_incr
    return ops


BATCH_UNITS = {"get_many": BATCH, "set_many": BATCH}
"""Keys per call of the batch workloads (the others count calls)."""


# -- Django ---------------------------------------------------------------------------------


def django_contenders(url: str, loop: asyncio.AbstractEventLoop) -> list[Contender]:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(CACHES={}, USE_TZ=True)
        django.setup()
    from django.core.cache.backends.redis import RedisCache
    from django_redis.cache import RedisCache as DjangoRedisCache

    from pevensie_cache.contrib.django import PevensieCache

    backends = [
        ("Django RedisCache", RedisCache(url, {"TIMEOUT": TTL})),
        ("django-redis", DjangoRedisCache(url, {"TIMEOUT": TTL})),
        ("pevensie (redis)", PevensieCache(url, {"TIMEOUT": TTL})),
    ]
    contenders = []
    for name, backend in backends:
        backend.set("counter", 0, None)
        backend.set_many(dict.fromkeys(KEYS, VALUE))
        ops = kv_ops(backend.get, backend.set, backend.get_many, backend.set_many, backend.incr)
        if name != "django-redis":  # its async methods are Django's thread hop too
            ops.update(async_ops(backend, loop))
        contenders.append(Contender("Django", name, ops, BATCH_UNITS))
    return contenders


def async_ops(backend: Any, loop: asyncio.AbstractEventLoop) -> dict[str, Op]:
    """One task awaiting ``aget``/``aset`` in turn, on one event loop."""

    async def aget(n: int) -> None:
        for key in _cycle(n, KEYS):
            await backend.aget(key)

    async def aset(n: int) -> None:
        for key in _cycle(n, KEYS):
            await backend.aset(key, VALUE)

    async def aget_tasks(n: int) -> None:
        async def task(first: int) -> None:
            for i in range(first, n, TASKS):  # the tasks share exactly n gets
                await backend.aget(KEYS[i % KEYSPACE])

        await asyncio.gather(*(task(t) for t in range(TASKS)))

    return {
        "aget_hit": lambda n: loop.run_until_complete(aget(n)),
        "aset": lambda n: loop.run_until_complete(aset(n)),
        "aget_tasks": lambda n: loop.run_until_complete(aget_tasks(n)),
    }


# -- Flask-Caching ------------------------------------------------------------------------


def flask_contenders(url: str) -> list[Contender]:
    from flask import Flask
    from flask_caching import Cache

    configs = [
        ("Flask-Caching RedisCache", {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": url}),
        (
            "pevensie (redis)",
            {
                "CACHE_TYPE": "pevensie_cache.contrib.flask.PevensieCache",
                "CACHE_PEVENSIE_URL": url,
            },
        ),
    ]
    contenders = []
    for name, config in configs:
        app = Flask(__name__)
        app.config.update(config, CACHE_DEFAULT_TIMEOUT=TTL)
        cache = Cache(app)
        with app.app_context():
            backend = cache.cache  # what Cache.get, .set, ... and the decorators call
        backend.set_many(dict.fromkeys(KEYS, VALUE))

        def get_many(keys: list[str], backend: Any = backend) -> Any:
            return backend.get_many(*keys)

        ops = kv_ops(backend.get, backend.set, get_many, backend.set_many, backend.inc)
        contenders.append(Contender("Flask-Caching", name, ops, BATCH_UNITS))
    return contenders


# -- dogpile.cache ------------------------------------------------------------------------


def dogpile_contenders(url: str, port: int) -> list[Contender]:
    from dogpile.cache import make_region

    configs = [
        (
            "dogpile.cache.redis",
            "dogpile.cache.redis",
            {"host": "127.0.0.1", "port": port, "redis_expiration_time": TTL},
        ),
        ("pevensie (redis)", "pevensie", {"url": url, "ttl_seconds": TTL}),
    ]
    contenders = []
    for name, backend, arguments in configs:
        region = make_region().configure(backend, expiration_time=TTL, arguments=arguments)
        region.set_multi(dict.fromkeys(KEYS, VALUE))
        ops = kv_ops(region.get, region.set, region.get_multi, region.set_multi, None)

        def get_or_create(n: int, region: Any = region) -> None:
            for key in _cycle(n, KEYS):
                region.get_or_create(key, _never)

        ops["get_or_create_hit"] = get_or_create
        contenders.append(Contender("dogpile.cache", name, ops, BATCH_UNITS))
    return contenders


def _never() -> str:
    raise AssertionError("a hit never calls the creator")


# -- the harness ----------------------------------------------------------------------------


def sample(op: Op, n: int, server: ValkeyServer | None = None) -> tuple[float, float | None]:
    """Run ``op(n)``; return its wall time and the CPU time client and server spent, in s.

    The CPU time (this process's, all threads, plus the server's threads) is
    what the calls cost whatever else runs on the machine; it is ``None`` when
    the server's CPU time cannot be read.
    """
    gc_was = gc.isenabled()
    gc.disable()
    try:
        server_before = server.cpu_ns() if server is not None else None
        cpu_before = time.process_time()
        start = time.perf_counter()
        op(n)
        took = time.perf_counter() - start
        cpu = time.process_time() - cpu_before
        server_after = server.cpu_ns() if server is not None else None
    finally:
        if gc_was:
            gc.enable()
    if server_before is None or server_after is None:
        return took, None
    return took, cpu + (server_after - server_before) / 1e9


def calibrate(op: Op, seconds: float) -> int:
    """Return how many calls of ``op`` take about ``seconds``."""
    n = 1
    while True:
        took, _ = sample(op, n)
        if took >= seconds / 4:
            return max(1, round(n * seconds / took))
        n *= 4 if took < seconds / 40 else 2


def run(args: argparse.Namespace) -> int:
    install_signal_handlers()
    pin = pin_to_one_cpu() if not args.no_pin else None
    notes = [pin.note if pin else "not pinned (--no-pin)"]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    loop = asyncio.new_event_loop()
    with ValkeyServer() as server:
        if pin is not None and pin.cpu is not None and server.pid is not None:
            notes.append("server: " + pin_pid(server.pid, pin.cpu))
        url = f"redis://127.0.0.1:{server.port}/0"
        contenders = [
            *django_contenders(url, loop),
            *flask_contenders(url),
            *dogpile_contenders(url, server.port),
        ]
        plan = [(c, w) for c in contenders for w in c.ops]
        counts = {(c.name, c.framework, w): calibrate(c.ops[w], args.seconds) for c, w in plan}
        rates: dict[tuple[str, str, str], list[float]] = {key: [] for key in counts}
        cpu_us: dict[tuple[str, str, str], list[float]] = {key: [] for key in counts}
        for r in range(args.rounds):
            order = plan[r % len(plan) :] + plan[: r % len(plan)]
            for contender, workload in order:
                key = (contender.name, contender.framework, workload)
                n = counts[key]
                took, cpu = sample(contender.ops[workload], n, server)
                units = n * contender.units.get(workload, 1)
                rates[key].append(units / took)
                if cpu is not None:
                    cpu_us[key].append(cpu * 1e6 / units)
    loop.close()
    binary = server_version(find_valkey_server())
    print(report(contenders, rates, cpu_us, args, notes, load, binary))
    return 0


def _versions() -> str:
    names = ["django", "django-redis", "Flask-Caching", "cachelib", "dogpile.cache", "redis",
             "hiredis", "pevensie-cache", "pevensie-redis"]  # fmt: skip
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


LABELS = {
    "set": "set, TTL",
    "get_hit": "get (hit)",
    "get_miss": "get (miss)",
    "get_many": "get_many of 100",
    "set_many": "set_many of 100, TTL",
    "incr": "incr",
    "aget_hit": "aget (hit), one task",
    "aset": "aset, one task",
    "aget_tasks": f"aget (hit), {TASKS} tasks",
    "get_or_create_hit": "get_or_create (hit)",
}


def report(
    contenders: list[Contender],
    rates: dict[tuple[str, str, str], list[float]],
    cpu_us: dict[tuple[str, str, str], list[float]],
    args: argparse.Namespace,
    notes: list[str],
    load: str,
    binary: str,
) -> str:
    lines = [
        "- machine: "
        f"{os.cpu_count()} CPUs; CPython {platform.python_version()}; {platform.platform()}",
        f"- versions: {_versions()}, server {binary}",
        f"- CPU pinning: {'; '.join(notes)}",
        f"- rounds: {args.rounds}, about {args.seconds}s per sample; 100-byte str values, "
        f"TTL {TTL} s",
        f"- load average at start: {load} (1, 5, 15 min); at end: "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "",
    ]
    for framework in dict.fromkeys(c.framework for c in contenders):
        group = [c for c in contenders if c.framework == framework]
        lines += _table(framework, group, rates, higher_is_better=True)
        lines += _table(framework, group, cpu_us, higher_is_better=False)
    return "\n".join(lines)


def _table(
    framework: str,
    group: list[Contender],
    values: dict[tuple[str, str, str], list[float]],
    *,
    higher_is_better: bool,
) -> list[str]:
    """One framework's table of ``values``: median (best round) and ratio to the first."""
    base = group[0]
    title = (
        "median ops/s (keys/s for batches), best round in brackets"
        if higher_is_better
        else "median CPU µs per operation (per key for batches), client + server"
    )
    lines = [
        f"#### {framework}: {title}; **ratio** to {base.name}"
        + ("" if higher_is_better else " (its CPU over ours: above 1, we cost less)"),
        "",
        "| workload | " + " | ".join(c.name for c in group) + " |",
        "|---" * (len(group) + 1) + "|",
    ]
    workloads = list(dict.fromkeys(w for c in group for w in c.ops))
    for workload in workloads:
        cells = []
        base_values = values.get((base.name, framework, workload))
        for c in group:
            got = values.get((c.name, framework, workload))
            if not got:
                cells.append("n/a")
                continue
            median = statistics.median(got)
            best = max(got) if higher_is_better else min(got)
            cell = f"{median:,.0f} ({best:,.0f})" if higher_is_better else f"{median:.1f}"
            if c is not base and base_values:
                base_median = statistics.median(base_values)
                ratio = median / base_median if higher_is_better else base_median / median
                cell += f" **{ratio:.2f}x**"
            cells.append(cell)
        lines.append(f"| {LABELS.get(workload, workload)} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=0.03)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 5 ms: a smoke run")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 2, 0.005
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
