"""The ``pevensie-cache`` command line (also ``python -m pevensie_cache``).

It needs the ``[cli]`` extra (click for the commands, rich for tables and
progress bars on a terminal): ``pip install 'pevensie-cache[cli]'``. Without
it, every command says so and exits with code 3; nothing else changes.
Exit codes are listed in :mod:`pevensie_cache.cli.exit_codes`.
"""

from __future__ import annotations

import sys

from pevensie_cache.cli.exit_codes import ExitCode

__all__ = ["PROG", "main"]

PROG = "pevensie-cache"

INSTALL_HINT = (
    f"{PROG}: the command line needs its extra: pip install 'pevensie-cache[cli]' (click and rich)"
)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        import click  # noqa: F401  (the [cli] extra)
    except ImportError:
        if "--json" in args:
            import json

            document = {"ok": False, "error": {"kind": "config", "message": INSTALL_HINT}}
            print(json.dumps({**document, "exit": int(ExitCode.CONFIG)}))
        else:
            print(INSTALL_HINT, file=sys.stderr)
        return ExitCode.CONFIG
    from pevensie_cache.cli.app import invoke

    return invoke(args, PROG)
