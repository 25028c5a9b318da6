"""The API reference of the docs site covers every public name once, each with a docstring.

The reference pages (docs/reference/*.md) render modules and objects with
mkdocstrings (``::: module``, ``::: module.Name``); a directive may list the
``members`` it shows. A public name is one listed in the ``__all__`` of the
packages, of ``pevensie_cache.cache`` or of the testing packages, or one a
directive renders. Each is rendered by exactly one directive, so no page
documents a class twice (a re-exporting module lists only its own members),
and no internal module is rendered whole.
"""

from __future__ import annotations

import ast
import functools
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


DIRECTIVE = re.compile(
    r"^::: ([\w.]+)\n((?:    .*\n)*)",
    re.M,
)


@functools.cache
def directive_members() -> dict[str, list[str] | None]:
    """Each rendered target and the members its options list (``None``: all of them)."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(REFERENCE.glob("*.md")))
    found: dict[str, list[str] | None] = {}
    for target, options in DIRECTIVE.findall(text + "\n"):
        assert target not in found, f"{target} is rendered by two directives"
        if "members: false" in options:
            found[target] = []
        elif "members:" in options:
            found[target] = re.findall(r"^        - (\w+)$", options, re.M)
        else:
            found[target] = None
    return found


def directives() -> set[str]:
    return set(directive_members())


def load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:  # a contrib module whose framework is not installed
        return None


def public_names() -> list[tuple[str, str]]:
    rendered = directive_members()
    modules = sorted(set(EXPORTING) | {d for d in rendered if load(d) is not None})
    pairs = []
    for name in modules:
        module = load(name)
        if isinstance(module, ModuleType):
            listed = rendered.get(name)
            names = getattr(module, "__all__", ()) if listed is None else listed
            pairs += [(name, n) for n in names]
    return sorted(set(pairs))


def renderings(module_name: str, name: str) -> list[str]:
    """The directives that render ``module_name.name``: itself, or a module listing it."""
    home = home_of(module_name, name)
    obj = getattr(importlib.import_module(module_name), name)
    if isinstance(obj, ModuleType):
        return [t for t in directive_members() if t == obj.__name__]
    found = []
    for target, members in directive_members().items():
        if target in (f"{home}.{name}", f"{module_name}.{name}"):
            found.append(target)
            continue
        module = load(target)
        if not isinstance(module, ModuleType):
            continue
        listed = getattr(module, "__all__", ()) if members is None else members
        if any(home_of(target, n) == home and n == name for n in listed if hasattr(module, n)):
            found.append(target)
    return found


@functools.cache
def top_level(module_name: str) -> ast.Module:
    module = importlib.import_module(module_name)
    return ast.parse(inspect.getsource(module))


@functools.cache
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
    # mkdocstrings renders a module's members (its __all__, or those its directive lists).
    found = renderings(module_name, name)
    assert len(found) == 1, (
        f"{module_name}.{name} (defined in {home}) is rendered by "
        f"{found or 'no directive'}: it must be exactly one"
    )
    obj = getattr(importlib.import_module(module_name), name)
    if isinstance(obj, ModuleType) or inspect.isclass(obj) or inspect.isfunction(obj):
        assert inspect.getdoc(obj), f"{home}.{name} has no docstring"
    else:
        assert has_attribute_docstring(home, name), f"{home}.{name} has no docstring"


def test_the_reference_pages_render_modules_that_exist() -> None:
    missing = [d for d in directives() if importlib.util.find_spec(d.rsplit(".", 1)[0]) is None]
    assert missing == []


def test_no_internal_module_is_rendered() -> None:
    internal = {"pevensie_redis.near", "pevensie_redis.replica_choice", "pevensie_redis.wire"}
    assert not internal & directives()
