"""Human-readable listing of the installed drivers, for command-line tools."""

from __future__ import annotations

from collections.abc import Iterable

from pevensie_cache.registry import DriverInfo

__all__ = ["format_drivers"]


def format_drivers(infos: Iterable[DriverInfo]) -> str:
    """Return one block per driver: name, source and status, then description and schemes.

    ::

        memory  pevensie-cache 0.1.0  loaded
            In-process, thread-safe memory store with TTLs and optional LRU bound.
            URL schemes: memory://
    """
    blocks: list[str] = []
    for info in infos:
        source = f"{info.distribution} {info.version}" if info.distribution else "(no distribution)"
        lines = [f"{info.name}  {source}  {'loaded' if info.loaded else 'NOT LOADED'}"]
        if info.loaded:
            if info.description:
                lines.append(f"    {info.description}")
            if info.schemes:
                lines.append(f"    URL schemes: {' '.join(s + '://' for s in info.schemes)}")
        else:
            lines.append(f"    {info.error}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks) if blocks else "no drivers installed"
