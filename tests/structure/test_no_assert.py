"""No ``assert`` guards behaviour in product code.

``python -O`` strips asserts, and a failed one is an ``AssertionError``, which
the facade would report as a broken driver: a check that can fail at run time
raises a typed error instead, and what typing alone should prove is written so
the type checker proves it. The conformance suites shipped in ``testing/``
are the exception: there ``assert`` is how pytest asserts.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [
    ROOT / "pevensie_cache" / "src" / "pevensie_cache",
    ROOT / "pevensie_redis" / "src" / "pevensie_redis",
]


def is_conformance_suite(path: Path) -> bool:
    return path.parent.name == "testing" and path.name.startswith("conformance")


def asserts_in(source: str) -> list[int]:
    """The line of every ``assert`` statement in ``source``."""
    return [node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Assert)]


def product_modules() -> list[Path]:
    return [
        path
        for package in PRODUCT
        for path in sorted(package.rglob("*.py"))
        if not is_conformance_suite(path)
    ]


def test_the_scan_sees_an_assert_wherever_it_is() -> None:
    source = "def f(x):\n    if x:\n        assert x is not None  # a comment\n    return x\n"
    assert asserts_in(source) == [3]
    assert asserts_in("x = 'assert nothing'\n") == []


def test_no_product_module_uses_assert() -> None:
    modules = product_modules()
    assert len(modules) > 80, "the scan found the product modules"
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in modules
        for line in asserts_in(path.read_text(encoding="utf-8"))
    ]
    assert found == []
