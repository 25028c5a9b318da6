"""File-lock leases: how the test processes of a run take turns on what they share.

:func:`hold` takes an ``flock`` on a file, exclusive (one holder) or shared
(any number of shared holders, and no exclusive one), for the duration of a
``with`` block. The kernel drops the lock when the holder's file is closed or
its process dies, so a crashed test process never leaves a topology locked.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pevensie_test_support.nodes import TopologyError

__all__ = ["hold", "take"]

POLL = 0.01
"""Seconds between two tries for a lock held by another process."""


def take(path: Path, *, exclusive: bool = True) -> int | None:
    """Take an ``flock`` on ``path`` now, if no holder is in the way.

    Returns the open file descriptor that holds the lock (``os.close`` it to
    let go), or None when another holder is in the way.
    """
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    try:
        fcntl.flock(handle, mode)
    except BlockingIOError:
        os.close(handle)
        return None
    except BaseException:
        os.close(handle)
        raise
    return handle


@contextmanager
def hold(path: Path, *, exclusive: bool = True, timeout: float, what: str) -> Iterator[None]:
    """Hold an ``flock`` on ``path`` for the ``with`` block.

    Waits up to ``timeout`` seconds for the holders in the way, then raises
    :class:`~pevensie_test_support.TopologyError` naming ``what``.
    """
    deadline = time.monotonic() + timeout
    while (handle := take(path, exclusive=exclusive)) is None:
        if time.monotonic() >= deadline:
            raise TopologyError(
                f"waited {timeout:g} s for {what}: another test process held it"
            ) from None
        time.sleep(POLL)
    try:
        yield
    finally:
        os.close(handle)  # drops the lock
