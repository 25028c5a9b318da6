"""Suite-wide: the modules that hold long-running tests are handed out first.

pytest-xdist (``--dist loadscope --no-loadscope-reorder``, as nox runs it) gives
each test process whole modules (or classes) in collection order. Modules with
``slow`` tests (resharding under load, the soak, the long chaos run...) come
first, so the longest work starts at once and the short modules fill in around
it, instead of one process finishing a long module alone at the end.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the modules that hold ``slow`` tests to the front (the sort is stable)."""
    long_running = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in long_running)
