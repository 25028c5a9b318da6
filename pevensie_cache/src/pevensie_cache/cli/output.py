"""How ``pevensie-cache`` prints: JSON for scripts, rich on a terminal, plain text otherwise.

- ``--json``: one JSON document on stdout, success or failure (with its exit
  code); stdout holds nothing else.
- A terminal (and ``rich`` installed, as the ``[cli]`` extra does): tables and
  progress bars drawn by rich.
- Anything else (a pipe, a file, CI): plain aligned text, and progress as
  lines on stderr, at most one per 0.25 s and always the final count.

Results go to stdout, progress and errors to stderr. Every line passes through
the :class:`~pevensie_cache.cli.target.Redactor` first.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from pevensie_cache.cli.target import Redactor

__all__ = ["Output", "Progress", "scrubbed_streams"]

PLAIN_PROGRESS_EVERY = 0.25
"""Seconds between two plain progress lines, at least."""


class _Scrubbed:
    """A text stream that scrubs secrets from everything written to it."""

    def __init__(self, stream: TextIO, redactor: Redactor) -> None:
        self._stream = stream
        self._redactor = redactor

    def write(self, text: str) -> int:
        self._stream.write(self._redactor.scrub(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", "utf-8") or "utf-8"


@contextmanager
def scrubbed_streams(redactor: Redactor) -> Iterator[None]:
    """Scrub everything written to ``sys.stdout`` and ``sys.stderr`` meanwhile.

    Whatever prints there (click's usage errors, warnings, a log record, a
    traceback) passes through ``redactor`` like the command's own output.
    """
    out, err = sys.stdout, sys.stderr
    sys.stdout = _Scrubbed(out, redactor)
    sys.stderr = _Scrubbed(err, redactor)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err


def _rich_available() -> bool:
    try:
        return importlib.util.find_spec("rich") is not None
    except (ImportError, ValueError):
        return False


class Output:
    """Where and how one command prints."""

    def __init__(
        self,
        json_mode: bool,
        redactor: Redactor,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        """Print to ``stdout``/``stderr`` (default: the process's), scrubbed by ``redactor``."""
        raw_out = stdout if stdout is not None else sys.stdout
        raw_err = stderr if stderr is not None else sys.stderr
        self.json = json_mode
        self.redactor = redactor
        self.out: Any = _Scrubbed(raw_out, redactor)
        self.err: Any = _Scrubbed(raw_err, redactor)
        self.rich_out = not json_mode and _isatty(raw_out) and _rich_available()
        self.rich_err = _isatty(raw_err) and _rich_available()

    # -- results -----------------------------------------------------------------------

    def emit_json(self, document: object) -> None:
        """Print ``document`` as the command's one JSON result."""
        self.out.write(json.dumps(document, indent=2, sort_keys=False) + "\n")
        self.out.flush()

    def line(self, text: str = "") -> None:
        """Print one line of a human-readable result."""
        self.out.write(text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        """Print a remark for the person at the terminal on stderr (never in the result)."""
        self.err.write(text + "\n")
        self.err.flush()

    def markup(self, text: str) -> None:
        """Print one line of rich markup (only where :attr:`rich_out` is true)."""
        from rich.console import Console

        Console(file=self.out, highlight=False, soft_wrap=True).print(self.redactor.scrub(text))

    def fields(self, title: str, rows: Sequence[tuple[str, str]]) -> None:
        """Print labelled values: ``label  value`` lines, or a rich grid on a terminal."""
        if self.rich_out:
            from rich.table import Table

            scrub = self.redactor.scrub  # before rich can wrap a secret in two
            grid = Table(title=scrub(title), show_header=False, box=None, title_justify="left")
            grid.add_column(style="bold")
            grid.add_column()
            for label, value in rows:
                grid.add_row(scrub(label), scrub(value))
            self._rich_print(grid)
            return
        self.line(title)
        width = max((len(label) for label, _ in rows), default=0)
        for label, value in rows:
            self.line(f"  {label:<{width}}  {value}")

    def table(
        self,
        title: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]],
        right: Sequence[int] = (),
    ) -> None:
        """Print a table; the columns whose indexes are in ``right`` are right-aligned."""
        if self.rich_out:
            from rich.table import Table

            scrub = self.redactor.scrub
            table = Table(title=scrub(title), title_justify="left")
            for index, column in enumerate(columns):
                table.add_column(column, justify="right" if index in right else "left")
            for row in rows:
                table.add_row(*map(scrub, row))
            self._rich_print(table)
            return
        widths = [
            max([len(column), *(len(row[index]) for row in rows)])
            for index, column in enumerate(columns)
        ]

        def render(cells: Sequence[str]) -> str:
            return "  ".join(
                cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                for i, cell in enumerate(cells)
            ).rstrip()

        if title:
            self.line(title)
        self.line(render(columns))
        self.line(render(["-" * width for width in widths]))
        for row in rows:
            self.line(render(row))

    def error(self, kind: str, message: str, code: int) -> None:
        """Report a failure: a JSON document with ``--json``, else one line on stderr."""
        message = self.redactor.scrub(message)  # before rich can wrap a secret in two
        if self.json:
            self.emit_json({"ok": False, "error": {"kind": kind, "message": message}, "exit": code})
            return
        if self.rich_err:
            from rich.console import Console
            from rich.markup import escape

            Console(file=self.err, highlight=False).print(f"[bold red]error:[/] {escape(message)}")
            return
        self.note(f"error: {message}")

    def _rich_print(self, renderable: object) -> None:
        from rich.console import Console

        Console(file=self.out, highlight=False).print(renderable)

    # -- progress ----------------------------------------------------------------------

    @contextmanager
    def progress(self, label: str, unit: str, total: int | None = None) -> Iterator[Progress]:
        """Show progress on stderr: a rich bar on a terminal, else a line now and then."""
        if self.rich_err:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
            if total is None:
                columns.append(TextColumn("{task.completed:,} " + unit))
            else:
                columns.append(MofNCompleteColumn())
            columns.append(TimeElapsedColumn())
            console = Console(file=self.err)
            with RichProgress(*columns, console=console, transient=False) as bar:
                task = bar.add_task(label, total=total)
                reporter = Progress(lambda done: bar.update(task, completed=done))
                yield reporter
                bar.update(task, completed=reporter.done)
            return
        last = [0.0]
        shown = [-1]

        def line(done: int) -> None:
            shown[0] = done
            of = f" of {total:,}" if total is not None else ""
            self.note(f"{label}: {done:,}{of} {unit}")

        def plain(done: int) -> None:
            now = time.monotonic()
            if now - last[0] >= PLAIN_PROGRESS_EVERY:
                last[0] = now
                line(done)

        reporter = Progress(plain)
        yield reporter
        if reporter.done != shown[0]:
            line(reporter.done)  # the final count, whenever the last line went out


class Progress:
    """Receives the running count; ``update(n)`` for a new total, ``advance(k)`` to add."""

    def __init__(self, show: Any) -> None:
        """Report each new count to ``show``."""
        self._show = show
        self.done = 0

    def update(self, done: int) -> None:
        """Set the running count to ``done`` (what ``clear``'s ``on_progress`` receives)."""
        self.done = done
        self._show(done)

    def advance(self, count: int = 1) -> None:
        """Add ``count`` to the running count."""
        self.update(self.done + count)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
