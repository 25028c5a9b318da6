"""Which cache a command talks to: a URL, a ``--config`` file or ``PEVENSIE_CACHE_URL``.

The first given wins, in that order: a URL on the command line, then
``--config FILE`` (its ``[cache]`` table, as ``cache.from_config`` takes it),
then the environment variable. Whatever holds a password, the command line
shows only the masked URL (or the driver's own masked ``repr``), and every
line it prints is scrubbed of the secrets it was given (:class:`Redactor`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, unquote_plus

from pevensie_cache import cache
from pevensie_cache.building import ENV_VAR
from pevensie_cache.cli.exit_codes import CliFailure, ExitCode, classify
from pevensie_cache.config_file import load_config_file
from pevensie_cache.errors import ConfigError, PevensieCacheError
from pevensie_cache.facade import PevensieCache
from pevensie_cache.urls import is_secret_name, looks_like_url, mask_url, url_secrets

__all__ = ["Redactor", "Target", "known_secrets", "open_cache", "resolve_target"]

_MIN_SECRET = 3
"""Shorter secrets are not scrubbed from output: they would mangle every line.

(A whole URL that holds one is still replaced by its masked form.)"""


def _spellings(text: str) -> list[str]:
    """``text`` as a message may show it: as is, inside a ``repr``, in JSON, or both."""
    quoted = repr(text)[1:-1]
    return [text, quoted, json.dumps(text)[1:-1], json.dumps(quoted)[1:-1]]


class Redactor:
    """Replaces every known secret by ``***`` in text about to be printed.

    It learns them from URLs (:meth:`add_url`: the whole URL is replaced by
    its masked form, and its password and secret query values wherever they
    appear), from configuration tables (:meth:`add_config`) and the command
    line (:meth:`add_arguments`); the masking rules are those of
    :mod:`pevensie_cache.urls`. Its ``repr`` holds no secret.
    """

    def __init__(self) -> None:
        """Start knowing no secret."""
        self._replacements: dict[str, str] = {}
        self._order: list[str] = []

    def __repr__(self) -> str:
        return f"<Redactor of {len(self._replacements)} spellings of secrets>"

    def add_url(self, url: object) -> None:
        """Remember ``url`` (replaced by its masked form), its password and secret values."""
        if not isinstance(url, str) or not url:
            return
        masked = mask_url(url)
        if masked != url:
            for raw, shown in zip(_spellings(url), _spellings(masked), strict=True):
                self._replace(raw, shown)
        for secret in url_secrets(url):
            self.add(secret)

    def add_config(self, table: Mapping[str, Any]) -> None:
        """Remember the secrets of a ``[cache]`` table: its URLs and secret-named values.

        Nested tables and arrays (of values or of tables) are looked through.
        """
        for name, value in table.items():
            self._add_value(str(name), value)

    def _add_value(self, name: str, value: object) -> None:
        """Remember the secrets of ``value``, found under ``name``: arrays are walked too."""
        if isinstance(value, Mapping):
            self.add_config(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                self._add_value(name, item)
        elif is_secret_name(name):
            self.add(value)
        elif isinstance(value, str) and (name.endswith("url") or "://" in value):
            self.add_url(value)

    def add_arguments(self, args: Sequence[str]) -> None:
        """Remember the secrets of command-line arguments as typed: any may be a URL.

        So may the value of a ``--name=value`` argument. (Values attached to
        short options, ``-uURL``, are the caller's to add: see :func:`known_secrets`.)
        """
        for arg in args:
            value = arg.partition("=")[2] if arg.startswith("--") and "=" in arg else arg
            # Only what reads as a URL (a scheme, then ":/" or "://"): a key or a value such
            # as "alice@example.com" or "/search?q=x" is no URL, and scrubbing its parts
            # once changed the command's own output.
            if looks_like_url(value):
                self.add_url(value)

    def add(self, secret: object) -> None:
        """Remember ``secret`` (and its percent-decoded forms)."""
        if isinstance(secret, (int, float)) and not isinstance(secret, bool):
            secret = str(secret)
        if isinstance(secret, str) and len(secret) >= _MIN_SECRET:
            for form in {secret, unquote(secret), unquote_plus(secret)}:
                for spelling in _spellings(form):
                    self._replace(spelling, "***")

    def _replace(self, text: str, replacement: str) -> None:
        if not text or text == replacement or self._replacements.get(text) == "***":
            return  # a known secret is hidden whole, even where it also reads as a URL
        self._replacements[text] = replacement
        self._order = sorted(self._replacements, key=len, reverse=True)  # longest first

    def scrub(self, text: str) -> str:
        """Return ``text`` with every secret replaced by ``***``."""
        for secret in self._order:
            if secret in text:
                text = text.replace(secret, self._replacements[secret])
        return text


def known_secrets(
    args: Sequence[str], *, urls: Iterable[object] = (), config_paths: Iterable[object] = ()
) -> Redactor:
    """Return a :class:`Redactor` that knows every secret a command could print.

    Those of the arguments as typed, of ``urls`` (the URL options as parsed),
    of the ``PEVENSIE_CACHE_URL`` environment variable and of the ``[cache]``
    tables of ``config_paths`` (a file that cannot be read is left to the
    command to report), whichever the command ends up using.
    """
    redactor = Redactor()
    redactor.add_arguments(args)
    for url in (*urls, os.environ.get(ENV_VAR)):
        redactor.add_url(url)
    for path in config_paths:
        if isinstance(path, str) and path:
            with suppress(PevensieCacheError):
                redactor.add_config(load_config_file(path))
    return redactor


@dataclass(frozen=True)
class Target:
    """The cache a command talks to, and how to show it."""

    url: str | None
    config: Mapping[str, Any] | None
    origin: str
    """Where it came from: ``"argument"``, ``"--config FILE"`` or the environment variable."""

    def shown(self, c: PevensieCache | None = None) -> str:
        """Return what the command talks to: the masked URL, or the driver's masked ``repr``.

        The driver's, once built, whenever a config table gives more than a
        ``url``: its options (``port``, ``db``...) go on top of the URL, and a
        prompt such as ``clear``'s must name the database really used.
        """
        options = self.config is not None and any(name != "url" for name in self.config)
        if c is not None and (self.url is None or options):
            return repr(c.driver)
        if self.url is not None:
            return mask_url(self.url)
        return self.origin


def resolve_target(url: str | None, config_path: str | None, redactor: Redactor) -> Target:
    """Pick the cache from the command line, a config file or the environment."""
    if url:
        redactor.add_url(url)
        return Target(url=url, config=None, origin="argument")
    if config_path:
        try:
            table = load_config_file(config_path)
        except PevensieCacheError as exc:
            raise CliFailure(classify(exc), str(exc), "config") from None
        redactor.add_config(table)
        configured = table.get("url")
        return Target(
            url=configured if isinstance(configured, str) else None,
            config=table,
            origin=f"--config {config_path}",
        )
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        redactor.add_url(from_env)
        return Target(url=from_env, config=None, origin=ENV_VAR)
    raise CliFailure(
        ExitCode.USAGE,
        f"no cache given: pass a URL (for example redis://localhost:6379/0), "
        f"--config FILE with a [cache] table, or set {ENV_VAR}",
    )


@contextmanager
def open_cache(target: Target, timings: dict[str, float] | None = None) -> Iterator[PevensieCache]:
    """Build and connect the target's cache; failures are :class:`CliFailure` with their code.

    Building failures exit with ``CONFIG`` (or ``USAGE``), connecting failures
    with ``CONNECT``; the cache is disconnected at the end. ``timings``
    receives the seconds ``connect`` took, as ``"connect"``.
    """
    try:
        if target.config is not None:
            c = cache.from_config(target.config)
        elif target.url is not None:
            c = cache.from_url(target.url)
        else:
            raise ConfigError("no cache URL or configuration to connect to")
    except PevensieCacheError as exc:
        raise CliFailure(classify(exc), f"{type(exc).__name__}: {exc}", "config") from None
    began = time.perf_counter()
    try:
        c.connect()
    except PevensieCacheError as exc:
        code = classify(exc, connecting=True)
        raise CliFailure(
            code, f"cannot connect to {target.shown(c)}: {type(exc).__name__}: {exc}", "connect"
        ) from None
    if timings is not None:
        timings["connect"] = time.perf_counter() - began
    try:
        yield c
    finally:
        if c.connected:
            # The command's outcome matters more than a failed goodbye.
            with suppress(PevensieCacheError):
                c.disconnect()
