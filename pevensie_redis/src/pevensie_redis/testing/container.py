"""The container provider: a Docker engine probe (Docker SDK) and :class:`ContainerServer`.

The Docker SDK (``docker``, which testcontainers depends on) and testcontainers
are imported only when the container provider is considered, and then only if
the engine's Unix socket exists (or ``DOCKER_HOST`` names another address).
The engine is found as the SDK finds it (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``,
``DOCKER_CERT_PATH``, else ``/var/run/docker.sock``); every call to it has a
timeout.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any

from pevensie_redis.testing.binaries import (
    LOOPBACK,
    base_args,
    free_port,
    record_started,
    wait_until_ready,
)
from pevensie_redis.testing.errors import ServerNotControllable, ServerStartError
from pevensie_redis.testing.servers import READY_TIMEOUT, ProviderKind, RedisServer

__all__ = ["ContainerServer", "DockerEngine", "container_description", "probe_engine"]

_DEFAULT_SOCKET = "/var/run/docker.sock"


def engine_address() -> str:
    """Return the engine address: ``DOCKER_HOST``, else the default Unix socket."""
    return os.environ.get("DOCKER_HOST") or f"unix://{_DEFAULT_SOCKET}"


def _docker() -> Any:
    """Import the Docker SDK (it ships no type information)."""
    import docker  # type: ignore[import-untyped]

    return docker


def _client(timeout: float) -> Any:
    """Return a Docker SDK client whose every call waits at most ``timeout`` seconds.

    Making it already asks the engine for its API version, so it raises (one
    of :func:`_engine_errors`) when no engine answers.
    """
    return _docker().from_env(timeout=timeout)


def _engine_errors() -> tuple[type[BaseException], ...]:
    """Return what the SDK raises when the engine refuses, fails or does not answer."""
    return (_docker().errors.DockerException, OSError)  # requests' errors are OSErrors


class DockerEngine:
    """A Docker engine that answered: its version, and a way to ask about images."""

    def __init__(self, address: str, version: str, timeout: float) -> None:
        self.address = address
        self.version = version
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"DockerEngine(address={self.address!r}, version={self.version!r})"

    def has_image(self, image: str) -> bool:
        """Return True when ``image`` is present locally (no pull is attempted)."""
        try:
            with contextlib.closing(_client(self._timeout)) as client:
                client.images.get(image)
        except _engine_errors():  # docker.errors.ImageNotFound, or the engine went away
            return False
        return True

    def pull(self, image: str, timeout: float) -> str | None:
        """Ask the engine to pull ``image``; return None on success, else the reason it failed.

        Bounded by ``timeout`` seconds: the engine's progress stream is read
        with that socket timeout and abandoned (which cancels the pull) once
        the deadline has passed, so an unreachable registry fails fast when
        name resolution fails and within the bound when packets are dropped.
        """
        deadline = time.monotonic() + timeout
        try:
            with contextlib.closing(_client(timeout)) as client:
                for event in client.api.pull(image, stream=True, decode=True):
                    if isinstance(event, dict) and event.get("error"):
                        return f"pull of {image} failed: {event['error']}"
                    if time.monotonic() > deadline:
                        return f"pull of {image} did not finish within {timeout:g} s"
        except _engine_errors() as exc:
            return f"pull of {image} failed: {type(exc).__name__}: {exc}"
        return None if self.has_image(image) else f"pull of {image} left no image"


def probe_engine(timeout: float = 2.0) -> DockerEngine | None:
    """Return the Docker engine if one answers within ``timeout`` seconds, else None.

    Without ``DOCKER_HOST`` and without the default socket, nothing is imported
    or contacted.
    """
    address = engine_address()
    if address.startswith("unix://") and not os.path.exists(address.removeprefix("unix://")):
        return None
    try:
        _docker()  # installed with testcontainers (the ``testing`` extra)
    except ImportError:
        return None
    try:
        with contextlib.closing(_client(timeout)) as client:
            version = client.version()
    except _engine_errors():
        return None
    return DockerEngine(address, str(version.get("Version", "unknown")), timeout)


def container_description(image: str, engine_version: str) -> str:
    """Describe the container provider for ``image`` (in the pytest header and ``provider``)."""
    return f"container {image} via testcontainers (Docker {engine_version})"


class ContainerServer(RedisServer):
    """A server in a container started through testcontainers, on the host network."""

    kind: ProviderKind = "container"

    def __init__(
        self,
        image: str,
        args: Sequence[str] = (),
        *,
        engine_version: str = "unknown",
    ) -> None:
        super().__init__(
            host=LOOPBACK, port=0, provider=container_description(image, engine_version)
        )
        self.image = image
        self.extra_args = tuple(args)
        self._container: Any = None

    @property
    def executable(self) -> str:
        """The server command in the image: redis-server for redis images, else valkey-server."""
        name = self.image.rsplit("/", 1)[-1]
        return "redis-server" if name.startswith("redis") else "valkey-server"

    @property
    def container_id(self) -> str | None:
        """The container's id, once started."""
        return None if self._container is None else str(self._container.get_wrapped_container().id)

    @property
    def pid(self) -> int | None:
        """The host PID of the server process in the container (None when not running)."""
        wrapped = self._wrapped()
        if wrapped is None:
            return None
        wrapped.reload()
        pid = int(wrapped.attrs.get("State", {}).get("Pid") or 0)
        return pid or None

    def command_args(self) -> list[str]:
        """Return the container command: the server, the base arguments, the extra ones.

        The server's directory is the image's ``/data`` (as in the official images).
        """
        return [self.executable, *base_args(self.port, "/data", host=self.host), *self.extra_args]

    def start(self) -> ContainerServer:
        """Create and start the container, then wait until the server answers."""
        os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
        from testcontainers.core.container import DockerContainer

        last_error: ServerStartError | None = None
        for _attempt in range(3):
            self.port = free_port(self.host)
            container = (
                DockerContainer(self.image)
                .with_command(self.command_args())
                .with_kwargs(network_mode="host", labels={"pevensie.test": "redis"})
            )
            self._container = container
            try:
                container.start()
            except Exception as exc:  # docker.errors.* (no such image, engine error...)
                self._remove()
                raise ServerStartError(
                    f"could not start a container from {self.image}: {exc}"
                ) from exc
            record_started("container", self.container_id or "")
            try:
                self._wait_ready()
            except ServerStartError as exc:
                last_error = exc
                self._remove()
                if "already in use" in str(exc):
                    continue
                raise
            self._track()
            self._read_version()
            return self
        raise last_error or ServerStartError(f"could not start a container from {self.image}")

    def _wrapped(self) -> Any:
        return None if self._container is None else self._container.get_wrapped_container()

    def _status(self) -> str:
        wrapped = self._wrapped()
        if wrapped is None:
            return "removed"
        try:
            wrapped.reload()
        except Exception:
            return "removed"
        return str(wrapped.status)

    def _wait_ready(self) -> None:
        wait_until_ready(
            self.host,
            self.port,
            timeout=READY_TIMEOUT,
            exited=lambda: self._status() in ("exited", "dead", "removed"),
            logs=self.logs,
            what=self.provider,
            **self._ping_options(),
        )

    def kill(self) -> None:
        """``docker kill`` the container (SIGKILL to the server)."""
        wrapped = self._require()
        if self._status() == "paused":
            wrapped.unpause()
        if self._status() == "running":
            wrapped.kill()
        wrapped.wait(timeout=10)

    def restart(self) -> None:
        """Start the same container again (same command, same port); wait until it answers."""
        wrapped = self._require()
        if self._status() in ("running", "paused"):
            self.kill()
        wrapped.start()
        self._wait_ready()

    def pause(self) -> None:
        """``docker pause`` the container."""
        self._require().pause()

    def resume(self) -> None:
        """``docker unpause`` the container (nothing when it is not paused)."""
        if self._status() == "paused":
            self._require().unpause()

    def stop(self) -> None:
        """Remove the container by its id (``docker rm -f``). Safe to call twice."""
        self._remove()
        super().stop()

    def _remove(self) -> None:
        container, self._container = self._container, None
        if container is None:
            return
        with contextlib.suppress(Exception):  # already gone
            container.get_wrapped_container().remove(force=True, v=True)
        with contextlib.suppress(Exception):
            container.get_docker_client().client.close()

    def is_running(self) -> bool:
        """Return True while the container runs (paused counts)."""
        return self._status() in ("running", "paused")

    def logs(self, lines: int = 30) -> str:
        """Return the last ``lines`` lines of the container's output."""
        wrapped = self._wrapped()
        if wrapped is None:
            return ""
        try:
            return bytes(wrapped.logs(tail=lines)).decode("utf-8", "replace")
        except Exception as exc:
            return f"(logs unavailable: {type(exc).__name__})"

    def _require(self) -> Any:
        wrapped = self._wrapped()
        if wrapped is None:
            raise ServerNotControllable(f"{self!r} is not started")
        return wrapped
