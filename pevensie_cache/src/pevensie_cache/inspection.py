"""The inspector contract: what operator tools may ask of a driver beyond the cache operations.

The ``pevensie-cache`` command line shows a key's TTL, lists the keys of a
resource type, reports server statistics and benchmarks against the driver's
own client library. None of that belongs on the driver (whose methods are the
hot path) or in the core (which never imports a driver's client library), so a
plugin registers an *inspector factory* with its driver::

    register("redis", new, ..., inspector=inspector_for_driver)

``inspector_for_driver(driver)`` returns a :class:`CacheInspector` when
``driver`` is one of that plugin's drivers, else ``None``; it must not import
the driver's client library unless the driver is its own. Inspectors work on
a connected, synchronous driver; a driver without one answers every such
question with :class:`~pevensie_cache.UnsupportedOperation`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "Baseline",
    "CacheInspector",
    "InspectorFactory",
    "KeySample",
    "KeyTtl",
    "NamespacedInspector",
    "ServerInfo",
    "resource_type_of",
]

_OWN_KEYS = frozenset({"lock", "tag"})
"""What follows the empty resource type in the library's own keys (``:lock:``, ``:tag:``)."""


def resource_type_of(stored: str) -> str | None:
    """Return the resource type of a stored name ``<resource_type>:<key>`` (for samples).

    The library's own keys, stored under the resource type ``""`` that no call
    can name, count as ``":lock"`` (lease locks) and ``":tag"`` (tag counters);
    ``None`` for a name Pevensie Cache did not write.
    """
    head, sep, rest = stored.partition(":")
    if not sep:
        return None
    if head:
        return head
    own, sep, _ = rest.partition(":")
    return f":{own}" if sep and own in _OWN_KEYS else None


@dataclass(frozen=True)
class ServerInfo:
    """What a driver can say about the server behind it; ``None`` where it cannot say."""

    server: str
    """What answers: ``"valkey"``, ``"redis"``, ``"memory (in-process)"``, ..."""
    version: str | None = None
    used_memory: int | None = None
    """Bytes the server uses for data and overhead."""
    max_memory: int | None = None
    """The configured memory limit in bytes; ``None`` when unknown, 0 when unlimited."""
    keys: int | None = None
    """Keys stored in the database the cache uses (all resource types, and other keys)."""
    hits: int | None = None
    """Successful key lookups since the server's statistics were last reset."""
    misses: int | None = None
    """Failed key lookups since then."""
    nodes: int = 1
    """Servers the figures add up (a Cluster's primaries)."""

    @property
    def hit_ratio(self) -> float | None:
        """``hits / (hits + misses)``, or ``None`` when unknown or nothing was looked up."""
        if self.hits is None or self.misses is None or self.hits + self.misses == 0:
            return None
        return self.hits / (self.hits + self.misses)


@dataclass(frozen=True)
class KeyTtl:
    """The time to live of one key."""

    exists: bool
    seconds: float | None = None
    """Seconds left, ``None`` when the key never expires (or does not exist)."""


@dataclass(frozen=True)
class KeySample:
    """Keys per resource type among a bounded sample of the stored keys."""

    sampled: int
    """Keys looked at."""
    total: int | None
    """Keys stored, when the driver knows (the sample's denominator)."""
    by_resource_type: Mapping[str, int] = field(default_factory=dict)
    """Sampled keys per resource type (see :func:`resource_type_of`)."""
    foreign: int = 0
    """Sampled keys not written by Pevensie Cache (no ``<resource_type>:`` prefix)."""


@runtime_checkable
class Baseline(Protocol):
    """The driver's client library driven directly, on the driver's own connections.

    ``pevensie-cache bench --compare`` times it beside the cache. Keys are full
    stored names (``<resource_type>:<key>``).
    """

    name: str
    """What the rows are called in the report (``"redis-py"``)."""

    def set(self, key: str, value: str, ttl_seconds: int) -> None:
        """Store one value with a TTL."""

    def get(self, key: str) -> str | None:
        """Return one value, or ``None``."""

    def set_many(self, items: Mapping[str, str], ttl_seconds: int) -> None:
        """Store every item with a TTL, as cheaply as the library allows."""

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Return the values of ``keys`` in order (``None`` for a miss)."""


@runtime_checkable
class CacheInspector(Protocol):
    """Questions about the data and server behind one connected driver.

    Each method may raise :class:`~pevensie_cache.UnsupportedOperation` when the
    driver cannot answer, and a :class:`~pevensie_cache.DriverError` when the
    server fails.
    """

    def server_info(self) -> ServerInfo:
        """Describe the server: what it is, its version, memory, key count and hit counts."""

    def ttl(self, resource_type: str, key: str) -> KeyTtl:
        """Return whether ``(resource_type, key)`` exists and how long it has left."""

    def keys(self, resource_type: str, page_size: int) -> Iterator[list[str]]:
        """Yield the keys of ``resource_type`` page by page, never blocking the server.

        Keys are yielded without the ``<resource_type>:`` prefix; a key may be
        yielded twice when the store changes during the walk (as ``SCAN`` does).
        """

    def sample(self, limit: int) -> KeySample:
        """Count keys per resource type among at most ``limit`` stored keys."""

    def baseline(self) -> Baseline | None:
        """Return the driver's client library on the same connections, or ``None``."""


InspectorFactory = Callable[[object], "CacheInspector | None"]
"""Registered with a driver: returns an inspector for one of the plugin's drivers, else ``None``."""


class NamespacedInspector:
    """A driver's inspector as a cache with a namespace sees it: its resource types inside it.

    ``ttl`` and ``keys`` look at ``<namespace>:<resource_type>``; the server-wide
    answers (``server_info``, ``sample``, ``baseline``) are the driver's own.
    """

    def __init__(self, inner: CacheInspector, namespace: str) -> None:
        """Look through ``inner`` at the resource types of ``namespace``."""
        self.inner = inner
        self.prefix = namespace + ":"

    def server_info(self) -> ServerInfo:
        """Return the driver's answer."""
        return self.inner.server_info()

    def ttl(self, resource_type: str, key: str) -> KeyTtl:
        """Return the TTL of ``key`` of ``resource_type`` in the namespace."""
        return self.inner.ttl(self.prefix + resource_type, key)

    def keys(self, resource_type: str, page_size: int) -> Iterator[list[str]]:
        """Yield the keys of ``resource_type`` in the namespace."""
        return self.inner.keys(self.prefix + resource_type, page_size)

    def sample(self, limit: int) -> KeySample:
        """Return the driver's answer (every key of the store, any namespace)."""
        return self.inner.sample(limit)

    def baseline(self) -> Baseline | None:
        """Return the driver's answer."""
        return self.inner.baseline()
