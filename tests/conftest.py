"""Suite-wide: which event loop the async tests run on, and the order modules are handed out.

``PEVENSIE_TEST_EVENT_LOOP=uvloop`` (``nox -s uvloop`` sets it) runs the async
face's tests on uvloop, and only those: every pytest-asyncio test that does
not exercise the sync face (no ``sync`` in its parameter ids), every test
parametrized onto the ``async`` face, and tests marked ``event_loop`` (they
run an event loop of their own, through :mod:`pevensie_test_support.loops`).
pytest-asyncio gets the loop from its ``pytest_asyncio_loop_factories`` hook;
helpers that start a loop themselves ask :mod:`pevensie_test_support.loops`.
Unset (or ``asyncio``), nothing changes.

pytest-xdist (``--dist loadscope --no-loadscope-reorder``, as nox runs it) gives
each test process whole modules (or classes) in collection order. Modules with
``slow`` tests (resharding under load, the soak, the long chaos run...) come
first, so the longest work starts at once and the short modules fill in around
it, instead of one process finishing a long module alone at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import version
from typing import Any

import pytest
from pytest_asyncio import is_async_test

from pevensie_test_support import loops

try:
    from hypothesis import settings
except ImportError:  # sessions without the property-based tests (the frameworks' suites)
    pass
else:
    # No time limit per example: a loaded CI machine once took 312 ms over the default
    # 200 ms on a pure function, and speed goals live in the benchmarks, not in tests.
    settings.register_profile("pevensie", deadline=None)
    settings.load_profile("pevensie")


class _UvloopFactories:
    """The pytest-asyncio hook that makes every async test's loop a uvloop one."""

    @pytest.hookimpl(optionalhook=True)
    def pytest_asyncio_loop_factories(
        self, config: pytest.Config, item: pytest.Item
    ) -> Mapping[str, Callable[[], Any]]:
        return {"uvloop": loops.loop_factory("uvloop")}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "event_loop: runs an event loop of its own; the uvloop pass runs it too"
    )
    try:
        name = loops.selected()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    if name != "uvloop":
        return
    try:
        loops.loop_factory("uvloop")
    except ModuleNotFoundError:
        raise pytest.UsageError(
            f"{loops.LOOP_VARIABLE}=uvloop, but uvloop is not installed"
        ) from None
    if not hasattr(config.hook, "pytest_asyncio_loop_factories"):
        raise pytest.UsageError(
            f"{loops.LOOP_VARIABLE}=uvloop needs a pytest-asyncio with the "
            "pytest_asyncio_loop_factories hook (install the newest)"
        )
    config.pluginmanager.register(_UvloopFactories(), "pevensie-uvloop")


def pytest_report_header(config: pytest.Config) -> str:
    name = loops.selected()
    shown = f"uvloop {version('uvloop')}" if name == "uvloop" else "asyncio's own"
    return f"event loop of the async tests: {shown} ({loops.LOOP_VARIABLE})"


def _on_the_async_face(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    tokens = set(callspec.id.split("-")) if callspec is not None else set()
    if "sync" in tokens:
        return False
    marked = item.get_closest_marker("event_loop") is not None
    return is_async_test(item) or "async" in tokens or marked


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep only the async face's tests on uvloop; move modules with ``slow`` tests first."""
    if loops.selected() == "uvloop":
        kept, left = [], []
        for item in items:
            (kept if _on_the_async_face(item) else left).append(item)
        if left:
            config.hook.pytest_deselected(items=left)
            items[:] = kept
    long_running = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in long_running)  # stable: order kept otherwise
