"""Running the click command group with the documented exit codes (see ``exit_codes``)."""

from __future__ import annotations

import click

from pevensie_cache.cli.commands import app
from pevensie_cache.cli.exit_codes import ExitCode
from pevensie_cache.cli.output import Output
from pevensie_cache.cli.target import Redactor

__all__ = ["invoke"]


def invoke(args: list[str], prog: str) -> int:
    """Parse ``args`` and run the command named ``prog``; usage errors exit 2, Ctrl-C 130."""
    try:
        result = app.main(args=args, prog_name=prog, standalone_mode=False)
    except click.UsageError as exc:
        if "--json" in args:
            Output(True, Redactor()).error("usage", exc.format_message(), ExitCode.USAGE)
        else:
            exc.show()
        return ExitCode.USAGE
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("interrupted", err=True)
        return ExitCode.INTERRUPTED
    if isinstance(result, int):
        return result
    return ExitCode.OK  # --help, --version
