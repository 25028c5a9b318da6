"""URL helpers shared by the facade and drivers: scheme parsing and secret masking.

Masking reads anything URL-like, not only well-formed URLs: a password must stay
hidden in the very messages that say a URL is wrong (``redis:/:pw@host``, a
leading space, a misspelt option). The rules, in one place for the library and
the command line:

- The userinfo is everything before the last ``@``, after the scheme and its
  slashes as written (``redis://``, ``redis:/``, ``redis//``, `` redis://``).
  In a well-formed URL (``scheme://`` at the very start, no whitespace or
  control characters) its password is masked (``user:***@``), or all of it
  when it has no ``:`` (``***@``, a lone token). In anything else the whole
  userinfo is masked.
- A query value is masked when its parameter's name looks secret-bearing
  (:func:`is_secret_name`); in a URL that is not well-formed, every query
  value is masked.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_plus, urlsplit

from pevensie_cache.errors import ConfigError

__all__ = [
    "is_secret_name",
    "looks_like_url",
    "mask_url",
    "query_options",
    "take_query_options",
    "url_scheme",
    "url_secrets",
]

_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*"
_WELL_FORMED = re.compile(rf"{_SCHEME}://[^\s\x00-\x1f\x7f]*")
# The scheme as written, however misspelt: leading whitespace, a scheme followed by ":"
# and/or slashes (forward or back, any number), or slashes alone ("//user:pw@host").
_URL_START = re.compile(rf"\s*(?:({_SCHEME})(?=[:/\\])(:?[/\\]*))?[/\\]*")
_LOOKS_LIKE_URL = re.compile(rf"\s*{_SCHEME}:[/\\]")
_SECRET_NAME_PARTS = ("pass", "pw", "secret", "token", "auth", "key", "cred", "sig", "private")
"""A name holding one of these (``passwd``, ``requirepass``, ``api_key``...) names a secret."""


@dataclass(frozen=True)
class _Parts:
    """Where the secrets of a URL-like text are; ``start + userinfo + "@" + rest`` is the text."""

    start: str
    userinfo: str | None
    """Everything before the last ``@`` (a password may hold ``@``), or ``None`` without one."""
    rest: str
    query_at: int
    """Where the query (after the first ``?`` of ``rest``) begins in ``rest``, or -1."""
    exact: bool
    """The text is a well-formed URL: only what is known to be secret is masked."""

    def query(self) -> list[tuple[str, bool, str, str]]:
        """Return the query's ``&`` pieces: name, whether it has ``=``, value, separator after."""
        return [] if self.query_at < 0 else _pieces(self.rest[self.query_at :])

    def secret_value(self, name: str, value: str) -> bool:
        """Whether the query value ``value`` of ``name`` must be hidden."""
        return bool(value) and (not self.exact or is_secret_name(name))


def _pieces(query: str) -> list[tuple[str, bool, str, str]]:
    """Split a query on ``&``; a piece's value runs to the next ``&`` (``;`` included)."""
    split = query.split("&")
    pieces: list[tuple[str, bool, str, str]] = []
    for at, piece in enumerate(split):
        name, eq, value = piece.partition("=")
        pieces.append((name, bool(eq), value, "&" if at + 1 < len(split) else ""))
    return pieces


def _inner(value: str) -> list[str]:
    """Return the secret values of pieces joined to ``value`` by ``;`` (``db=1;pw=x``).

    Some clients separate query pieces with ``;``: a secret after one must be found
    in the value of the piece before it.
    """
    return [
        inner_value
        for inner in value.split(";")[1:]
        for inner_name, inner_eq, inner_value in [inner.partition("=")]
        if inner_eq and inner_value and is_secret_name(inner_name)
    ]


def _first_query_secrets(url: str) -> list[str]:
    """Return the secret-named values of the query read from the first ``?`` on.

    The other reading of a URL whose query holds an ``@``: read as userinfo up to
    the last ``@``, ``?password=p@ss`` would leave ``ss`` shown.
    """
    start = _URL_START.match(url)
    body = url[start.end() if start else 0 :]
    question = body.find("?")
    if question < 0:
        return []
    found: list[str] = []
    for name, _, value, _ in _pieces(body[question + 1 :]):
        if value and is_secret_name(name):
            found.append(value)
        else:
            found += _inner(value)
    return found


def _parts(url: str) -> _Parts:
    start_match = _URL_START.match(url)
    start = start_match.group() if start_match else ""
    body = url[len(start) :]
    userinfo: str | None
    if "@" in body:
        userinfo, _, rest = body.rpartition("@")
    else:
        userinfo, rest = None, body
    question = rest.find("?")
    return _Parts(
        start=start,
        userinfo=userinfo,
        rest=rest,
        query_at=question + 1 if question >= 0 else -1,
        exact=_WELL_FORMED.fullmatch(url) is not None,
    )


def looks_like_url(text: str) -> bool:
    """Return whether ``text`` reads as a URL, well-formed or not: a scheme, then ``:/``."""
    return _LOOKS_LIKE_URL.match(text) is not None


def is_secret_name(name: str) -> bool:
    """Return whether a URL parameter or option called ``name`` likely holds a secret.

    The name is percent-decoded first (``pass%77ord`` is ``password``), then
    compared without case, digits aside, ``_``, ``-`` and the like:
    anything holding ``pass``, ``pw``, ``secret``, ``token``, ``auth``,
    ``key``, ``cred``, ``sig`` or ``private`` counts (``passwd``,
    ``requirepass``, ``sentinel_password``, ``api_key``, ``X-Auth-Token``).
    Masking a harmless value is a small loss; showing a password is not.
    """
    text = name
    for _ in range(3):  # percent-encoded, perhaps more than once
        decoded = unquote_plus(text)
        if decoded == text:
            break
        text = decoded
    folded = re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).casefold())
    return any(part in folded for part in _SECRET_NAME_PARTS)


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, fit for messages and logs.

    ``redis://user:secret@host/0`` becomes ``redis://user:***@host/0``; a lone
    userinfo part (``redis://secret@host``) is masked too, and so are query
    parameters whose name looks secret (``password=``, ``passwd=``, ``token=``:
    :func:`is_secret_name`). Text that is not a well-formed URL
    (``redis:/:secret@host``, `` redis://...``) loses its whole userinfo
    and every query value: ``redis:/***@host``.
    """
    # A secret value of the query read from the first "?" goes first: it may hold the
    # "@" that the userinfo reading would stop at (?password=p@ss).
    for secret in _first_query_secrets(url):
        url = url.replace(secret, "***")
    parts = _parts(url)
    masked = parts.start
    if parts.userinfo is not None:
        user, colon, _ = parts.userinfo.partition(":")
        masked += f"{user}:***@" if parts.exact and colon else "***@"
    if parts.query_at < 0:
        return masked + parts.rest
    pieces = []
    for name, eq, value, separator in parts.query():
        if parts.secret_value(name, value):
            value = "***"
        else:
            for secret in _inner(value):
                value = value.replace(secret, "***")
        pieces.append(f"{name}{'=' if eq else ''}{value}{separator}")
    query = "".join(pieces)
    return masked + parts.rest[: parts.query_at] + query


def url_secrets(url: str) -> list[str]:
    """Return the secrets of ``url`` as written: what :func:`mask_url` hides.

    The password (or the lone userinfo) and the values of secret query
    parameters; for text that is not a well-formed URL, the whole userinfo,
    the part after its first ``:``, and every query value. The command line
    scrubs these from everything it prints.
    """
    parts = _parts(url)
    found: list[str] = []
    if parts.userinfo is not None:
        _, colon, password = parts.userinfo.partition(":")
        if colon:
            found.append(password)
        if not (parts.exact and colon):
            found.append(parts.userinfo)
    for name, _, value, _ in parts.query():
        found += [value] if parts.secret_value(name, value) else _inner(value)
    found += _first_query_secrets(url)
    return [secret for index, secret in enumerate(found) if secret and secret not in found[:index]]


def url_scheme(url: object) -> str:
    """Return the lower-cased scheme of ``url`` or raise :class:`ConfigError`.

    The error shows the URL masked (:func:`mask_url`) and says what is wrong
    with its start: whitespace before the scheme, or the scheme not followed
    by ``://``.
    """
    if not isinstance(url, str):
        raise ConfigError(f"a cache URL must be a str, not {type(url).__name__}")
    scheme, sep, _ = url.partition("://")
    if sep and re.fullmatch(_SCHEME, scheme):
        return scheme.lower()
    shown = mask_url(url)
    start = _URL_START.match(url)
    written, separator = (start.group(1), start.group(2)) if start else (None, None)
    if url[:1].isspace() and _WELL_FORMED.match(url.lstrip()):
        message = f"not a cache URL: {shown!r} starts with whitespace; remove it"
    elif written and separator and re.search(r"[/\\]", separator):
        message = (
            f"not a cache URL: {shown!r}: the scheme {written!r} must be followed by "
            f"'://', not {separator!r}"
        )
    else:
        message = f"not a cache URL (expected scheme://...): {shown!r}"
    raise ConfigError(message)


def query_options(url: str) -> dict[str, str]:
    """Return the query parameters of ``url`` as a dict; a repeated parameter is an error."""
    options: dict[str, str] = {}
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name in options:
            raise ConfigError(f"URL parameter {name!r} is given twice in {mask_url(url)!r}")
        options[name] = value
    return options


def take_query_options(url: str, names: Collection[str]) -> tuple[str, dict[str, str]]:
    """Return ``url`` without the query parameters in ``names``, and their values.

    For options that belong to the cache rather than to its driver
    (``?namespace=app1``): the driver then sees only its own. The rest of
    the URL is kept character for character; a URL naming none of ``names``
    comes back unchanged. A parameter given twice is a :class:`ConfigError`.
    """
    hash_at = url.find("#")
    query_at = url.find("?")
    if query_at < 0 or (0 <= hash_at < query_at):
        return url, {}
    end = hash_at if hash_at > query_at else len(url)
    kept: list[str] = []
    taken: dict[str, str] = {}
    for piece in url[query_at + 1 : end].split("&"):
        name, _, value = piece.partition("=")
        name = unquote_plus(name)
        if name in names:
            if name in taken:
                raise ConfigError(f"URL parameter {name!r} is given twice in {mask_url(url)!r}")
            taken[name] = unquote_plus(value)
        else:
            kept.append(piece)
    if not taken:
        return url, {}
    query = "&".join(kept)
    return url[:query_at] + (f"?{query}" if query else "") + url[end:], taken
