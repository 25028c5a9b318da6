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
"""

from __future__ import annotations

import threading
import time

__all__ = ["PRIMARY_CHECK_INTERVAL", "PrimaryCheck"]

PRIMARY_CHECK_INTERVAL = 1.0
"""Seconds between two questions a used Sentinel driver asks the sentinels: which is the primary?"""


class PrimaryCheck:
    """Says when to ask the sentinels for the primary: one caller per interval, one at a time.

    Safe for threads and for the tasks of an event loop (it never blocks). The
    caller :meth:`due` answers ``True`` asks, then calls :meth:`done` whatever
    the outcome; the others go on with the primary they know.
    """

    __slots__ = ("_asking", "_next_at")

    def __init__(self) -> None:
        self._next_at = time.monotonic() + PRIMARY_CHECK_INTERVAL
        self._asking = threading.Lock()

    def due(self) -> bool:
        """Whether this caller should ask now: ``True`` once per interval, never twice at once."""
        if time.monotonic() < self._next_at or not self._asking.acquire(blocking=False):
            return False
        self._next_at = time.monotonic() + PRIMARY_CHECK_INTERVAL
        return True

    def done(self) -> None:
        """Note that the question :meth:`due` allowed has ended (answered or not)."""
        self._asking.release()
