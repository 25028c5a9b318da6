"""What a child process made by ``os.fork()`` repairs first: the locks other threads held.

``os.fork()`` copies only the thread that calls it. A ``threading.Lock``
another thread held at that instant stays held for good in the child, whose
first use of it would hang (or, for a non-blocking ``acquire``, never
succeed); so does work that other thread had under way, which no thread of the
child will finish. Pre-forking servers (gunicorn's ``preload_app``,
multiprocessing's ``fork`` start method, Celery's prefork pool) fork processes
that hold connected caches, with background threads.

An object with such locks calls :func:`renew_after_fork` once, when it is
made; in each child forked while it lives, its ``_forked()`` method runs
before anything else of the child's (``os.register_at_fork``), in the one
thread there is: it makes its locks anew and puts what their holders may have
left half done, or will never finish, into a safe state. Nothing runs on the
hot path: no process id is compared per call.

Both packages use this one registry (``pevensie_redis`` too: it imports
``pevensie_cache``, never the other way round).
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["Forkable", "renew_after_fork"]


class Forkable(Protocol):
    """An object that puts itself right in a forked child (its locks made anew)."""

    def _forked(self) -> None:
        """In the child, the only thread: renew the locks, drop the other threads' work."""


_OWNERS: weakref.WeakSet[Forkable] = weakref.WeakSet()


def renew_after_fork(owner: Forkable) -> None:
    """Have ``owner._forked()`` called in every child forked while ``owner`` lives."""
    _OWNERS.add(owner)


def _after_fork_in_child() -> None:
    failures: list[Exception] = []
    for owner in list(_OWNERS):
        try:
            owner._forked()
        except Exception as exc:  # the others are put right all the same
            failures.append(exc)
    if failures:
        raise failures[0]


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
