"""Which cache a command talks to: a URL, a ``--config`` file or ``PEVENSIE_CACHE_URL``.

The first given wins, in that order: a URL on the command line, then
``--config FILE`` (its ``[cache]`` table, as ``cache.from_config`` takes it),
then the environment variable. Whatever holds a password, the command line
shows only the masked URL (or the driver's own masked ``repr``), and every
line it prints is scrubbed of the secrets it was given (:class:`Redactor`).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pevensie_cache import cache
from pevensie_cache.building import ENV_VAR
from pevensie_cache.cli.exit_codes import CliFailure, ExitCode, classify
from pevensie_cache.config_file import load_config_file
from pevensie_cache.errors import ConfigError, PevensieCacheError
from pevensie_cache.facade import PevensieCache
from pevensie_cache.urls import mask_url

__all__ = ["Redactor", "Target", "open_cache", "resolve_target"]

_SECRET_NAMES = re.compile(r"(?i)^(pass(word)?|pwd|secret|token|auth)$")
_MIN_SECRET = 3
"""Shorter secrets are not scrubbed from output: they would mangle every line."""


@dataclass
class Redactor:
    """Replaces every known secret by ``***`` in text about to be printed."""

    secrets: list[str] = field(default_factory=list)

    def add_url(self, url: str) -> None:
        """Remember the password (or lone userinfo) and secret query values of ``url``."""
        try:
            parts = urlsplit(url)
            userinfo = parts.netloc.rpartition("@")[0]
            query = parse_qsl(parts.query, keep_blank_values=True)
        except ValueError:
            userinfo, query = url.rpartition("@")[0], []
        user, sep, password = userinfo.partition(":")
        self.add(password if sep else user)
        for name, value in query:
            if _SECRET_NAMES.match(name):
                self.add(value)

    def add(self, secret: object) -> None:
        """Remember ``secret`` (and its percent-decoded form)."""
        if isinstance(secret, str) and len(secret) >= _MIN_SECRET:
            for form in {secret, unquote(secret)}:
                if form not in self.secrets:
                    self.secrets.append(form)
            self.secrets.sort(key=len, reverse=True)  # longest first: no partial leftovers

    def scrub(self, text: str) -> str:
        """Return ``text`` with every secret replaced by ``***``."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


@dataclass(frozen=True)
class Target:
    """The cache a command talks to, and how to show it."""

    url: str | None
    config: Mapping[str, Any] | None
    origin: str
    """Where it came from: ``"argument"``, ``"--config FILE"`` or the environment variable."""

    def shown(self, c: PevensieCache | None = None) -> str:
        """Return the masked URL, or the driver's masked ``repr`` for a config without one."""
        if self.url is not None:
            return mask_url(self.url)
        if c is not None:
            return repr(c.driver)
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
        for name, value in table.items():
            if name == "url" and isinstance(value, str):
                redactor.add_url(value)
            elif _SECRET_NAMES.match(str(name)):
                redactor.add(value)
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
