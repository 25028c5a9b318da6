"""Print the slowest tests of every pytest run CI made, from their JUnit XML reports.

    python .ci/slowest.py DIRECTORY [COUNT]

Reads every ``*.xml`` under DIRECTORY (``.ci/run`` has each nox session write
one there, through ``PEVENSIE_JUNIT_DIR``: one subdirectory per part) and
prints the COUNT (default 20) slowest test cases, setup and teardown
included, each with the part and session that ran it.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def slowest(directory: Path, count: int) -> list[tuple[float, str, str]]:
    """Return ``(seconds, part/session, test id)`` of the ``count`` slowest test cases."""
    found: list[tuple[float, str, str]] = []
    for report in sorted(directory.rglob("*.xml")):
        where = str(report.relative_to(directory).with_suffix(""))
        try:
            root = ET.parse(report).getroot()  # noqa: S314 (our own runs' reports)
        except ET.ParseError:
            continue  # a run killed while writing its report
        for case in root.iter("testcase"):
            test = f"{case.get('classname', '')}::{case.get('name', '')}"
            found.append((float(case.get("time") or 0.0), where, test))
    found.sort(key=lambda row: row[0], reverse=True)
    return found[:count]


def main() -> int:
    """Print the table; exit 0 even when there is nothing to show."""
    directory = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    rows = slowest(directory, count) if directory.is_dir() else []
    if not rows:
        print("no JUnit reports found")
        return 0
    width = max(len(where) for _, where, _ in rows)
    print(f"{'seconds':>8}  {'part/session':<{width}}  test")
    for seconds, where, test in rows:
        print(f"{seconds:8.1f}  {where:<{width}}  {test}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
