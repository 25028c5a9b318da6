"""URL helpers shared by the facade and drivers: scheme parsing and secret masking."""

from __future__ import annotations

import re
from collections.abc import Collection
from urllib.parse import parse_qsl, unquote_plus, urlsplit

from pevensie_cache.errors import ConfigError

__all__ = ["mask_url", "query_options", "take_query_options", "url_scheme"]

_SECRET_QUERY_KEYS = re.compile(
    r"(?i)(^|[?&;])((?:[a-z0-9_]*_)?(?:pass(?:word)?|pwd|secret|token|auth)=)[^&;#]*"
)
# Up to the LAST "@": a password typed without percent-encoding may hold "@", "/", "?" or
# "#", and must still be masked whole (masking too much is harmless, too little is not).
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*://)(.*)@", re.DOTALL)


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, fit for messages and logs.

    ``redis://user:secret@host/0`` becomes ``redis://user:***@host/0``; a lone
    userinfo part (``redis://secret@host``) is masked too, and so are query
    parameters such as ``password=``.
    """

    def _mask_userinfo(match: re.Match[str]) -> str:
        scheme, userinfo = match.group(1), match.group(2)
        user, sep, _ = userinfo.partition(":")
        return f"{scheme}{user}:***@" if sep else f"{scheme}***@"

    masked = _USERINFO.sub(_mask_userinfo, url, count=1)
    return _SECRET_QUERY_KEYS.sub(lambda m: f"{m.group(1)}{m.group(2)}***", masked)


def url_scheme(url: object) -> str:
    """Return the lower-cased scheme of ``url`` or raise :class:`ConfigError`."""
    if not isinstance(url, str):
        raise ConfigError(f"a cache URL must be a str, not {type(url).__name__}")
    scheme, sep, _ = url.partition("://")
    if not sep or not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9+.\-]*", scheme):
        raise ConfigError(f"not a cache URL (expected scheme://...): {mask_url(url)!r}")
    return scheme.lower()


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
