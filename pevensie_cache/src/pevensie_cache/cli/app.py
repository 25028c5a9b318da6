"""Running the click command group with the documented exit codes (see ``exit_codes``).

Before anything can be printed, every secret of the arguments, of the
environment and of ``--config`` files is known to one
:class:`~pevensie_cache.cli.target.Redactor`, and everything written to
stdout and stderr passes through it: the commands' output, click's usage
errors (which quote arguments as typed), warnings, logs and tracebacks.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

import click

from pevensie_cache.cli.commands import app
from pevensie_cache.cli.exit_codes import ExitCode
from pevensie_cache.cli.output import Output, scrubbed_streams
from pevensie_cache.cli.target import Redactor, known_secrets

__all__ = ["invoke"]

CRASHED = 1
"""Python's own exit status for an uncaught exception, kept for one (printed scrubbed)."""


def invoke(args: list[str], prog: str) -> int:
    """Parse ``args`` and run the command named ``prog``; usage errors exit 2, Ctrl-C 130."""
    options = _command_options(args)
    redactor = known_secrets(
        args,
        urls=[options.get("url"), options.get("url_argument")],
        config_paths=[options.get("config_path")],
    )
    with scrubbed_streams(redactor):
        try:
            return _invoke(args, prog, redactor)
        except Exception:  # a bug: its traceback may quote a URL as given
            traceback.print_exc()
            return CRASHED


def _invoke(args: list[str], prog: str, redactor: Redactor) -> int:
    try:
        result = app.main(args=args, prog_name=prog, standalone_mode=False, obj=redactor)
    except click.UsageError as exc:
        if "--json" in args:
            Output(True, redactor).error("usage", exc.format_message(), ExitCode.USAGE)
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


def _command_options(args: list[str]) -> Mapping[str, Any]:
    """Return the command's options and arguments as click reads them (``{}`` if it cannot).

    The group's own options are flags, so the command is the first argument
    that is not an option; its own are parsed leniently (no errors, no
    ``--help``), only to find the URL and ``--config`` file however they were
    written (``-uURL``, ``-yc FILE``...).
    """
    at = next((i for i, arg in enumerate(args) if not arg.startswith("-")), None)
    command = app.commands.get(args[at]) if at is not None else None
    if at is None or command is None:
        return {}
    try:
        # With the group's settings: a command caches its help option from the first
        # context made for it, and without them `get -h` was then refused.
        context = command.make_context(
            args[at], args[at + 1 :], resilient_parsing=True, **app.context_settings
        )
    except (click.ClickException, click.exceptions.Exit):
        return {}
    return context.params
