"""The nodes of a test topology: find the binaries, make, start and stop server processes.

Every node is a :class:`~pevensie_redis.testing.ProcessServer` (a
:class:`~pevensie_redis.testing.TLSServer` when the topology speaks TLS) on a
port picked up front, in its own directory under the topology's directory, so
that nodes can name each other in their configuration (``replicaof``,
``sentinel monitor``) before any of them starts.
"""

from __future__ import annotations

import os
import shutil
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import redis

from pevensie_redis.testing import (
    ProcessServer,
    RedisServer,
    ServerBinary,
    ServerStartError,
    TLSMaterial,
    TLSServer,
    TLSUnavailable,
    find_server_binary,
    free_port,
)
from pevensie_redis.testing.binaries import LOOPBACK
from pevensie_redis.testing.tls import find_tls_binaries

__all__ = [
    "HOST",
    "SETTLE_TIMEOUT",
    "OwnedTopology",
    "TopologyError",
    "find_binaries",
    "find_tls_binaries_with_cli",
    "new_node",
    "retry_on_port_clash",
    "start_nodes",
    "stop_nodes",
    "tls_cli_args",
    "wait_until",
]

HOST = LOOPBACK
_START_ATTEMPTS = 3


class OwnedTopology:
    """What every topology does with its processes: stop them by PID, or give them up.

    A topology (a dataclass) names its processes in :meth:`processes` and its
    directory in ``directory``; its ``__post_init__`` (this one) registers
    :meth:`stop` to run at interpreter exit too (``weakref.finalize`` registers
    with ``atexit``), so a test run that forgets still stops them.
    """

    directory: str
    _finalizer: weakref.finalize[Any, Any] | None = None

    def processes(self) -> list[RedisServer]:
        """Every process of the topology."""
        raise NotImplementedError

    def __post_init__(self) -> None:
        self._finalizer = weakref.finalize(self, stop_nodes, self.processes(), self.directory)

    def __enter__(self: _Topology) -> _Topology:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Kill every process by PID and remove their directories."""
        if self._finalizer is not None:
            self._finalizer()

    def release(self) -> None:
        """Give the topology up without stopping it: it outlives this handle and this process.

        Neither :meth:`stop`, the exit-time finalizer nor the servers' own
        exit-time cleanup stops it any more; whoever takes it over stops its
        processes by PID.
        """
        if self._finalizer is not None:
            self._finalizer.detach()
        for node in self.processes():
            node.release()


_Topology = TypeVar("_Topology", bound=OwnedTopology)

SETTLE_TIMEOUT = 60.0
"""Seconds a topology has to form (every wait polls its condition and ends as soon as it holds).

What it waits for: nodes gossiping until every one agrees on the slots
(Cluster), replicas syncing, sentinels hearing each other's hello messages
(published every 2 s) and the replica from the primary's INFO. That takes
2-3 s on a quiet machine and once took more than 30 s on a CI machine at
load 11; the bound only catches a topology that never forms.
"""

T = TypeVar("T")


class TopologyError(RuntimeError):
    """A test topology could not be started, or did not settle within its deadline."""


def find_binaries() -> tuple[ServerBinary, str]:
    """Return the server binary :func:`find_server_binary` picks, and the path of its CLI.

    The CLI (``valkey-cli`` or ``redis-cli``, needed for ``--cluster create``)
    is looked for next to the server first, then on ``PATH``.
    """
    server = find_server_binary()
    return server, _find_cli(server.path)


def find_tls_binaries_with_cli() -> tuple[ServerBinary, str]:
    """Return a TLS-capable server binary and its CLI, or raise TLSUnavailable."""
    for binary in find_tls_binaries():
        try:
            return binary, _find_cli(binary.path)
        except TopologyError:
            continue
    raise TLSUnavailable("no TLS-capable server binary with a CLI next to it or on PATH")


def _find_cli(server: str) -> str:
    folder = Path(server).parent
    for name in ("valkey-cli", "redis-cli"):
        candidate = folder / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    for name in ("valkey-cli", "redis-cli"):
        found = shutil.which(name)
        if found:
            return found
    raise TopologyError(f"no valkey-cli or redis-cli next to {server} or on PATH")


def _tls_link_settings(tls: TLSMaterial, *, cluster: bool) -> list[tuple[str, str]]:
    """Settings for the links a node opens itself: replication (and the cluster bus) over TLS."""
    return [
        *([("tls-cluster", "yes")] if cluster else []),
        ("tls-replication", "yes"),
        # The bus and replication connect as clients, with the server's own certificate.
        ("tls-client-cert-file", str(tls.server_cert_file)),
        ("tls-client-key-file", str(tls.server_key_file)),
    ]


def tls_cli_args(tls: TLSMaterial) -> list[str]:
    """Return the CLI arguments to reach a TLS node."""
    return ["--tls", "--cacert", str(tls.ca_file)]


def new_node(
    binary: ServerBinary,
    name: str,
    directory: Path,
    *,
    settings: Sequence[tuple[str, str]] = (),
    args: Sequence[str] = (),
    password: str | None = None,
    client_options: dict[str, Any] | None = None,
    tls: TLSMaterial | None = None,
    cluster: bool = False,
    timeout: float,
) -> ProcessServer:
    """Make (not start) one node on a free port, in ``directory / name``.

    With ``tls`` it speaks only TLS, to clients and on the links it opens
    itself (replication, and the cluster bus when ``cluster``). ``timeout``
    bounds its start and restarts.
    """
    port = free_port()
    workdir = directory / name
    if tls is None:
        return ProcessServer(
            binary,
            args,
            port=port,
            settings=settings,
            password=password,
            client_options=client_options,
            workdir=workdir,
            name=name,
            ready_timeout=timeout,
        )
    return TLSServer(
        binary,
        tls,
        args,
        port=port,
        settings=[*settings, *_tls_link_settings(tls, cluster=cluster)],
        password=password,
        workdir=workdir,
        name=name,
        ready_timeout=timeout,
    )


def start_nodes(nodes: Iterable[ProcessServer]) -> None:
    """Start every node, each waiting until it answers PING; raise TopologyError if one does not."""
    for node in nodes:
        try:
            node.start()
        except ServerStartError as exc:
            raise TopologyError(str(exc)) from None


def stop_nodes(nodes: Iterable[RedisServer], directory: str) -> None:
    """Kill every node by PID (SIGKILL: no shutdown to wait for), then delete ``directory``."""
    for node in nodes:
        if node.is_running():
            node.kill()
        node.stop()
    shutil.rmtree(directory, ignore_errors=True)


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll ``condition`` until it holds; return the seconds waited or raise TopologyError."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        try:
            if condition():
                return time.monotonic() - start
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise TopologyError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


def retry_on_port_clash(start: Callable[[], T]) -> T:
    """Call ``start`` again (up to 3 times in all) when a node found its port taken.

    Ports are picked free before the nodes bind them, and in between another
    process (often an outgoing connection given that ephemeral port) can take
    one. ``start`` must clean up after itself when it fails, as the topology
    starters do, so a retry begins from nothing on fresh ports.
    """
    for attempt in range(1, _START_ATTEMPTS + 1):
        try:
            return start()
        except TopologyError as exc:
            if attempt == _START_ATTEMPTS or "already in use" not in str(exc):
                raise
    raise AssertionError("unreachable")  # pragma: no cover
