"""One soak variant in a process of its own: mixed traffic through the public API, sampled.

Run by ``soak/test_soak.py`` as ``python soak/worker.py SETTINGS_JSON``; prints
one JSON object (the samples, the operations, the errors) on its last line.

The parser is chosen before anything is imported: with ``"parser": "python"``
an import hook hides ``hiredis``, so redis-py and the driver both run their
pure-Python readers, exactly as after a plain ``pip install pevensie-redis``.
"""

from __future__ import annotations

import importlib.abc
import json
import sys
import time
from typing import Any

SETTINGS: dict[str, Any] = json.loads(sys.argv[1])


class _HiddenHiredis(importlib.abc.MetaPathFinder):
    """Make ``import hiredis`` fail, as where it is not installed."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "hiredis" or name.startswith("hiredis."):
            hidden = f"No module named {name!r} (hidden by the soak run)"
            raise ModuleNotFoundError(hidden, name=name)


if SETTINGS["parser"] == "python":
    sys.meta_path.insert(0, _HiddenHiredis())

# Imported only now, so the parser choice above holds for everything below.
import asyncio  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import threading  # noqa: E402
import tracemalloc  # noqa: E402

import psutil  # noqa: E402
import redis  # noqa: E402

from pevensie_cache import cache  # noqa: E402
from pevensie_test_support import loops  # noqa: E402

PROCESS = psutil.Process()

KEYSPACE = SETTINGS["keyspace"]
HOT = SETTINGS["hot_keys"]
RESOURCE = "soak"
TASK_AGE = 0.5
"""Seconds a task must have lived to count as lasting (see ``lasting_tasks``)."""
VALUES = [f"{n:04d}:" + "v" * (50 + (n * 37) % 450) for n in range(64)]


def pick_key(rng: random.Random) -> str:
    """Half the keys from a hot set (near-cache hits), half from the whole key space."""
    return f"k{rng.randrange(HOT) if rng.random() < 0.5 else rng.randrange(KEYSPACE)}"


def next_call(rng: random.Random) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """The next call: 60% reads, 30% writes with TTLs, then deletes, batches, locked loads."""
    r = rng.random()
    key = pick_key(rng)
    value = VALUES[rng.randrange(len(VALUES))]
    ttl = rng.randrange(5, 300)
    if r < 0.60:
        return "get", (RESOURCE, key, None), {}
    if r < 0.90:
        return "set", (RESOURCE, key, value, ttl), {}
    if r < 0.94:
        return "delete", (RESOURCE, key), {}
    if r < 0.97:
        return "get_many", (RESOURCE, [pick_key(rng) for _ in range(10)]), {}
    if r < 0.99:
        items = {pick_key(rng): VALUES[rng.randrange(len(VALUES))] for _ in range(10)}
        return "set_many", (RESOURCE, items, ttl), {}
    lease = {"lock": True, "lock_lease": 5.0, "lock_wait": 5.0}
    return "get_or_set", (RESOURCE, key, lambda: value, ttl), lease


class Tally:
    """Operations done and errors met, shared by every worker (thread or task)."""

    def __init__(self) -> None:
        self.operations = 0
        self.errors: dict[str, int] = {}
        self.first_errors: list[str] = []
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            name = type(exc).__name__
            self.errors[name] = self.errors.get(name, 0) + 1
            if len(self.first_errors) < 5:
                self.first_errors.append(f"{name}: {exc}")


def server_connections(name: str) -> int:
    """Connections named ``name`` on every node of the topology (CLIENT LIST)."""
    total = 0
    for host, port in SETTINGS["nodes"]:
        with redis.Redis(host=host, port=port, socket_timeout=5) as raw:
            total += sum(1 for entry in raw.client_list() if entry.get("name") == name)
    return total


def sample(started: float, tally: Tally, tasks: int) -> dict[str, float]:
    return {
        "t": time.monotonic() - started,
        "operations": tally.operations,
        "rss": PROCESS.memory_info().rss,
        "heap": tracemalloc.get_traced_memory()[0],
        "fds": PROCESS.num_fds(),
        "threads": threading.active_count(),
        "tasks": tasks,
        "connections": server_connections(SETTINGS["client_name"]),
    }


def trace_the_heap() -> None:
    """Start tracing allocations, once the cache is connected and before the traffic.

    What the heap figure judges is growth under traffic; tracing the imports and the
    connection too cost each variant's process about 2.6 s of CPU (3.5 s against
    0.9 s), 80 s over a CI run, on a machine whose other test streams wait for it.
    """
    tracemalloc.start()


def run_sync(url: str) -> tuple[list[dict[str, float]], Tally]:
    tally = Tally()
    stop = threading.Event()
    c = cache.from_url(url).connect()
    trace_the_heap()

    def work(seed: int) -> None:
        rng = random.Random(seed)
        done = 0
        while not stop.is_set():
            name, args, kwargs = next_call(rng)
            try:
                getattr(c, name)(*args, **kwargs)
            except Exception as exc:
                tally.failed(exc)
            done += 1
            if done == 100:
                with tally._lock:
                    tally.operations += done
                done = 0
        with tally._lock:
            tally.operations += done

    threads = [threading.Thread(target=work, args=(n,)) for n in range(SETTINGS["concurrency"])]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    samples = [sample(started, tally, 0)]
    try:
        while time.monotonic() - started < SETTINGS["seconds"]:
            time.sleep(SETTINGS["interval"])
            samples.append(sample(started, tally, 0))
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        c.disconnect()
    return samples, tally


async def run_async(url: str) -> tuple[list[dict[str, float]], Tally]:
    tally = Tally()
    stop = asyncio.Event()
    c = await cache.from_url_async(url).connect()
    trace_the_heap()

    async def work(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            name, args, kwargs = next_call(rng)
            try:
                await getattr(c, name)(*args, **kwargs)
            except Exception as exc:
                tally.failed(exc)
            tally.operations += 1

    history: list[tuple[float, set[asyncio.Task[Any]]]] = []

    def lasting_tasks() -> int:
        """Tasks alive now that were alive half a second ago already.

        A call's own tasks (one per node of a Cluster batch) live for a round
        trip; a leaked task lives on, and so does every worker.
        """
        now, alive = time.monotonic(), asyncio.all_tasks()
        history.append((now, alive))
        earlier = [tasks for at, tasks in history if at <= now - TASK_AGE]
        while len(history) > 1 and history[1][0] <= now - TASK_AGE:
            history.pop(0)
        return len(alive & earlier[-1]) if earlier else len(alive)

    workers = [asyncio.create_task(work(n)) for n in range(SETTINGS["concurrency"])]
    started = time.monotonic()
    samples = [sample(started, tally, lasting_tasks())]
    try:
        while time.monotonic() - started < SETTINGS["seconds"]:
            await asyncio.sleep(SETTINGS["interval"])
            samples.append(sample(started, tally, lasting_tasks()))
    finally:
        stop.set()
        await asyncio.wait(workers, timeout=30)
        await c.disconnect()
    return samples, tally


def main() -> None:
    url = SETTINGS["url"]
    face = SETTINGS["face"]
    if face == "sync":
        samples, tally = run_sync(url)
    else:
        samples, tally = _run_on(face, url)
    result = {
        "samples": samples,
        "operations": tally.operations,
        "errors": tally.errors,
        "first_errors": tally.first_errors,
        "hiredis_loaded": "hiredis" in sys.modules,
        "loop": SETTINGS.get("loop"),
        "pid": os.getpid(),
    }
    print(json.dumps(result))


def _run_on(face: str, url: str) -> tuple[list[dict[str, float]], Tally]:
    loop = "uvloop" if face == "async-uvloop" else "asyncio"
    with asyncio.Runner(loop_factory=loops.loop_factory(loop)) as runner:
        return runner.run(run_async(url))


if __name__ == "__main__":
    main()
