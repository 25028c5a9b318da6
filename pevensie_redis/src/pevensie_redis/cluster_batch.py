"""A Cluster batch's plumbing, the same on both faces: its commands by slot, and what a pass left.

A batch operation (``get_many``, ``set_many``, ``delete_many``, ...) is a
:class:`Batch`: its keys, and how to pack a command for the keys of one slot or
for one key. :class:`Outcome` gathers what one pass over the nodes left to do:
commands whose slot moved, whose node failed, that an ``ASK`` sent elsewhere, or
that must be split key by key. The I/O that sends them lives in each face's
Cluster driver (:mod:`pevensie_redis.cluster_async` and its sync twin); this
module does none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pevensie_redis.errors import RedisDriverError
from pevensie_redis.protocol.commands import Shape, chunks, pack, replica_in_sync
from pevensie_redis.protocol.slots import key_slot

__all__ = [
    "Batch",
    "Outcome",
    "ScriptsRefused",
    "Unit",
    "always",
    "one_by_one",
    "settle_replica",
    "slot_key_groups",
    "unlinks",
]

# One command of a batch: the indexes of the keys it carries (in input order), and whether
# it is one multi-key command for all of them (else the single-key command of its one key).
# A plain tuple, not a NamedTuple: on a 100-key batch the attribute access cost about 10%.
Unit = tuple[list[int], bool]


class Batch:
    """One batch operation: its keys, and how to ask for them together or one at a time."""

    __slots__ = (
        "alone",
        "alone_shape",
        "collect",
        "fulls",
        "name",
        "read",
        "scripted",
        "slot_of",
        "together",
        "together_shape",
    )

    def __init__(
        self,
        name: str,
        fulls: list[bytes],
        together: Callable[[list[int]], bytes] | None,
        alone: Callable[[int], bytes],
        collect: Callable[[list[int], list[Any]], None] | None = None,
        *,
        shapes: tuple[Callable[[int], Shape] | None, Shape],
        scripted: bool = False,
        read: bool = False,
    ) -> None:
        self.name = name
        """What the batch sends, for error messages: ``MGET``, ``EVALSHA``, ..."""
        self.fulls = fulls
        """The full keys, each once."""
        self.together = together
        """Packs one command for up to ``BATCH_SIZE`` keys of one slot (``None``: key by key)."""
        self.alone = alone
        """Packs the command for one key."""
        self.together_shape, self.alone_shape = shapes
        """The shape of ``together``'s reply for a number of keys, and of ``alone``'s."""
        self.collect = collect
        """Takes the replies, one value per key (``indexes``, ``values``); ``None``: ignored."""
        self.scripted = scripted
        """``together`` is ``EVALSHA`` of the ``SET ... EX`` script."""
        self.read = read
        """Reads only: with ``read_from_replicas``, they may go to replicas."""
        self.slot_of: list[int] = []
        """The slot of each key (filled by :meth:`slot_groups`)."""

    def slot_groups(self) -> list[list[int]]:
        """Return the indexes of the keys, grouped by slot; note each key's slot."""
        self.slot_of = slots = [key_slot(full) for full in self.fulls]
        groups: dict[int, list[int]] = {}
        for index, slot in enumerate(slots):
            groups.setdefault(slot, []).append(index)
        return list(groups.values())

    def units(self, indexes: list[int]) -> list[Unit]:
        """Return the commands for the keys of one slot: together in chunks, or a lone key's."""
        if self.together is None or len(indexes) == 1:
            return [([index], False) for index in indexes]
        return [(list(part), True) for part in chunks(indexes)]

    def pack(self, unit: Unit) -> bytes:
        """Pack the command of ``unit``."""
        indexes, is_together = unit
        if is_together and self.together is not None:
            return self.together(indexes)
        return self.alone(indexes[0])

    def shape(self, unit: Unit) -> Shape:
        """Return the shape of the reply to ``unit``'s command."""
        indexes, is_together = unit
        if is_together and self.together_shape is not None:
            return self.together_shape(len(indexes))
        return self.alone_shape


class Outcome:
    """What a pass of a batch left to do: commands to send again, and how."""

    __slots__ = ("asked", "avoid", "error", "failed", "moved", "split", "unreachable")

    def __init__(self) -> None:
        self.moved: list[Unit] = []
        """Commands whose slot moved (the slot map says where to now)."""
        self.failed: list[Unit] = []
        """Commands whose node did not answer, or that met ``CLUSTERDOWN``: after a refresh."""
        self.split: list[Unit] = []
        """Multi-key commands for a slot being migrated: to send again key by key."""
        self.asked: dict[str, list[Unit]] = {}
        """Single-key commands an ``ASK`` sent elsewhere, by the node to ask."""
        self.error: BaseException | None = None
        """Why the first of :attr:`failed` failed (raised when no attempt is left)."""
        self.avoid: str | None = None
        """A node that did not answer: asked last for the slot map."""
        self.unreachable = False
        """Whether a node did not answer (else each of :attr:`failed` was refused before it ran)."""

    def fail(self, units: list[Unit], error: BaseException, node: str | None) -> None:
        """Note ``units`` as failed with ``error``.

        ``node``: the node that did not answer; ``None``: the commands were
        refused before they ran (``CLUSTERDOWN``, ``TRYAGAIN``, no script, no
        node for the slot).
        """
        if not self.failed:
            self.error = error
        self.failed.extend(units)
        if node is not None:
            self.avoid = node
            self.unreachable = True

    def add(self, other: Outcome) -> None:
        """Take over what ``other`` left to do."""
        if other.failed and other.error is not None:
            self.fail(other.failed, other.error, other.avoid)
        self.moved.extend(other.moved)
        self.split.extend(other.split)
        for name, units in other.asked.items():
            self.asked.setdefault(name, []).extend(units)


def one_by_one(unit: Unit) -> list[Unit]:
    """Return the single-key commands that do what ``unit`` does."""
    indexes, is_together = unit
    if not is_together:
        return [unit]
    return [([index], False) for index in indexes]


def settle_replica(
    batch: Batch, units: list[Unit], replies: list[Any] | RedisDriverError, *, checked: bool
) -> list[Unit]:
    """Deliver a replica's good replies; return the commands to send to the primaries.

    ``checked``: the first reply is the replica's ``ROLE``; a replica whose
    link to its primary is not up answered nothing that may be used.
    """
    if isinstance(replies, RedisDriverError):
        return units
    if checked:
        if not replies or not replica_in_sync(replies[0]):
            return units
        replies = replies[1:]
    failed: list[Unit] = []
    for position, unit in enumerate(units):
        if position >= len(replies) or isinstance(replies[position], Exception):
            failed.append(unit)  # not answered (the connection broke), or an error reply
        elif batch.collect is not None:
            reply = replies[position]
            batch.collect(unit[0], reply if unit[1] else [reply])
    return failed


def always(shape: Shape) -> Callable[[int], Shape]:
    """Return ``shape`` whatever the number of keys (a batch command's reply of one shape)."""

    def shape_of(count: int) -> Shape:
        return shape

    return shape_of


class ScriptsRefused(Exception):
    """The cluster refuses scripts (ACL, renamed or disabled commands)."""


def slot_key_groups(keys: list[bytes]) -> list[list[bytes]]:
    """Return ``keys`` grouped by slot, in a fixed order (one ``UNLINK`` per group)."""
    groups: dict[int, list[bytes]] = {}
    for key in keys:
        groups.setdefault(key_slot(key), []).append(key)
    return list(groups.values())


def unlinks(keys: list[bytes]) -> list[bytes]:
    """Pack one ``UNLINK`` per slot group of ``keys`` (CROSSSLOT is refused even on one node)."""
    return [pack([b"UNLINK", *group]) for group in slot_key_groups(keys)]
