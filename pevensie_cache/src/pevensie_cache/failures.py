"""Logging the failures ``fail_open=True`` serves as misses, at most once per interval.

An outage makes every call fail at once: one WARNING per failure would flood
the logs just when they matter. :class:`FailureLog` logs the first failure at
once, then at most one line per :data:`LOG_EVERY` seconds, counting those it
left out. Metrics count every one (see :mod:`pevensie_cache.telemetry`).
"""

from __future__ import annotations

import logging
import threading
import time

from pevensie_cache import forks
from pevensie_cache.errors import DriverError

__all__ = ["LOG_EVERY", "FailureLog"]

LOG_EVERY = 10.0
"""Seconds between two warnings about failures served open, at least."""

logger = logging.getLogger("pevensie_cache")


class FailureLog:
    """Logs failures served open at WARNING, the first at once, then one line per interval."""

    def __init__(self, every: float = LOG_EVERY) -> None:
        """Log at most once per ``every`` seconds."""
        self._every = every
        self._lock = threading.Lock()
        self._next = 0.0  # the monotonic time before which nothing is logged
        self._left_out = 0
        self.total = 0
        """Every failure served open, logged or not."""
        forks.renew_after_fork(self)

    def _forked(self) -> None:
        """In a forked child: a new lock (another thread may have held it)."""
        self._lock = threading.Lock()

    def failed(self, operation: str, resource_type: str, exc: BaseException) -> None:
        """Record one failure; log it unless a line went out less than ``every`` seconds ago."""
        now = time.monotonic()
        with self._lock:
            self.total += 1
            if now < self._next:
                self._left_out += 1
                return
            left_out, self._left_out = self._left_out, 0
            self._next = now + self._every
        more = f" ({left_out} more since the last warning)" if left_out else ""
        # A driver's own message names the server, never a password (a driver rule); a
        # foreign exception's text may hold one, so only its type is named.
        detail = f": {exc}" if isinstance(exc, DriverError) else ""
        if operation == "connect":
            logger.warning(
                "fail_open: connect failed with %s%s; serving misses and no-ops until the "
                "store answers (tried again at most every second, on use)%s",
                type(exc).__name__,
                detail,
                more,
            )
            return
        logger.warning(
            "fail_open: %s on resource type %r failed with %s%s; served as %s%s",
            operation,
            resource_type,
            type(exc).__name__,
            detail,
            "a miss" if operation in _READS else "a no-op",
            more,
        )


_READS = frozenset({"get", "get_many", "exists", "ttl"})
