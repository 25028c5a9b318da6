"""A cheap probe of the Docker engine, with the standard library only.

Choosing a provider (and writing the pytest report header) must not import the
Docker SDK or testcontainers, so this module speaks the engine's HTTP API over
its socket directly: ``GET /version`` and ``GET /images/<name>/json``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

__all__ = ["DockerEngine", "probe_engine"]

_DEFAULT_SOCKET = "/var/run/docker.sock"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class DockerEngine:
    """A Docker engine that answered: its version and a way to ask about images."""

    def __init__(self, address: str, version: str, timeout: float) -> None:
        self.address = address
        self.version = version
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"DockerEngine(address={self.address!r}, version={self.version!r})"

    def has_image(self, image: str) -> bool:
        """Return True when ``image`` is present locally (no pull is attempted)."""
        status, _ = _get(self.address, f"/images/{quote(image, safe='/:@')}/json", self._timeout)
        return status == 200

    def pull(self, image: str, timeout: float) -> str | None:
        """Ask the engine to pull ``image``; return None on success, else the reason it failed.

        Bounded by ``timeout`` seconds in all (an unreachable registry fails fast
        when name resolution fails, slowly when packets are dropped).
        """
        name, tag = _split_reference(image)
        query = urlencode({"fromImage": name, **({"tag": tag} if tag else {})})
        connection = _connection(self.address, timeout)
        try:
            connection.request("POST", f"/images/create?{query}")
            response = connection.getresponse()
            body = response.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            return f"pull of {image} did not finish: {type(exc).__name__}: {exc}"
        finally:
            connection.close()
        if response.status != 200:
            return f"pull of {image} failed: {_message(body)}"
        for line in body.splitlines():  # a stream of JSON progress objects
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("error"):
                return f"pull of {image} failed: {event['error']}"
        return None if self.has_image(image) else f"pull of {image} left no image"


def _split_reference(image: str) -> tuple[str, str | None]:
    """Split ``repo[:tag]`` into repository and tag (a digest stays in the name)."""
    if "@" in image:
        return image, None
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, "latest"


def _message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:300]
    return str(data.get("message", data))[:300] if isinstance(data, dict) else body[:300]


def _connection(address: str, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(address)
    if parts.scheme == "unix":
        return _UnixConnection(parts.path, timeout)
    if parts.scheme in ("tcp", "http"):
        return http.client.HTTPConnection(
            parts.hostname or "localhost", parts.port, timeout=timeout
        )
    raise OSError(f"unsupported DOCKER_HOST scheme: {parts.scheme!r}")


def _get(address: str, path: str, timeout: float) -> tuple[int, Any]:
    connection = _connection(address, timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    return response.status, data


def engine_address() -> str:
    """Return the engine address: ``DOCKER_HOST``, else the default Unix socket."""
    return os.environ.get("DOCKER_HOST") or f"unix://{_DEFAULT_SOCKET}"


def probe_engine(timeout: float = 2.0) -> DockerEngine | None:
    """Return the Docker engine if one answers within ``timeout`` seconds, else None."""
    address = engine_address()
    if address.startswith("unix://") and not os.path.exists(urlsplit(address).path):
        return None
    try:
        status, data = _get(address, "/version", timeout)
    except (OSError, http.client.HTTPException):
        return None
    if status != 200 or not isinstance(data, dict):
        return None
    return DockerEngine(address, str(data.get("Version", "unknown")), timeout)
