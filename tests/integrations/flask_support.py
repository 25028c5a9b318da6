"""Flask-Caching's generic backend tests, from the sdist of the installed release."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from sources import installed, suite_dir


def backend_suite() -> ModuleType:
    """Return Flask-Caching's ``tests/test_backend_cache.py`` as a module (not collected)."""
    root = suite_dir("flask-caching", installed("flask-caching"), "tests")
    spec = importlib.util.spec_from_file_location(
        "flask_caching_backend_suite", root / "tests" / "test_backend_cache.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
