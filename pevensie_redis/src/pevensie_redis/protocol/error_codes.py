"""Error replies: the code an error reply starts with, and the exception class it is sorted by.

An error reply reads ``<CODE> <text>`` (``NOSCRIPT No matching script...``,
``MOVED 3999 127.0.0.1:6381``). :func:`error_reply` turns one into an instance
of the redis-py exception class :data:`CLASSES` names for its code (public
classes of ``redis.exceptions`` only), so the driver sorts every error reply,
whichever face read it, with one :func:`~pevensie_redis.errors.map_error`.

The message is kept as the server sent it, code included, so
:func:`server_message` gives it back exactly; only ``MOVED`` and ``ASK`` carry
just their ``<slot> <host>:<port>``, which redis-py's classes read into
``slot_id``, ``host`` and ``port``. redis-py's own parser strips the codes it
knows; :data:`CODES` (class to code) puts them back for exceptions it made.

No I/O here, and nothing of redis-py but its exception classes.
"""

from __future__ import annotations

from redis import exceptions as rx

__all__ = ["CLASSES", "CODES", "code_of", "error_reply", "server_message"]

CLASSES: dict[str, type[Exception]] = {
    "ASK": rx.AskError,
    "BUSY": rx.ResponseError,
    "CLUSTERDOWN": rx.ClusterDownError,
    "CROSSSLOT": rx.ClusterCrossSlotError,
    "ERR": rx.ResponseError,
    "EXECABORT": rx.ExecAbortError,
    "LOADING": rx.BusyLoadingError,
    "MASTERDOWN": rx.MasterDownError,
    "MOVED": rx.MovedError,
    "NOAUTH": rx.AuthenticationError,
    "NOPERM": rx.NoPermissionError,
    "NOSCRIPT": rx.NoScriptError,
    "OOM": rx.OutOfMemoryError,
    "READONLY": rx.ReadOnlyError,
    "TRYAGAIN": rx.TryAgainError,
    "WRONGPASS": rx.AuthenticationError,
    "WRONGTYPE": rx.ResponseError,
}
"""The class of each error code the driver tells apart; any other code is a ``ResponseError``.

``NOAUTH``/``WRONGPASS`` (credentials) and ``LOADING`` (a server still
loading its data) are connection failures in redis-py's hierarchy, as they
are to the driver.
"""

_ERR_CLASSES: tuple[tuple[str, type[Exception]], ...] = (
    ("max number of clients reached", rx.ConnectionError),
    ("invalid password", rx.AuthenticationError),
    ("invalid username-password pair", rx.AuthenticationError),
    ("Client sent AUTH, but no password is set", rx.AuthenticationError),
    ("AUTH <password> called without any password configured", rx.AuthenticationError),
    ("wrong number of arguments for 'auth' command", rx.AuthenticationWrongNumberOfArgsError),
    ("wrong number of arguments for 'AUTH' command", rx.AuthenticationWrongNumberOfArgsError),
)
"""``ERR`` replies that mean something more specific, by the start of their text."""

_REDIRECTS = (rx.AskError, rx.MovedError)
"""Classes built from the text after the code (``<slot> <host>:<port>``)."""


def _codes() -> dict[type[BaseException], str]:
    found: dict[type[BaseException], set[str]] = {}
    for code, cls in CLASSES.items():
        found.setdefault(cls, set()).add(code)
    return {
        cls: next(iter(codes))
        for cls, codes in found.items()
        if len(codes) == 1 and cls is not rx.ResponseError
    }


CODES: dict[type[BaseException], str] = _codes()
"""The code of each class that one code alone makes (``NoScriptError``: ``NOSCRIPT``...)."""


def error_reply(text: str) -> Exception:
    """Return the exception an error reply stands for (``text`` without its leading ``-``).

    Never raises: a redirect whose text does not read as ``<slot> <host>:<port>``
    is a plain ``ResponseError`` with the text as sent.
    """
    code = text.partition(" ")[0]
    cls = CLASSES.get(code, rx.ResponseError)
    if cls in _REDIRECTS:
        try:
            return cls(text[len(code) + 1 :])
        except (ValueError, TypeError):
            return rx.ResponseError(text)
    if code == "ERR":
        rest = text[4:]
        for start, special in _ERR_CLASSES:
            if rest.startswith(start):
                return special(text)
    return cls(text)


def code_of(exc: BaseException) -> str | None:
    """Return the error code of an error reply's exception, if it tells one.

    The first word of its message when that is a known code (the driver's
    reader keeps it), else the code its class stands for (redis-py's parser
    strips it).
    """
    first = str(exc).partition(" ")[0]
    if first in CLASSES:
        return first
    for cls in type(exc).__mro__:
        code = CODES.get(cls)
        if code is not None:
            return code
        if cls is rx.ResponseError:
            break
    return None


def server_message(exc: BaseException) -> str:
    """Return an error reply as the server sent it: its code, then its text."""
    text = str(exc)
    code = code_of(exc)
    if code and not text.startswith(code):
        return f"{code} {text}"
    return text
