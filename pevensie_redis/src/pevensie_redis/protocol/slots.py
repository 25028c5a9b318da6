"""Redis Cluster without I/O: a key's hash slot, the slot map, and what redirects say.

- :func:`key_slot`: the slot (0-16383) a key lives in: CRC16 of the key, or of
  its hash tag (the text between the first ``{`` and the first ``}`` after it,
  when not empty), modulo 16384;
- :class:`SlotMap`: for each slot, the primary serving it and that primary's
  replicas, read from a ``CLUSTER SLOTS`` reply (:func:`parse_cluster_slots`);
  a ``MOVED`` redirect reassigns one slot (:meth:`SlotMap.assign`);
- :func:`redirect_of` and :func:`cluster_error`: what a ``MOVED``, ``ASK``,
  ``TRYAGAIN`` or ``CLUSTERDOWN`` error reply says.

Nodes are named ``host:port`` (``[host]:port`` for an IPv6 address), as the
driver names them everywhere. No I/O happens here; the routers
(:mod:`~pevensie_redis.cluster_io_async`, :mod:`~pevensie_redis.cluster_io`)
and anything else that needs a slot map (the near cache on a cluster) build
on these.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Iterable
from dataclasses import dataclass

from redis.exceptions import (
    AskError,
    ClusterDownError,
    InvalidResponse,
    MovedError,
    TryAgainError,
)

__all__ = [
    "ASK",
    "CLUSTERDOWN",
    "MOVED",
    "SLOTS",
    "TRYAGAIN",
    "Redirect",
    "SlotMap",
    "cluster_error",
    "key_slot",
    "node_name",
    "parse_cluster_nodes",
    "parse_cluster_slots",
    "redirect_of",
]

SLOTS = 16384
"""The number of hash slots of a Redis Cluster."""

MOVED = "MOVED"
"""The slot is served by another node now: send there, and remember it."""
ASK = "ASK"
"""The slot is being migrated and the key is not here: send this command there after ``ASKING``."""
TRYAGAIN = "TRYAGAIN"
"""A multi-key command whose keys are split between the two nodes of a migrating slot."""
CLUSTERDOWN = "CLUSTERDOWN"
"""The cluster cannot serve the slot now (a failover under way, a shard down)."""


def key_slot(key: bytes) -> int:
    """Return the hash slot of ``key``: CRC16 of its hash tag, or of the whole key, mod 16384.

    The hash tag is what stands between the first ``{`` and the first ``}``
    after it, when that is not empty (``{user}:1`` and ``{user}:2`` share a
    slot; ``{}x`` and ``x{`` hash whole). The CRC is CRC-16/XMODEM (polynomial
    0x1021, initial value 0), which the standard library's
    :func:`binascii.crc_hqx` computes in C: ten times the speed of a
    table-driven loop in Python on a short key.
    """
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc_hqx(key, 0) & 0x3FFF


def node_name(host: str, port: int) -> str:
    """Return the name of the node at ``host:port``: ``host:port``, or ``[host]:port`` for IPv6."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class SlotMap:
    """Which node serves each slot, and the replicas of each slot's primary.

    The lists are read without locks on the hot path (one item per slot);
    :meth:`assign` changes one item at a time, which is atomic for readers.
    A refresh builds a new map and swaps it in whole.
    """

    __slots__ = ("addresses", "primaries", "replicas")

    def __init__(
        self,
        primaries: list[str | None],
        replicas: list[tuple[str, ...]],
        addresses: dict[str, tuple[str, int]],
    ) -> None:
        """Hold ``primaries`` and ``replicas`` (one item per slot) and every node's address."""
        if len(primaries) != SLOTS or len(replicas) != SLOTS:
            raise ValueError(f"a slot map has {SLOTS} slots")
        self.primaries = primaries
        """For each slot, the name of the primary serving it; ``None``: no node known."""
        self.replicas = replicas
        """For each slot, the names of its primary's replicas (synced and not failed)."""
        self.addresses = addresses
        """Each node's ``(host, port)``, by name."""

    @classmethod
    def empty(cls) -> SlotMap:
        """Return a map that knows no node."""
        return cls([None] * SLOTS, [()] * SLOTS, {})

    def __repr__(self) -> str:
        return f"<SlotMap {len(self.primary_names())} primaries, {self.covered()} slots covered>"

    def covered(self) -> int:
        """Return how many slots have a primary."""
        return SLOTS - self.primaries.count(None)

    def primary_names(self) -> list[str]:
        """Return the primaries that serve a slot, each once, in slot order."""
        return [name for name in dict.fromkeys(self.primaries) if name is not None]

    def node_names(self) -> list[str]:
        """Return every node the map knows: the primaries, then the replicas, then the others."""
        names = dict.fromkeys(self.primary_names())
        for group in dict.fromkeys(self.replicas):
            names.update(dict.fromkeys(group))
        names.update(dict.fromkeys(self.addresses))
        return list(names)

    def learn(self, host: str, port: int) -> str:
        """Return the name of the node at ``host:port``, remembering its address."""
        name = node_name(host, port)
        if name not in self.addresses:
            self.addresses[name] = (host, port)
        return name

    def assign(self, slot: int, host: str, port: int) -> str:
        """Record that the node at ``host:port`` serves ``slot`` now (a ``MOVED``); return its name.

        Its replicas are not known until the next refresh: the slot has none meanwhile.
        """
        name = self.learn(host, port)
        if self.primaries[slot] != name:
            self.primaries[slot] = name
            self.replicas[slot] = ()
        return name

    def address(self, name: str) -> tuple[str, int]:
        """Return the ``(host, port)`` of the node ``name`` (known or not: read from the name)."""
        known = self.addresses.get(name)
        if known is not None:
            return known
        host, _, port = name.rpartition(":")
        return host.strip("[]"), int(port)


def parse_cluster_slots(reply: object, asked_host: str) -> SlotMap:
    """Read a ``CLUSTER SLOTS`` reply into a :class:`SlotMap`.

    Each entry is ``[start, end, primary, replica...]``, each node
    ``[host, port, id, ...]``. An empty host means the node that was asked
    (``asked_host``); ``?`` (or nil) an unknown endpoint, which no client can
    reach: such a primary's slots stay without a node, such a replica is left
    out. Slots no entry covers have no primary. Raises redis-py's
    ``InvalidResponse`` for a reply that is not shaped like ``CLUSTER SLOTS``'s.
    """
    if not isinstance(reply, list):
        raise InvalidResponse(f"CLUSTER SLOTS replied {type(reply).__name__}, not a list")
    primaries: list[str | None] = [None] * SLOTS
    replicas: list[tuple[str, ...]] = [()] * SLOTS
    addresses: dict[str, tuple[str, int]] = {}
    for entry in reply:
        if not isinstance(entry, list) or len(entry) < 3:
            raise InvalidResponse(f"CLUSTER SLOTS entry {entry!r} is not [start, end, node...]")
        start, end = entry[0], entry[1]
        if type(start) is not int or type(end) is not int or not 0 <= start <= end < SLOTS:
            raise InvalidResponse(f"CLUSTER SLOTS range {start!r}-{end!r} is not a slot range")
        primary = _node(entry[2], asked_host, addresses)
        if primary is None:
            continue
        names = tuple(_known(_node(node, asked_host, addresses) for node in entry[3:]))
        count = end + 1 - start
        primaries[start : end + 1] = [primary] * count
        replicas[start : end + 1] = [names] * count
    return SlotMap(primaries, replicas, addresses)


def _node(node: object, asked_host: str, addresses: dict[str, tuple[str, int]]) -> str | None:
    """Return the name of a node entry (``[host, port, ...]``); ``None``: an unknown endpoint."""
    if not isinstance(node, list) or len(node) < 2 or type(node[1]) is not int:
        raise InvalidResponse(f"CLUSTER SLOTS node {node!r} is not [host, port, ...]")
    raw, port = node[0], node[1]
    if raw is None:
        return None
    if not isinstance(raw, bytes | str):
        raise InvalidResponse(f"CLUSTER SLOTS host {raw!r} is not text")
    host = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if host == "?" or not 0 < port < 65536:
        return None
    if not host:
        host = asked_host
    name = node_name(host, port)
    addresses.setdefault(name, (host, port))
    return name


def parse_cluster_nodes(reply: object, asked_host: str) -> list[str]:
    """Return the names of the primaries a ``CLUSTER NODES`` reply lists with no slot.

    Each line is ``id host:port@bus-port[,hostname] flags primary-id ping pong
    epoch link slot...``. Such a primary (one just added, before its first
    slot is migrated to it) is in no ``CLUSTER SLOTS`` reply, yet it takes
    writes of the keys of a slot it imports (``ASK``). A primary flagged
    ``fail``, ``handshake`` or ``noaddr`` is left out; an empty host means
    the node that was asked (``asked_host``). Raises redis-py's
    ``InvalidResponse`` for a reply that is not shaped like ``CLUSTER NODES``'s.
    """
    if not isinstance(reply, bytes | str):
        raise InvalidResponse(f"CLUSTER NODES replied {type(reply).__name__}, not text")
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    names = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 8:
            raise InvalidResponse(f"CLUSTER NODES line {line!r} has fewer than 8 fields")
        address, flags = fields[1].split(",", 1)[0].split("@", 1)[0], set(fields[2].split(","))
        serves = any(not field.startswith("[") for field in fields[8:])  # [..] a migration
        if "master" not in flags or flags & {"fail", "handshake", "noaddr"} or serves:
            continue
        host, _, port = address.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidResponse(f"CLUSTER NODES address {fields[1]!r} is not host:port@bus")
        names.append(node_name(host.strip("[]") or asked_host, int(port)))
    return names


def _known(names: Iterable[str | None]) -> Iterable[str]:
    return (name for name in names if name is not None)


@dataclass(frozen=True)
class Redirect:
    """What a ``MOVED`` or ``ASK`` error reply says: where the slot's keys are now."""

    ask: bool
    """``ASK``: this one command goes there after ``ASKING``; else ``MOVED``: the slot moved."""
    slot: int
    host: str
    """Empty when the server left it out: the host of the node that replied."""
    port: int


def cluster_error(reply: BaseException) -> str | None:
    """Return :data:`MOVED`, :data:`ASK`, :data:`TRYAGAIN` or :data:`CLUSTERDOWN` for such a reply.

    ``None`` for any other error. Read from redis-py's class where the reply
    reader made one, else from the reply's first word (a reader that knows no
    cluster codes makes a plain ``ResponseError``).
    """
    if isinstance(reply, MovedError):  # before AskError: MovedError is one
        return MOVED
    if isinstance(reply, AskError):
        return ASK
    if isinstance(reply, TryAgainError):
        return TRYAGAIN
    if isinstance(reply, ClusterDownError):
        return CLUSTERDOWN
    code = str(reply).split(" ", 1)[0]
    return code if code in (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) else None


def redirect_of(reply: BaseException) -> Redirect | None:
    """Return the :class:`Redirect` a ``MOVED`` or ``ASK`` reply carries; ``None`` for others.

    The reply reads ``[MOVED|ASK] <slot> <host>:<port>`` (the code may have
    been stripped by the reply reader); a redirect that does not parse is
    not followed.
    """
    kind = cluster_error(reply)
    if kind != MOVED and kind != ASK:
        return None
    words = str(reply).split()
    if words and words[0] == kind:
        words = words[1:]
    if len(words) != 2:
        return None
    slot, (host, _, port) = words[0], words[1].rpartition(":")
    if not slot.isdigit() or not port.isdigit() or not 0 <= int(slot) < SLOTS:
        return None
    return Redirect(ask=kind == ASK, slot=int(slot), host=host.strip("[]"), port=int(port))
