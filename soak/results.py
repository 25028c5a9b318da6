"""The soak run's results: one row per variant, and the table RELIABILITY.md records."""

from __future__ import annotations

from typing import Any

from variants import MIB

ROW_PROPERTY = "soak_row"
"""The name under which ``soak/test_soak.py`` records a variant's row (a user property)."""

RESULTS: list[dict[str, Any]] = []
"""One row per variant run, as their reports come in (``soak/conftest.py`` collects them from
the reports, where they also reach pytest-xdist's controller)."""


def table(rows: list[dict[str, Any]]) -> str:
    """Return ``rows`` as a Markdown table: duration, operations and every figure's growth."""
    lines = [
        "| variant | seconds | operations | RSS (MiB) | RSS growth | heap growth | fds | "
        "threads | lasting tasks | server connections |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        g = row["growth"]
        lines.append(
            f"| {row['variant']} | {row['seconds']:g} | {row['operations']:,} | "
            f"{row['rss_start_mib']:g} → {row['rss_end_mib']:g} | "
            f"{g['rss'] / MIB:+.1f} MiB | {g['heap'] / MIB:+.2f} MiB | {g['fds']:+.0f} | "
            f"{g['threads']:+.0f} | {g['tasks']:+.0f} | "
            f"{row['connections']} {g['connections']:+.0f} |"
        )
    return "\n".join(lines)
