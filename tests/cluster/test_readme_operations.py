"""The README's "Where each operation works" table is true: each "yes" is run and checked.

Every operation group of the table runs on every mode it says (the memory
driver, one Redis server, Sentinel, Cluster, the near cache) and on both
faces; a group the table names that no runner here knows fails the test, so
the table and this test change together.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pevensie_cache import CacheMiss, LockTimeout
from pevensie_redis.testing.servers import RedisServer
from pevensie_test_support import LocalCluster, LocalSentinel
from pevensie_test_support.faces import FACES, Face, new_face

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
MODES = ["memory", "Redis", "Sentinel", "Cluster", "near cache"]


def table() -> dict[str, dict[str, str]]:
    match = re.search(r"<!-- begin: operations -->\n(.*?)<!-- end: operations -->", README, re.S)
    assert match, "the README marks its operations table"
    lines = match.group(1).strip().splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["operation", *MODES]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(MODES, cells[1:], strict=True))
    return rows


async def maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def basics(face: Face, tag: str) -> None:
    await face.set("op", f"a{tag}", "1", ttl_seconds=60)
    assert await face.get("op", f"a{tag}") == "1"
    await face.set_many("op", {f"b{tag}": "2", f"c{tag}": "3"})
    assert await face.get_many("op", [f"b{tag}", f"c{tag}", "nope"]) == {
        f"b{tag}": "2",
        f"c{tag}": "3",
    }
    assert await face.delete("op", f"a{tag}") is True
    await face.delete_many("op", [f"b{tag}", f"c{tag}"])
    assert await face.get_many("op", [f"a{tag}", f"b{tag}"]) == {}


async def key_info(face: Face, tag: str) -> None:
    await face.set("op", f"t{tag}", "x", ttl_seconds=100)
    assert await face.exists("op", f"t{tag}") is True
    assert 99 <= await face.ttl("op", f"t{tag}") <= 100
    with pytest.raises(CacheMiss):
        await face.ttl("op", f"absent{tag}")


async def atomic(face: Face, tag: str) -> None:
    assert await face.add("atom", f"a{tag}", "x") is True
    assert await face.add("atom", f"a{tag}", "y") is False
    assert await face.incr("atom", f"n{tag}", 5, ttl_seconds=60) == 5
    assert await face.decr("atom", f"n{tag}", 2) == 3
    assert await face.touch("atom", f"n{tag}", 30) is True
    assert await face.clear("atom") >= 2


async def cache_aside(face: Face, tag: str) -> None:
    assert await face.get_or_set("aside", f"g{tag}", lambda: "loaded", 60) == "loaded"
    assert await face.get_or_set("aside", f"l{tag}", lambda: "locked", 60, lock=True) == "locked"
    users = face.cache.resource("aside", codec="json")
    await maybe(users.set(f"r{tag}", {"name": "Ada"}))
    assert await maybe(users.get(f"r{tag}")) == {"name": "Ada"}
    if face.name == "sync":

        @face.cache.cached("aside", ttl_seconds=60)
        def square(n: int) -> int:
            return n * n

        assert square(7) == 49
    else:

        @face.cache.cached("aside", ttl_seconds=60)
        async def asquare(n: int) -> int:
            return n * n

        assert await asquare(7) == 49


async def locks(face: Face, tag: str) -> None:
    held = face.cache.lock("locks", f"job{tag}", ttl_seconds=10, wait_seconds=0)
    await maybe(held.acquire())
    rival = face.cache.lock("locks", f"job{tag}", ttl_seconds=10, wait_seconds=0)
    with pytest.raises(LockTimeout):
        await maybe(rival.acquire())
    await maybe(held.extend(20))
    await maybe(held.release())
    await maybe(rival.acquire())
    await maybe(rival.release())


RUNNERS: dict[str, Callable[[Face, str], Awaitable[None]]] = {
    "`get`, `set`, `delete`, `get_many`, `set_many`, `delete_many`": basics,
    "`exists`, `ttl`": key_info,
    "`add`, `incr`, `decr`, `touch`, `clear`": atomic,
    "`get_or_set` (also `lock=True`), `@cached`, resources": cache_aside,
    "`lock`, `extend`": locks,
}
OPTIONS_ROW = "`namespace`, `fail_open`"


def test_every_row_of_the_table_has_a_runner() -> None:
    assert set(table()) == {*RUNNERS, OPTIONS_ROW}


@pytest.fixture
def mode_url(
    request: pytest.FixtureRequest,
) -> Callable[[str], str]:
    def url_of(mode: str) -> str:
        if mode == "memory":
            return "memory://"
        if mode in ("Redis", "near cache"):
            server: RedisServer = request.getfixturevalue("pevensie_redis_server")
            server.ensure_running()
            near = "?near_cache=true" if mode == "near cache" else ""
            return f"redis://127.0.0.1:{server.port}/0{near}"
        if mode == "Cluster":
            cluster: LocalCluster = request.getfixturevalue("redis_cluster")
            return f"redis://127.0.0.1:{cluster.port}/0?cluster=true"
        sentinel: LocalSentinel = request.getfixturevalue("redis_sentinel")
        password: str = request.getfixturevalue("topology_password")
        hosts = ",".join(f"{host}:{port}" for host, port in sentinel.sentinels)
        return f"redis+sentinel://:{password}@{hosts}/{sentinel.service_name}"

    return url_of


@pytest.mark.filterwarnings("ignore:connect\\(\\) on a sync cache inside a running event loop")
@pytest.mark.parametrize("face_name", FACES)
@pytest.mark.parametrize("mode", MODES)
def test_what_the_table_says_works_does(
    mode: str, face_name: str, mode_url: Callable[[str], str]
) -> None:
    rows = table()
    url = mode_url(mode)

    async def main() -> None:
        for row, runner in RUNNERS.items():
            if rows[row][mode] != "yes":
                continue
            face = new_face(face_name, url)
            await face.connect()
            try:
                await runner(face, f"{face_name}-{mode}")
            finally:
                await face.disconnect()
        if rows[OPTIONS_ROW][mode] == "yes":
            joiner = "&" if "?" in url else "?"
            face = new_face(face_name, f"{url}{joiner}namespace=readme&fail_open=true")
            await face.connect()
            try:
                await basics(face, f"ns-{face_name}")
                assert face.cache.namespace == "readme"
                assert face.cache.fail_open
            finally:
                await face.disconnect()

    asyncio.run(main())
