"""Every face and mode a user can pick, as soak variants, and the bounds each must hold."""

from __future__ import annotations

from dataclasses import dataclass

FACES = ("sync", "async", "async-uvloop")
"""The sync face (threads), the async face on asyncio's loop, and on uvloop."""
PARSERS = ("hiredis", "python")
"""hiredis installed, or hidden (the pure-Python readers of redis-py and of the driver)."""
TOPOLOGIES = ("single", "sentinel", "cluster")

CONCURRENCY = {"sync": 4, "async": 16, "async-uvloop": 16}
"""Threads of the sync face, tasks of the async face (issue 19's figures)."""

NEAR_CACHE_SIZE = 1000
"""Entries the near cache keeps: the key space is 200 times larger."""
KEYSPACE = 200_000
HOT_KEYS = 2000

WARM_UP_SHARE = 0.3
"""The first part of each run that is not judged (pools open, the near cache fills)."""

MIB = 1024 * 1024
BOUNDS = {
    "rss": 15 * MIB,
    "heap": 2 * MIB,
    "fds": 2,
    "threads": 1,
    "tasks": 2,
    "connections": 2,
}
"""How much each sampled figure may grow after the warm-up, at most (issue 19: 15 MiB RSS)."""


@dataclass(frozen=True)
class Variant:
    face: str
    parser: str
    topology: str
    near: bool

    @property
    def id(self) -> str:
        return f"{self.face}-{self.parser}-{self.topology}-{'near' if self.near else 'plain'}"


def all_variants() -> list[Variant]:
    """Every combination: each face and parser, each topology, the near cache off and on."""
    return [
        Variant(face, parser, topology, near)
        for topology in TOPOLOGIES
        for near in (False, True)
        for face in FACES
        for parser in PARSERS
    ]
