"""How long this process could not run: what a time bound in a test may leave out."""

from __future__ import annotations

import threading
import time
from types import TracebackType

__all__ = ["Stalls"]


class Stalls:
    """Measure, over a ``with`` block, how long this process could not run.

    A thread wakes every 5 ms and adds up the gaps longer than 20 ms (less the
    5 ms it asked for): time the machine did not schedule the process. A driver
    that hangs leaves that thread running on time, so a "never hangs" bound may
    add :attr:`seconds` without excusing a hang; one CI run saw a sync call
    take 2.07 s of a 1.5 s bound while the machine ran four test streams.
    """

    PERIOD = 0.005
    COUNTED = 0.02

    def __init__(self) -> None:
        self.seconds = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="stall-sampler", daemon=True)

    def _sample(self) -> None:
        last = time.monotonic()
        while not self._done.wait(self.PERIOD):
            now = time.monotonic()
            if now - last > self.COUNTED:
                self.seconds += now - last - self.PERIOD
            last = now

    def __enter__(self) -> Stalls:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()
