"""Command line: ``python -m pevensie_cache drivers`` lists the installed drivers.

``python -m pevensie_cache check URL`` connects to a cache URL, writes, reads and
deletes one probe key, and reports the result (the URL shown with its password
masked).
"""

from __future__ import annotations

import argparse
import sys
import uuid

from pevensie_cache import PevensieCacheError, cache, mask_url
from pevensie_cache.listing import format_drivers


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m pevensie_cache")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("drivers", help="list installed drivers and plugins that failed to load")
    check = commands.add_parser("check", help="round-trip one probe key through a cache URL")
    check.add_argument("url", help="for example memory:// or redis://localhost:6379/0")
    args = parser.parse_args(argv)

    if args.command == "drivers":
        print(format_drivers(cache.drivers()))
        return 0
    shown = mask_url(args.url)
    probe = uuid.uuid4().hex
    try:
        with cache.from_url(args.url) as c:
            c.set("pevensie-check", probe, "ok", ttl_seconds=10)
            value = c.get("pevensie-check", probe)
            c.delete("pevensie-check", probe)
    except PevensieCacheError as exc:
        print(f"{shown}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{shown}: ok (set, get -> {value!r}, delete)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
