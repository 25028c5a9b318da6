"""The exit codes of ``pevensie-cache``, one per class of failure, and the rule that picks one.

====  ===========  ==============================================================
code  name         meaning
====  ===========  ==============================================================
0     OK           the command did what it says
1     MISS         ``get`` or ``ttl``: the key is absent (as ``grep`` finds nothing)
2     USAGE        the command line is wrong: unknown command or option, no URL,
                   an invalid resource type, key or TTL
3     CONFIG       the URL, the ``--config`` file or a driver option is wrong, no
                   driver serves the URL's scheme, or the ``[cli]`` extra is missing
4     CONNECT      connecting failed: refused, unreachable, timed out, TLS or
                   authentication failed
5     FAILED       connected, but the server or driver failed during the command
6     UNSUPPORTED  the driver cannot answer this command (no inspector, no
                   ``clear``, no client library to ``--compare`` with)
7     ABORTED      ``clear`` was not confirmed (answer no, or end of input)
130   INTERRUPTED  Ctrl-C
====  ===========  ==============================================================
"""

from __future__ import annotations

import enum

from pevensie_cache.errors import (
    ArgumentError,
    CacheMiss,
    ConfigError,
    DriverConflict,
    DriverNotFound,
    UnsupportedOperation,
)

__all__ = ["CliFailure", "ExitCode", "classify"]


class ExitCode(enum.IntEnum):
    """The documented exit statuses (see the module docs)."""

    OK = 0
    MISS = 1
    USAGE = 2
    CONFIG = 3
    CONNECT = 4
    FAILED = 5
    UNSUPPORTED = 6
    ABORTED = 7
    INTERRUPTED = 130


class CliFailure(Exception):
    """A failure the command line reports with ``message`` and exits with ``code``."""

    def __init__(self, code: ExitCode, message: str, kind: str | None = None) -> None:
        """Fail with ``code``; ``kind`` names the error (default: the code's name)."""
        super().__init__(message)
        self.code = code
        self.message = message
        self.kind = kind or code.name.lower()


def classify(exc: BaseException, *, connecting: bool = False) -> ExitCode:
    """Return the exit code for ``exc``; ``connecting`` says it was raised while connecting."""
    if isinstance(exc, CacheMiss):
        return ExitCode.MISS
    if isinstance(exc, (ConfigError, DriverNotFound, DriverConflict)):
        return ExitCode.CONFIG
    if isinstance(exc, ArgumentError):
        return ExitCode.USAGE
    if isinstance(exc, UnsupportedOperation):
        return ExitCode.UNSUPPORTED
    return ExitCode.CONNECT if connecting else ExitCode.FAILED
