"""A clock the tests move forward, for stores that take their clock as an argument."""

from __future__ import annotations

import time


class ShiftedClock:
    """``time.monotonic()`` plus the seconds :meth:`advance` added: time flows, and jumps."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward at once."""
        self.offset += seconds
