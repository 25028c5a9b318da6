"""What both apps serve: an item built by a little work (the stand-in for a database query)."""

from __future__ import annotations

import hashlib
from typing import Any

ITEMS = 5000
"""Item ids the load generator asks for (every one is cached for ``TTL`` seconds)."""
TTL = 30


def build_item(n: int) -> dict[str, Any]:
    """The slow path a cache hit saves: a few hundred microseconds of hashing."""
    digest = str(n).encode()
    for _ in range(200):
        digest = hashlib.sha256(digest).digest()
    return {"id": n, "name": f"item {n}", "digest": digest.hex(), "tags": ["e2e", str(n % 7)]}
