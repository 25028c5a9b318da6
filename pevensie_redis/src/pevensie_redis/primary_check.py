"""When a Sentinel driver in use asks the sentinels again which server is the primary.

No I/O happens here; both faces ask on the same schedule with one
:class:`PrimaryCheck`, from the one channel design
(:mod:`~pevensie_redis.channel`), which asks the Sentinel locator
(:class:`~pevensie_redis.sentinel.Sentinels`) in the background.

A controlled failover (``SENTINEL FAILOVER``) closes no connection: the former
primary stays up and keeps taking writes until the sentinels turn it into a
replica, some 10 s after they name the new primary, and drops those writes when
it resyncs. Connections are therefore not enough to notice the change: while the
driver is used, it asks the sentinels every :data:`PRIMARY_CHECK_INTERVAL`
seconds, and when they name another server its connections move there. When no
sentinel answers, the driver keeps the primary it knows.

The question runs in the background, so commands do not wait for it, except
after an idle spell: when the driver was not used for :data:`STALE_AFTER`
seconds, nobody asked meanwhile, and a write sent at once to the primary it
knows would be lost if the sentinels had named another. The first command
after such a spell asks, and the commands sent until the answer comes wait
for it (a round trip to a sentinel; at most the driver's timeout from that
first command, then they go to the primary they know).
"""

from __future__ import annotations

import threading
import time

__all__ = ["PRIMARY_CHECK_INTERVAL", "STALE_AFTER", "PrimaryCheck"]

PRIMARY_CHECK_INTERVAL = 1.0
"""Seconds between two questions a used Sentinel driver asks the sentinels: which is the primary?"""

STALE_AFTER = 2 * PRIMARY_CHECK_INTERVAL
"""Seconds without a command after which the next commands wait for the sentinels' answer."""


class PrimaryCheck:
    """Says when to ask the sentinels for the primary: one caller per interval, one at a time.

    Safe for threads and for the tasks of an event loop (it never blocks). The
    caller :meth:`due` answers ``True`` asks, then calls :meth:`done` whatever
    the outcome; the others go on with the primary they know, unless they
    :meth:`hold` (after an idle spell).
    """

    __slots__ = ("_asking", "_hold_until", "_next_at", "_used_at")

    def __init__(self) -> None:
        self._used_at = time.monotonic()  # made as the channel's first pipe opens
        self._next_at = self._used_at + PRIMARY_CHECK_INTERVAL
        self._hold_until = 0.0
        self._asking = threading.Lock()

    def hold(self, timeout: float) -> float:
        """Note a command; return the seconds it may wait for the answer (``0``: none).

        The first command after :data:`STALE_AFTER` seconds without one makes
        the question due, and it and every command after it wait for its
        answer, until :meth:`done` or ``timeout`` seconds after that first one.
        """
        now = time.monotonic()
        if now - self._used_at > STALE_AFTER:
            self._hold_until = now + timeout
            self._next_at = now
        self._used_at = now
        return self._hold_until - now if self._hold_until > now else 0.0

    def holding(self) -> bool:
        """Whether commands still wait: a question made due by an idle spell is under way."""
        return self._asking.locked() and time.monotonic() < self._hold_until

    def due(self) -> bool:
        """Whether this caller should ask now: ``True`` once per interval, never twice at once."""
        if time.monotonic() < self._next_at or not self._asking.acquire(blocking=False):
            return False
        self._next_at = time.monotonic() + PRIMARY_CHECK_INTERVAL
        return True

    def done(self) -> None:
        """Note that the question :meth:`due` allowed has ended (answered or not)."""
        self._hold_until = 0.0
        self._asking.release()
