"""Imports run one way: no module of either package imports, even for type checking, a
module that imports it back.

The imports are read from the source (``ast``), so ``if TYPE_CHECKING:`` blocks
and imports inside functions count as much as those at the top. A package's
``__init__`` counts as a module like any other: ``from pkg import name`` (a
name ``__init__`` defines or re-exports) imports it, so a submodule doing that
while ``__init__`` imports the submodule is a cycle; ``from pkg import sub``
imports only the submodule ``sub``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pevensie_cache
import pevensie_redis

PACKAGES = [pevensie_cache, pevensie_redis]


def module_name(package_root: Path, path: Path, package: str) -> str:
    parts = [package, *path.relative_to(package_root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """Every module of ``known`` that the file at ``path`` (module ``name``) imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import sub`` imports the submodule; ``from pkg import name`` imports
            # ``pkg`` itself (its ``__init__``, where the name is defined or re-exported).
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            targets = [sub for sub in submodules if sub in known]
            if len(targets) < len(submodules):
                targets.append(base)
        for target in targets:
            # The deepest known module the import names (``a.b.c`` -> ``a.b`` when only it exists).
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(package: object) -> dict[str, set[str]]:
    root = Path(package.__file__).parent  # type: ignore[attr-defined]
    top = package.__name__  # type: ignore[attr-defined]
    files = {module_name(root, path, top): path for path in root.rglob("*.py")}
    known = set(files)
    return {name: imported_modules(path, name, known) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import cycle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for target in sorted(graph.get(name, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name)
            if cycle:
                return cycle
    return None


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_no_import_cycle(package: object) -> None:
    cycle = find_cycle(import_graph(package))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle_hidden_under_type_checking(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.high import X\n"
    )
    (package / "high.py").write_text("from pkg import low\nX = 1\n")
    graph = {module_name(package, path, "pkg"): path for path in package.rglob("*.py")}
    edges = {name: imported_modules(path, name, set(graph)) for name, path in graph.items()}
    assert find_cycle(edges) in (
        ["pkg.high", "pkg.low", "pkg.high"],
        ["pkg.low", "pkg.high", "pkg.low"],
    )


def test_the_cycle_finder_finds_a_cycle_through_a_package_init(tmp_path: Path) -> None:
    # __init__ -> observability -> telemetry -> __init__, as telemetry's version lookup was.
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from pkg.observability import instrument\nVERSION = 1\n")
    (package / "observability.py").write_text("from pkg import telemetry\ninstrument = 1\n")
    (package / "telemetry.py").write_text("def meter():\n    from pkg import VERSION\n")
    graph = {module_name(package, path, "pkg"): path for path in package.rglob("*.py")}
    edges = {name: imported_modules(path, name, set(graph)) for name, path in graph.items()}
    cycle = find_cycle(edges)
    assert cycle is not None
    assert set(cycle) == {"pkg", "pkg.observability", "pkg.telemetry"}


def test_the_redis_modules_import_each_other_only_downwards() -> None:
    """The layers of pevensie_redis: protocol, errors, connections, I/O, drivers, mode choice.

    Every module (but the testing helpers) is placed in one, and imports none above it.
    """
    layers = [
        {
            "pevensie_redis.protocol",
            "pevensie_redis.protocol.keys",
            "pevensie_redis.protocol.commands",
            "pevensie_redis.protocol.error_codes",
            "pevensie_redis.protocol.slots",
        },
        {"pevensie_redis.protocol.resp"},
        {
            "pevensie_redis.config",
            "pevensie_redis.errors",
            "pevensie_redis.primary_check",
            "pevensie_redis.cluster_attempts",
            "pevensie_redis.sentinel_replies",
        },
        {
            "pevensie_redis.endpoint",
            "pevensie_redis.near",
            "pevensie_redis.replica_choice",
            "pevensie_redis.cluster_batch",
            "pevensie_redis.refusals",
            "pevensie_redis.tls_check",
            "pevensie_redis.acl",
        },
        {"pevensie_redis.pipe_core", "pevensie_redis.wakers"},
        {"pevensie_redis.pipe", "pevensie_redis.pipe_async"},
        {"pevensie_redis.runtime", "pevensie_redis.runtime_async"},
        {"pevensie_redis.channel", "pevensie_redis.channel_async"},
        {
            "pevensie_redis.direct",
            "pevensie_redis.direct_async",
            "pevensie_redis.sentinel",
            "pevensie_redis.sentinel_async",
        },
        {
            "pevensie_redis.listener",
            "pevensie_redis.listener_async",
            "pevensie_redis.lock_releases",
            "pevensie_redis.lock_releases_async",
            "pevensie_redis.cluster_io",
            "pevensie_redis.cluster_io_async",
            "pevensie_redis.cluster_near",
            "pevensie_redis.cluster_near_async",
            "pevensie_redis.replicas",
            "pevensie_redis.replicas_async",
        },
        {
            "pevensie_redis.driver",
            "pevensie_redis.driver_async",
            "pevensie_redis.cluster",
            "pevensie_redis.cluster_async",
        },
        {"pevensie_redis.modes", "pevensie_redis.inspection"},
        {"pevensie_redis.plugin"},
        {
            "pevensie_redis",
            "pevensie_redis.demo",
            "pevensie_redis.server",
            "pevensie_redis.__main__",
        },
    ]
    rank = {name: index for index, layer in enumerate(layers) for name in layer}
    graph = import_graph(pevensie_redis)
    # Every module has its place (the testing helpers excepted: they stand outside the
    # driver), so a new module cannot pass unchecked.
    unplaced = sorted(
        name for name in graph if name not in rank and not name.startswith("pevensie_redis.testing")
    )
    assert unplaced == []
    upward = [
        f"{name} imports {target}"
        for name, targets in graph.items()
        if name in rank
        for target in targets
        if target in rank and rank[target] > rank[name]
    ]
    assert upward == []
