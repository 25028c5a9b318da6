"""How many more attempts a Cluster call gets, and the pause before each: the same on both faces.

One :class:`Attempts` per call of the Cluster driver (made at its first failed
attempt), by :meth:`pevensie_redis.cluster_io_async.ClusterIO.attempts` and its
sync twin; the table of what the driver does on each reply is in
:mod:`pevensie_redis.cluster_io_async`. This module does no I/O.
"""

from __future__ import annotations

import time

__all__ = ["BACKOFF_CAP", "Attempts", "backoff"]

BACKOFF_CAP = 0.25
"""The longest pause, in seconds, between two attempts of a call."""


def backoff(failures: int) -> float:
    """Return the pause before the next attempt after ``failures`` failed ones (exponential)."""
    return min(BACKOFF_CAP, 0.01 * 2.0 ** (failures - 1))


class Attempts:
    """How many more attempts one call gets, and the pause before each.

    Two kinds of failed attempt, bounded apart:

    - :meth:`refused`: the cluster answered before running the command
      (``TRYAGAIN``, ``CLUSTERDOWN``) or the map names no node for the slot.
      Nothing ran, so any command may go again, and such answers last a
      moment (a failover, a migration): another attempt while the call's
      ``timeout`` (from its start) has time left, and at least ``retries``
      more in any case. Not while the cluster is known to be down (a call's
      refusals outlasted its timeout less than a ``timeout`` ago: see
      :meth:`~pevensie_redis.cluster_io_async.ClusterIO.gave_up`): then
      ``retries`` more, and the call fails fast instead of holding its caller
      for the whole timeout again.
    - :meth:`failed`: a node did not answer (each such attempt may have
      waited a whole ``timeout``): ``retries`` more attempts.
    """

    __slots__ = ("deadline", "failures", "refusals", "retries", "started")

    def __init__(
        self, retries: int, timeout: float, started: float | None = None, *, ride: bool = True
    ) -> None:
        """Start counting for a call (``retries``, ``timeout`` in seconds: the config's).

        ``started``: when the call started (``time.monotonic()``; ``None``: now).
        A call makes its count at its first failed attempt only, from the
        start it noted: a call that succeeds at once allocates nothing.
        ``ride``: whether refusals are ridden out for the timeout (``False``:
        ``retries`` more attempts only).
        """
        self.retries = retries
        self.started = time.monotonic() if started is None else started
        self.deadline = self.started + (timeout if ride else 0.0)
        """When the call's time for riding out refusals is spent (monotonic seconds)."""
        self.failures = 0
        """Attempts that met a node that did not answer."""
        self.refusals = 0
        """Attempts the cluster refused before running the command."""

    def failed(self) -> bool:
        """Count an attempt whose node did not answer; return whether another one may follow."""
        self.failures += 1
        return self.failures <= self.retries

    def refused(self) -> bool:
        """Count an attempt refused before it ran; return whether another one may follow."""
        self.refusals += 1
        return self.refusals <= self.retries or time.monotonic() < self.deadline

    def pause(self) -> float:
        """Return the back-off before the next attempt: exponential, never past the deadline."""
        delay = backoff(self.failures + self.refusals)
        left = self.deadline - time.monotonic()
        return min(delay, left) if left > 0 else delay

    def spent(self, name: str) -> str:
        """Return what the call did, for its error: ``GET, refused 12 times in 5.00 s``."""
        took = time.monotonic() - self.started
        return f"{name}, refused {self.refusals} times in {took:.2f} s"
