"""Human-readable listing of the installed drivers, for command-line tools."""

from __future__ import annotations

from collections.abc import Iterable

from pevensie_cache.registry import DriverInfo

__all__ = ["format_drivers"]


def format_drivers(infos: Iterable[DriverInfo]) -> str:
    """Return a plain-text table of drivers: name, source, schemes, and status or reason."""
    rows = [("driver", "provided by", "URL schemes", "status")]
    for info in infos:
        source = f"{info.distribution} {info.version}" if info.distribution else "-"
        schemes = " ".join(f"{scheme}://" for scheme in info.schemes) or "-"
        status = (info.description or "ok") if info.loaded else f"NOT LOADED: {info.error}"
        rows.append((info.name, source, schemes, status))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
        for row in rows
    )
