"""Which replica a read goes to (``read_from_replicas``): in turn, skipping those that failed.

No I/O happens here; the Sentinel reads (:mod:`~pevensie_redis.replicas`)
and the Cluster driver, on both faces, choose with one :class:`ReplicaChoice`.

- **in turn**: each read takes the next replica of those it may use (a
  Sentinel service's replicas, or the replicas of a Cluster slot's primary);
- **avoided for a while**: a replica that failed a read (connection error,
  timeout, error reply) or whose link to its primary was down is left out for
  :data:`AVOID_SECONDS`; the read itself goes to the primary at once;
- **checked now and then**: at most once per :data:`CHECK_INTERVAL` seconds a
  read to a replica carries a ``ROLE`` in the same round trip (no extra round
  trip), and the read's answer is used only if ``ROLE`` says the replica's
  link to its primary is up. A replica whose link is cut (its primary gone,
  a network split, a failed resync) stops serving stale data within about
  that interval.

Replication is asynchronous: a replica that is in sync may still be a few
writes behind its primary, so a read from it may return an older value.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence

from pevensie_cache import forks

__all__ = ["AVOID_SECONDS", "CHECK_INTERVAL", "REFRESH_INTERVAL", "ReplicaChoice"]

AVOID_SECONDS = 5.0
"""Seconds a replica that failed a read is left out; then it is tried (and checked) again."""

CHECK_INTERVAL = 1.0
"""Seconds between two ``ROLE`` checks of one replica, each sent along with a read."""

REFRESH_INTERVAL = 5.0
"""Seconds between two questions about which replicas there are (sentinels, or the cluster)."""


class ReplicaChoice:
    """Picks replicas in turn, leaves out those that failed, and says when to check one.

    Safe for threads: its state is a counter and two dictionaries whose single
    operations are atomic; a race costs at most an extra check or a turn.
    """

    __slots__ = ("__weakref__", "_avoided", "_checked", "_refresh_at", "_refreshing", "_turn")

    def __init__(self) -> None:
        self._turn = itertools.count()
        self._avoided: dict[str, float] = {}  # name -> monotonic time it may be used again
        self._checked: dict[str, float] = {}  # name -> monotonic time its next check is due
        self._refresh_at = 0.0
        self._refreshing = threading.Lock()
        forks.renew_after_fork(self)

    def refresh_due(self) -> bool:
        """Whether to ask again which replicas there are; ``True`` for one caller per interval.

        The caller that gets ``True`` asks (every :data:`REFRESH_INTERVAL`
        seconds); the others go on with the list they have.
        """
        if time.monotonic() < self._refresh_at or not self._refreshing.acquire(blocking=False):
            return False
        try:
            now = time.monotonic()
            if now < self._refresh_at:
                return False
            self._refresh_at = now + REFRESH_INTERVAL
            return True
        finally:
            self._refreshing.release()

    def _forked(self) -> None:
        """In a forked child: a new lock, and a refresh due at the child's first read.

        Held by another thread at the fork, the lock would make no refresh
        due again; a refresh that thread had under way never ends here.
        """
        self._refreshing = threading.Lock()
        self._refresh_at = 0.0

    def pick(self, candidates: Sequence[str]) -> str | None:
        """Return the next of ``candidates`` not avoided now; ``None``: ask the primary."""
        count = len(candidates)
        if not count:
            return None
        turn = next(self._turn)
        avoided = self._avoided
        if not avoided:
            return candidates[turn % count]
        now = time.monotonic()
        for step in range(count):
            name = candidates[(turn + step) % count]
            until = avoided.get(name)
            if until is None:
                return name
            if until <= now:
                avoided.pop(name, None)
                return name
        return None

    def check_due(self, name: str) -> bool:
        """Whether this read to ``name`` should carry a ``ROLE`` check (and note that it does)."""
        now = time.monotonic()
        if now < self._checked.get(name, 0.0):
            return False
        self._checked[name] = now + CHECK_INTERVAL
        return True

    def avoid(self, name: str) -> None:
        """Leave ``name`` out for :data:`AVOID_SECONDS`; its first read after that is checked."""
        self._avoided[name] = time.monotonic() + AVOID_SECONDS
        self._checked.pop(name, None)

    def avoided(self) -> list[str]:
        """Return the replicas left out now (for tests and inspection)."""
        now = time.monotonic()
        return [name for name, until in list(self._avoided.items()) if until > now]
