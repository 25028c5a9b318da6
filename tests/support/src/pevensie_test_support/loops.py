"""Which event loop the async tests run on: asyncio's own, or uvloop.

One switch, the environment variable ``PEVENSIE_TEST_EVENT_LOOP``
(``asyncio``, the default, or ``uvloop``), read by the tests' root conftest
(which hands the loop to pytest-asyncio and keeps only the async-face tests)
and by the helpers that run a loop of their own (:func:`new_event_loop`,
:func:`run`), the soak suite and the end-to-end apps.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["EVENT_LOOPS", "LOOP_VARIABLE", "loop_factory", "new_event_loop", "run", "selected"]

_T = TypeVar("_T")

LOOP_VARIABLE = "PEVENSIE_TEST_EVENT_LOOP"
"""The environment variable that selects the event loop."""

EVENT_LOOPS = ("asyncio", "uvloop")
"""The event loops the async face is tested on."""


def selected() -> str:
    """Return the selected event loop's name (``asyncio`` unless the variable says otherwise)."""
    name = os.environ.get(LOOP_VARIABLE, "").strip().lower() or "asyncio"
    if name not in EVENT_LOOPS:
        raise ValueError(f"{LOOP_VARIABLE}={name!r}: expected one of {', '.join(EVENT_LOOPS)}")
    return name


def loop_factory(name: str | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """Return what makes a new loop of ``name`` (default: the selected one).

    ``uvloop`` when it is not installed raises ``ModuleNotFoundError``.
    """
    if (name or selected()) == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Return a new event loop of the selected kind (for a loop run in a thread of its own)."""
    return loop_factory()()


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run(main)`` on a new loop of the selected kind."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
