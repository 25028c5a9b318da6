"""The API reference of the docs site covers every public name, each with a docstring.

The reference pages (docs/reference/*.md) render modules with mkdocstrings
(``::: module``), which shows a module's documented public members and the
names its ``__all__`` lists. A public name
is one listed in the ``__all__`` of the packages, of ``pevensie_cache.cache``, of
the testing packages, or of any module the reference renders.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"
EXPORTING = [
    "pevensie_cache",
    "pevensie_cache.cache",
    "pevensie_cache.testing",
    "pevensie_redis",
    "pevensie_redis.testing",
]


def directives() -> set[str]:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(REFERENCE.glob("*.md")))
    return set(re.findall(r"^::: ([\w.]+)$", text, re.M))


def load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:  # a contrib module whose framework is not installed
        return None


def public_names() -> list[tuple[str, str]]:
    modules = sorted(set(EXPORTING) | {d for d in directives() if load(d) is not None})
    pairs = []
    for name in modules:
        module = load(name)
        if isinstance(module, ModuleType):
            pairs += [(name, n) for n in getattr(module, "__all__", ())]
    return pairs


def top_level(module_name: str) -> ast.Module:
    module = importlib.import_module(module_name)
    return ast.parse(inspect.getsource(module))


def home_of(module_name: str, name: str) -> str:
    """The module that defines ``name``, following ``from x import name`` in ``module_name``."""
    obj = getattr(importlib.import_module(module_name), name)
    if isinstance(obj, ModuleType):
        return obj.__name__
    if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__.startswith("pevensie"):
        return str(obj.__module__)
    for node in top_level(module_name).body:
        if isinstance(node, ast.ImportFrom) and any(a.name == name for a in node.names):
            return home_of(str(node.module), name)
    return module_name


def has_attribute_docstring(module_name: str, name: str) -> bool:
    body = top_level(module_name).body
    for node, following in itertools.pairwise(body):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            value = getattr(following, "value", None)
            return isinstance(value, ast.Constant) and isinstance(value.value, str)
    return False


@pytest.mark.parametrize(("module_name", "name"), public_names())
def test_every_public_name_is_in_the_reference_with_a_docstring(
    module_name: str, name: str
) -> None:
    home = home_of(module_name, name)
    rendered = directives()
    # mkdocstrings renders a module's own members and the names its __all__ lists.
    assert {home, module_name, f"{home}.{name}"} & rendered, (
        f"{module_name}.{name} is defined in {home}, which no docs/reference page renders"
    )
    obj = getattr(importlib.import_module(module_name), name)
    if isinstance(obj, ModuleType) or inspect.isclass(obj) or inspect.isfunction(obj):
        assert inspect.getdoc(obj), f"{home}.{name} has no docstring"
    else:
        assert has_attribute_docstring(home, name), f"{home}.{name} has no docstring"


def test_the_reference_pages_render_modules_that_exist() -> None:
    missing = [d for d in directives() if importlib.util.find_spec(d.rsplit(".", 1)[0]) is None]
    assert missing == []
