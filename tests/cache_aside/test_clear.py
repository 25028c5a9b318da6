"""clear among 100,000 mixed keys: exactly its own keys go, whatever glob characters it holds."""

from __future__ import annotations

import time

import pytest
from aside_support import Target

from pevensie_cache import cache

RESOURCE_TYPE = "t*[0-9]?\\x"
"""Every glob character SCAN MATCH knows: ``*``, ``?``, ``[``, ``]`` and ``\\``."""

NEIGHBOURS = {
    "t7ax": 10_000,  # what the unescaped pattern t*[0-9]?\x:* would match as well
    "tenant5bx": 10_000,  # the same
    RESOURCE_TYPE + "y": 10_000,  # the resource type with more after it
    RESOURCE_TYPE[:-2]: 10_000,  # a prefix of it
    "T*[0-9]?\\x": 9_000,  # another case
    "x" + RESOURCE_TYPE: 9_000,
}
OWN = 40_000
TOTAL = 100_000


def mixed_keys() -> tuple[dict[str, str], dict[str, str]]:
    """Return (the resource type's own keys, every other key), 100,000 in all."""
    own: dict[str, str] = {}
    for i in range(OWN):
        key = (f"k{i}", f"*{i}", f"a:b{i}", f"[{i}]?")[i % 4]  # glob characters and ':' too
        own[f"{RESOURCE_TYPE}:{key}"] = f"own {i}"
    others: dict[str, str] = {}
    for neighbour, count in NEIGHBOURS.items():
        for i in range(count):
            others[f"{neighbour}:k{i}"] = f"{neighbour} {i}"
    # Keys that share the resource type's text but not its '<type>:' prefix: a lock key,
    # the bare type, and the type inside another key.
    extra = [f":lock:{RESOURCE_TYPE}:k1", RESOURCE_TYPE, f"other:{RESOURCE_TYPE}:k1"]
    for i in range(TOTAL - OWN - len(others)):
        others[extra[i] if i < len(extra) else f"plain:{i}"] = "kept"
    assert len(own) + len(others) == TOTAL
    return own, others


def fill(target: Target) -> tuple[dict[str, str], dict[str, str]]:
    own, others = mixed_keys()
    target.write({**own, **others})
    found = target.scan_keys()
    assert len(found) == len(set(found)) == TOTAL
    for node in target.nodes():  # on a cluster, every primary holds some of them
        with node:
            assert any(node.scan_iter(match="t\\**", count=1000))
    return own, others


def calls(target: Target, command: str) -> int:
    """How often the servers (every primary) ran ``command``, by INFO commandstats."""
    total = 0
    for node in target.nodes():
        with node:
            total += int(node.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))
    return total


def check_paged(target: Target, scans: int, unlinks: int) -> None:
    """clear never asked a server for more than a page: >= 100 SCANs, >= 40 UNLINKs."""
    assert calls(target, "scan") - scans >= TOTAL // 1000
    assert calls(target, "unlink") - unlinks >= OWN // 1000


def check_survivors(target: Target, others: dict[str, str]) -> None:
    found = target.scan_keys()
    assert len(set(found)) == len(others)
    assert set(found) == set(others)
    with target.raw() as raw:
        keys = list(others)
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            values = raw.mget(chunk) if target.name == "server" else raw.mget_nonatomic(chunk)
            assert values == [others[key] for key in chunk]


@pytest.mark.slow
def test_clear_with_glob_characters_deletes_exactly_its_keys_among_100000(target: Target) -> None:
    _, others = fill(target)
    seen: list[int] = []
    scans, unlinks = calls(target, "scan"), calls(target, "unlink")
    with cache.from_url(target.url) as c:
        began = time.perf_counter()
        deleted = c.clear(RESOURCE_TYPE, on_progress=seen.append)
        took = time.perf_counter() - began
        assert deleted == OWN
        assert seen == sorted(seen)
        assert seen[-1] == OWN
        assert c.clear(RESOURCE_TYPE) == 0
    check_paged(target, scans, unlinks)
    check_survivors(target, others)
    print(f"\n{target.name}: clear of {OWN:,} among {TOTAL:,} keys took {took:.2f} s")


@pytest.mark.slow
async def test_async_clear_with_glob_characters_deletes_exactly_its_keys_among_100000(
    target: Target,
) -> None:
    _, others = fill(target)
    seen: list[int] = []
    scans, unlinks = calls(target, "scan"), calls(target, "unlink")
    async with cache.from_url_async(target.url) as c:
        began = time.perf_counter()
        deleted = await c.clear(RESOURCE_TYPE, on_progress=seen.append)
        took = time.perf_counter() - began
        assert deleted == OWN
        assert seen == sorted(seen)
        assert seen[-1] == OWN
    check_paged(target, scans, unlinks)
    check_survivors(target, others)
    print(f"\n{target.name}: async clear of {OWN:,} among {TOTAL:,} keys took {took:.2f} s")
