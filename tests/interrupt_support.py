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

import asyncio
import inspect
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
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


LANDING_SIGNAL = signal.SIGUSR1
"""The signal whose handler :func:`interrupt_after` and :func:`interrupt_after_release` run."""


@contextmanager
def _handler_installed() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupt(f"landed in {frame.f_code.co_name if frame else '?'}")

    previous = signal.signal(LANDING_SIGNAL, handler)
    try:
        yield
    finally:
        signal.signal(LANDING_SIGNAL, previous)


@contextmanager
def interrupt_after(target: object, method: str) -> Iterator[None]:
    """While entered, the next ``target.method()`` is followed by a signal handler's exception.

    As a real handler's :class:`Interrupt` lands: the interpreter runs a handler
    right after a call returns, here the real method's (an ``async def`` one's
    once its awaited call has ended), so the facade recognises it as the
    caller's own. Set on the instance, so only this object is affected; later
    calls are plain.
    """
    real = getattr(target, method)
    landed: list[bool] = []

    def land() -> None:
        if not landed:
            landed.append(True)
            signal.raise_signal(LANDING_SIGNAL)  # its handler runs before this returns

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
    with _handler_installed():
        yield
    assert landed, f"{method}() was never called"


@contextmanager
def interrupt_after_release(c: Any) -> Iterator[None]:
    """While entered, a handler's exception lands right after the next release of ``c``'s lock.

    ``c`` is a cache of either face (its lock taken by ``with`` or ``async with``).
    """
    c._lock = _InterruptedRelease(c._lock)
    with interrupt_after(c._lock, "release"):
        yield


class _InterruptedRelease:
    """A lock of either face whose ``release`` may be replaced on the instance."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> None:
        await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


def stall_after(target: object, method: str) -> asyncio.Event:
    """Make the next ``await target.method()`` wait, once the real call returned, until cancelled.

    Return the event set when it starts waiting, so a test cancels the caller
    exactly there. Later calls are plain.
    """
    real = getattr(target, method)
    reached = asyncio.Event()

    async def stalled(*args: object, **kwargs: object) -> None:
        await real(*args, **kwargs)
        if not reached.is_set():
            reached.set()
            await asyncio.Event().wait()

    setattr(target, method, stalled)
    return reached
