"""RELIABILITY.md names only tests that exist, and every table row names one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "RELIABILITY.md"
CONFORMANCE = ROOT / "pevensie_cache" / "src" / "pevensie_cache" / "testing" / "conformance.py"
ALIASES = {
    "<Memory|Redis>": [
        "tests/test_memory_conformance.py::TestMemoryConformance",
        "tests/redis/test_conformance_redis.py::TestRedisConformance",
    ]
}
NODE = re.compile(r"`((?:(?:tests|soak)/[\w/]+\.py|<Memory\\?\|Redis>)(?:::\w+)+)`")
RECORDS = {"variant", "app"}
"""First header cells of tables that record a run (soak, end to end): the text names the run."""


def defined_names(path: Path) -> tuple[set[str], set[str]]:
    """Return the function names and the class names defined anywhere in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    return functions, classes


def expand(reference: str) -> list[str]:
    reference = reference.replace("\\|", "|")
    for alias, targets in ALIASES.items():
        if reference.startswith(alias):
            return [target + reference[len(alias) :] for target in targets]
    return [reference]


def test_every_test_named_in_reliability_md_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    references = [node for match in NODE.findall(text) for node in expand(match)]
    assert len(references) > 40
    conformance_functions, _ = defined_names(CONFORMANCE)
    missing = []
    for reference in references:
        path, *names = reference.split("::")
        functions, classes = defined_names(ROOT / path)
        *owners, test = names
        known_owners = all(owner in classes for owner in owners)
        inherited = bool(owners) and test in conformance_functions
        if not known_owners or (test not in functions | classes and not inherited):
            missing.append(reference)
    assert missing == []


def test_every_table_row_names_a_test() -> None:
    rows = []
    in_record = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            in_record = False
            continue
        first = line.split("|")[1].strip()
        in_record = in_record or first in RECORDS
        if line.startswith("| ") and not line.startswith("| ---") and not in_record:
            rows.append(line)
    headers = {"Fault", "Input", "Property", "Situation"}
    body = [row for row in rows if row.split("|")[1].strip() not in headers]
    measured = [row for row in body if "time to" in row.lower()]
    without_test = [
        row
        for row in body
        if row not in measured and not NODE.search(row) and "same test" not in row
    ]
    assert without_test == []
