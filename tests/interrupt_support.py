"""Exceptions raised into cache calls by a real signal handler (SIGALRM), as Celery's are.

:class:`Alarms` installs a ``SIGALRM`` handler and an interval timer. The
handler raises :class:`Interrupt`, an ordinary ``Exception`` subclass like
Celery's ``SoftTimeLimitExceeded``, only when the signal lands inside a cache
call (a frame of the facade is on the interrupted stack) and in the code of the
library, its client library or its event loop (not in a logging call, a
garbage-collection hook of the test runner...): so every interrupt reaches the
test through a facade call, and none lands in the test's own bookkeeping.
"""

from __future__ import annotations

import inspect
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

FACADE_FILES = ("facade.py", "facade_async.py")
"""The modules of the cache calls (``pevensie_cache``'s sync and async facades)."""


class Interrupt(Exception):
    """What the handler raises: an ordinary exception, as Celery's soft time limit is."""


LANDINGS = ("/pevensie_cache/", "/pevensie_redis/", "/redis/", "/asyncio/", "/uvloop/")
"""Where an interrupt may land: the library, redis-py, the event loop."""


def _in_a_cache_call(frame: FrameType | None) -> bool:
    if frame is None or not any(part in frame.f_code.co_filename for part in LANDINGS):
        return False
    while frame is not None:
        code = frame.f_code
        if "pevensie_cache" in code.co_filename and code.co_filename.endswith(FACADE_FILES):
            return True
        frame = frame.f_back
    return False


class Alarms:
    """``SIGALRM`` every ``every`` seconds (once, with ``every=0`` and ``first``) while entered."""

    def __init__(self, every: float, first: float | None = None) -> None:
        self.every = every
        self.first = every if first is None else first
        self.fired = 0
        self.raised = 0
        self._previous: object = None

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.fired += 1
        if _in_a_cache_call(frame):
            self.raised += 1
            raise Interrupt(f"interrupt {self.raised}")

    def __enter__(self) -> Alarms:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signal handlers run in the main thread only")
        self._previous = signal.signal(signal.SIGALRM, self._handler)
        signal.setitimer(signal.ITIMER_REAL, self.first, self.every)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous)  # type: ignore[arg-type]


def frames_of(tb: TracebackType | None) -> list[str]:
    """The file of every frame an exception passed through, innermost last."""
    files = []
    while tb is not None:
        files.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    return files


def landed_in(exc: BaseException, *endings: str) -> bool:
    """Whether ``exc`` was raised while a module ending with one of ``endings`` ran."""
    return any(name.endswith(endings) for name in frames_of(exc.__traceback__))


def interrupt_after(target: object, method: str) -> None:
    """Make the next ``target.method()`` raise an :class:`Interrupt` once the real call returned.

    As a signal handler's exception does: the interpreter runs a handler right
    after a call returns. An ``async def`` method raises it once its awaited
    call has ended. Set on the instance, so only this object is affected; later
    calls are plain.
    """
    real = getattr(target, method)
    landed: list[bool] = []

    def land() -> None:
        if not landed:
            landed.append(True)
            raise Interrupt(f"landed as {method}() returned")

    if inspect.iscoroutinefunction(real):

        async def interrupted_async(*args: object, **kwargs: object) -> None:
            await real(*args, **kwargs)
            land()

        setattr(target, method, interrupted_async)
    else:

        def interrupted(*args: object, **kwargs: object) -> None:
            real(*args, **kwargs)
            land()

        setattr(target, method, interrupted)


class InterruptedRelease:
    """Stands in for a cache's lock: an :class:`Interrupt` lands right after its first release.

    Wraps the lock of either face (``with`` or ``async with``); later releases
    are plain.
    """

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self.landed = False

    def _land(self) -> None:
        if not self.landed:
            self.landed = True
            raise Interrupt("landed after the lock's release")

    def __enter__(self) -> InterruptedRelease:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        self._land()

    async def __aenter__(self) -> InterruptedRelease:
        await self._lock.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()
        self._land()
