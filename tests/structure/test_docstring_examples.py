"""Every example in the docstrings of both packages runs, as written (doctest).

Examples that need a live server say ``# doctest: +SKIP``; everything else
must produce exactly the output shown.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

import pevensie_cache
import pevensie_redis

OPTIONAL = ("pevensie_cache.contrib",)  # need a framework installed: run when it is


def modules() -> list[str]:
    names: list[str] = []
    for package in (pevensie_cache, pevensie_redis):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            names.append(info.name)
    return sorted(set(names))


def load(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if name.startswith(OPTIONAL):
            pytest.skip(f"{name} needs an optional dependency: {exc}")
        raise


@pytest.mark.parametrize("name", modules())
def test_the_docstring_examples_of_each_module_run(name: str) -> None:
    module = load(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} docstring example(s) failed in {name}"


def test_there_are_examples_to_run() -> None:
    finder = doctest.DocTestFinder(exclude_empty=True)
    examples = sum(
        len(test.examples) for name in modules() for test in finder.find(load(name), name)
    )
    assert examples > 10
