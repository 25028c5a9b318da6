"""pevensie_redis uses redis-py through its public API only; its protocol core, through none of it.

Read from the source (``ast``) of every product module (``testing/`` aside),
this catches:

- any import of a private module (``redis._parsers``, ``from redis import _x``,
  or a ``"redis._..."`` string, as ``importlib.import_module`` would take);
- any use of an underscore member that our own code does not define: an
  attribute read or written (``connection._sock``, ``self._initialize = True``
  in a subclass of a redis-py class), or named to ``getattr``/``setattr``/
  ``hasattr``. A ``_name`` counts as ours when our code defines it: a function
  or class, a ``__slots__`` entry, or an attribute assigned in a class that
  does not subclass a redis-py class (so a subclass of ``RedisCluster``
  setting ``self._initialize`` does not make ``_initialize`` ours);
- any use, by attribute or import, of the members of redis-py that are public
  by name but undocumented, which the driver has used (``UNDOCUMENTED``).

What it cannot see: a redis-py private member whose name our own code also
defines for itself (``x._lock`` where some class of ours has a ``_lock``), and
undocumented members not listed in ``UNDOCUMENTED``.

No module is exempt: the last ones that needed redis-py internals (the
``compat`` and ``pool`` modules, redis-py's connection pools) went with the
driver's own connections and Cluster router.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pevensie_redis

ROOT = Path(pevensie_redis.__file__).parent

UNDOCUMENTED = {
    "slots_cache",
    "nodes_cache",
    "nodes_manager",
    "REDIS_ALLOWED_KEYS",
    "KWARGS_DISABLED_KEYS",
    "EXCEPTION_CLASSES",
    "ClusterParser",
    "master_address",
    "get_master_address",
    "owns_connection",
    "should_reconnect",
    "next_health_check",
    "on_connect_check_health",
    "connection_kwargs",
    "get_node_name",
}
"""redis-py members that are public by name but not documented, which the driver has used."""

DOCUMENTED_UNDERSCORE = {"_replace", "_asdict", "_fields", "_make"}
"""Underscore names that are documented API (of ``namedtuple`` and the like)."""


def product_modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "testing":
            continue
        found[".".join(relative.with_suffix("").parts)] = path
    return found


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _from_redis(tree: ast.Module) -> set[str]:
    """The names a module binds to something of redis-py (``from redis.x import Y``: ``Y``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "redis":
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "redis":
                    names.add((alias.asname or alias.name).split(".")[0])
    return names


def _subclasses_redis_py(node: ast.ClassDef, foreign: set[str]) -> bool:
    """Whether a base of ``node`` is (or is reached through) a name bound to redis-py."""
    for base in node.bases:
        for part in ast.walk(base):
            if isinstance(part, ast.Name) and part.id in foreign:
                return True
    return False


def own_private_names(trees: dict[str, ast.Module]) -> set[str]:
    """Every underscore name our own code defines (see the module docstring)."""
    names: set[str] = set()
    for tree in trees.values():
        foreign = _from_redis(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id == "__slots__":
                        for item in ast.walk(node.value):
                            if isinstance(item, ast.Constant) and isinstance(item.value, str):
                                names.add(item.value)
            if not isinstance(node, ast.ClassDef) or _subclasses_redis_py(node, foreign):
                continue
            for item in ast.walk(node):
                targets: list[ast.expr] = []
                if isinstance(item, ast.Assign):
                    targets = item.targets
                elif isinstance(item, (ast.AnnAssign, ast.AugAssign)):
                    targets = [item.target]
                for target in targets:
                    for part in ast.walk(target):
                        if isinstance(part, ast.Attribute):
                            names.add(part.attr)
                        elif isinstance(part, ast.Name):
                            names.add(part.id)
    return {name for name in names if is_private(name)}


def violations(tree: ast.Module, ours: set[str]) -> list[str]:
    """What ``tree`` uses of redis-py beyond its public, documented API."""
    found: list[str] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _private_module(alias.name):
                    found.append(f"{line}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and module.split(".")[0] == "redis":
                if _private_module(module):
                    found.append(f"{line}: from {module} import ...")
                for alias in node.names:
                    if is_private(alias.name) or alias.name in UNDOCUMENTED:
                        found.append(f"{line}: from {module} import {alias.name}")
        elif isinstance(node, ast.Attribute):
            name = node.attr
            if (is_private(name) and name not in ours and name not in DOCUMENTED_UNDERSCORE) or (
                name in UNDOCUMENTED
            ):
                found.append(f"{line}: .{name}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) > 1:
                named = node.args[1]
                if isinstance(named, ast.Constant) and isinstance(named.value, str):
                    name = named.value
                    if (is_private(name) and name not in ours) or name in UNDOCUMENTED:
                        found.append(f"{line}: {node.func.id}(..., {name!r})")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("redis._")
        ):
            found.append(f"{line}: {node.value!r}")
    return found


def _private_module(dotted: str) -> bool:
    parts = dotted.split(".")
    return parts[0] == "redis" and any(part.startswith("_") for part in parts[1:])


@pytest.fixture(scope="module")
def trees() -> dict[str, ast.Module]:
    return {
        name: ast.parse(path.read_text(encoding="utf-8"))
        for name, path in product_modules().items()
    }


def test_no_product_module_uses_a_private_or_undocumented_redis_py_member(
    trees: dict[str, ast.Module],
) -> None:
    ours = own_private_names(trees)
    found = {name: violations(tree, ours) for name, tree in trees.items()}
    assert {name: uses for name, uses in found.items() if uses} == {}


def test_the_detector_catches_private_modules_members_and_undocumented_names() -> None:
    source = (
        "import redis._parsers\n"
        "from redis._parsers.base import BaseParser\n"
        "from redis.cluster import RedisCluster, get_node_name\n"
        "class Ours:\n"
        "    __slots__ = ('_kept',)\n"
        "    def __init__(self):\n"
        "        self._mine = 1\n"
        "class Theirs(RedisCluster):\n"
        "    def refresh(self):\n"
        "        self._initialize = True\n"
        "def use(connection, client, ours):\n"
        "    ours._mine, ours._kept\n"
        "    connection._sock\n"
        "    getattr(connection, '_checkpid')\n"
        "    client.nodes_manager.slots_cache\n"
        "    importlib.import_module('redis._parsers')\n"
    )
    tree = ast.parse(source)
    found = sorted(violations(tree, own_private_names({"m": tree})), key=_by_line)
    assert found == [
        "1: import redis._parsers",
        "2: from redis._parsers.base import ...",
        "3: from redis.cluster import get_node_name",
        "10: ._initialize",
        "13: ._sock",
        "14: getattr(..., '_checkpid')",
        "15: .nodes_manager",
        "15: .slots_cache",
        "16: 'redis._parsers'",
    ]


def _by_line(entry: str) -> tuple[int, str]:
    line, _, what = entry.partition(": ")
    return int(line), what


def test_the_protocol_core_imports_only_redis_py_exceptions_and_itself(
    trees: dict[str, ast.Module],
) -> None:
    outside: list[str] = []
    for name, tree in trees.items():
        if not name.startswith("protocol"):
            continue
        for node in ast.walk(tree):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            for module in modules:
                top = module.split(".")[0]
                exceptions = module == "redis.exceptions" or (
                    module == "redis"
                    and isinstance(node, ast.ImportFrom)
                    and [alias.name for alias in node.names] == ["exceptions"]
                )
                if top == "redis" and not exceptions:
                    outside.append(f"{name}: {module}")
                if top in ("pevensie_redis", "pevensie_cache") and not module.startswith(
                    "pevensie_redis.protocol"
                ):
                    outside.append(f"{name}: {module}")
    assert outside == []
