"""Topologies shared by every test process of a run: started once, attached by the others.

A run (one pytest invocation, with or without pytest-xdist) has a directory
of its own, made by the process that controls the run (the xdist controller,
or the one pytest process). The first test process to need a topology starts
it under a file lock in that directory, hands its processes over to the run
(:meth:`LocalCluster.release <pevensie_test_support.LocalCluster.release>`) and
records every node (address, PID, client options) in a JSON file; every test
process, the first included, then works through handles attached to that
record (:class:`SharedNode`). They control nothing: killing, pausing or
restarting a shared node raises
:class:`~pevensie_redis.testing.ServerNotControllable`, since a test that does
that needs a topology of its own. At the end the controller stops every
recorded process by PID (:func:`stop_recorded`), pass or fail; CI's PID file
(``PEVENSIE_TEST_PID_FILE``) lists them too, as every started server.

Tests take turns on a shared topology through leases (:mod:`~pevensie_test_support.leases`).
A test that needs a topology alone (:meth:`SharedRun.alone_on`) takes any copy of it
that is free: copies beyond the first are started only while every copy started so far
is busy, so tests that flush or count a whole cluster stop queueing behind each other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pevensie_redis.testing import RedisServer, TLSMaterial
from pevensie_redis.testing.binaries import log_tail
from pevensie_test_support.cluster import LocalCluster
from pevensie_test_support.leases import POLL, hold, take
from pevensie_test_support.nodes import TopologyError
from pevensie_test_support.sentinel import LocalSentinel

__all__ = ["SharedNode", "SharedRun", "stop_recorded"]

WAIT_NOTED = 0.05
"""Waits for a turn shorter than this (seconds) are not worth recording."""

START_WAIT = 600.0
"""Seconds a process waits for another to finish starting a topology (a start retries thrice)."""

Topology = TypeVar("Topology", LocalCluster, LocalSentinel)


class SharedNode(RedisServer):
    """A node of a shared topology, attached to by its record: used, never controlled.

    ``is_running`` asks the kernel about the recorded PID; ``kill``,
    ``pause``, ``restart`` and ``resume`` raise
    :class:`~pevensie_redis.testing.ServerNotControllable`.
    """

    controllable = False

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(
            host=record["host"],
            port=record["port"],
            provider=record["provider"],
            name=record["name"],
        )
        self.scheme = record["scheme"]
        self.version = record["version"]
        self.server_name = record["server_name"]
        self._pid: int = record["pid"]
        self._started: str | None = record["started"]
        self._options: dict[str, Any] = record["client_options"]
        self.log_path = Path(record["log"])

    @property
    def pid(self) -> int:
        """The PID of the node's process."""
        return self._pid

    def client_options(self) -> dict[str, Any]:
        """Return the ``redis.Redis`` keyword arguments to reach this node."""
        return {**super().client_options(), **self._options}

    def is_running(self) -> bool:
        """Return True while the recorded process exists (and is the one recorded)."""
        return _alive(self._pid, self._started)

    def logs(self, lines: int = 30) -> str:
        """Return the last ``lines`` lines of the node's log file."""
        return log_tail(self.log_path, lines)


def _node_record(node: RedisServer) -> dict[str, Any]:
    if node.pid is None:
        raise ValueError(f"{node!r} has no process to share")
    options = {k: v for k, v in node.client_options().items() if k not in ("host", "port", "db")}
    log_path = getattr(node, "log_path", "")
    return {
        "name": node.name,
        "host": node.host,
        "port": node.port,
        "scheme": node.scheme,
        "provider": node.provider,
        "version": node.version,
        "server_name": node.server_name,
        "pid": node.pid,
        "started": _start_time(node.pid),
        "client_options": options,
        "log": str(log_path),
    }


def _describe(topology: LocalCluster | LocalSentinel) -> dict[str, Any]:
    if isinstance(topology, LocalCluster):
        return {
            "kind": "cluster",
            "directory": topology.directory,
            "shards": topology.shards,
            "password": topology.password,
            "nodes": [_node_record(node) for node in topology.nodes],
        }
    return {
        "kind": "sentinel",
        "directory": topology.directory,
        "service_name": topology.service_name,
        "password": topology.password,
        "primary": _node_record(topology.primary),
        "replica": _node_record(topology.replica),
        "sentinels": [_node_record(node) for node in topology.sentinel_nodes],
    }


def _attach(record: dict[str, Any]) -> LocalCluster | LocalSentinel:
    attached: LocalCluster | LocalSentinel
    if record["kind"] == "cluster":
        attached = LocalCluster(
            [SharedNode(node) for node in record["nodes"]],
            record["directory"],
            record["shards"],
            record["password"],
        )
    else:
        attached = LocalSentinel(
            SharedNode(record["primary"]),
            SharedNode(record["replica"]),
            [SharedNode(node) for node in record["sentinels"]],
            record["service_name"],
            record["directory"],
            record["password"],
        )
    attached.release()  # the run stops it, never this handle
    return attached


def _recorded_pids(record: dict[str, Any]) -> list[tuple[int, str | None]]:
    nodes = record.get("nodes") or [record["primary"], record["replica"], *record["sentinels"]]
    return [(node["pid"], node["started"]) for node in nodes]


class SharedRun:
    """The shared topologies of one run, as seen by one test process.

    ``directory`` is the run's directory (made by the controller, handed to
    every worker); ``topology(name, start)`` returns the run's topology of that
    name, starting it with ``start`` if no process has yet.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._attached: dict[str, LocalCluster | LocalSentinel] = {}
        self._material: TLSMaterial | None = None

    def topology(self, name: str, start: Callable[[], Topology]) -> Topology:
        """Return the shared topology ``name``; the first process to ask starts it."""
        if name not in self._attached:
            record_file = self.directory / f"{name}.json"
            starting = self.directory / f"{name}.start"
            with hold(starting, timeout=START_WAIT, what=f"the start of {name}"):
                if not record_file.exists():
                    started = start()
                    record = _describe(started)
                    started.release()
                    _write(record_file, record)
                self._attached[name] = _attach(json.loads(record_file.read_text()))
        attached = self._attached[name]
        return attached  # type: ignore[return-value]  # a name always gets the same kind

    @contextmanager
    def alone_on(
        self, name: str, start: Callable[[], Topology], *, copies: int, timeout: float
    ) -> Iterator[Topology]:
        """Hold a copy of the topology ``name`` alone (an exclusive lease) for the block.

        Copy 0 is ``name`` itself, the one tests marked as sharing run on
        alongside each other; copies 1 to ``copies - 1`` (``name.1``...) start
        only when every copy started so far is busy. A free copy other than the
        first is preferred, so a test alone keeps copy 0 from the sharing tests
        only when no other copy is free. Raises
        :class:`~pevensie_test_support.TopologyError` after ``timeout`` seconds
        without a free copy.
        """
        names = [name, *(f"{name}.{copy}" for copy in range(1, copies))]
        deadline = time.monotonic() + timeout
        while True:
            started: list[str] = [n for n in names[1:] if (self.directory / f"{n}.json").exists()]
            unstarted: list[str] = [n for n in names[1:] if n not in started]
            # Started copies first (others before the first), then one copy more.
            for candidate in [*started, name, *unstarted[:1]]:
                handle = take(self.directory / f"{candidate}.lease")
                if handle is not None:
                    break
            else:
                if time.monotonic() >= deadline:
                    raise TopologyError(
                        f"waited {timeout:g} s for a turn on one of the {copies} copies of "
                        f"the shared {name}: other test processes held them"
                    )
                time.sleep(POLL)
                continue
            try:
                yield self.topology(candidate, start)
            finally:
                os.close(handle)  # drops the lease
            return

    def tls_material(self, make: Callable[[Path], TLSMaterial]) -> TLSMaterial:
        """Return the run's TLS material (the first process to ask makes it with ``make``)."""
        if self._material is None:
            record_file = self.directory / "tls_material.json"
            with hold(self.directory / "tls_material.start", timeout=START_WAIT, what="TLS files"):
                if not record_file.exists():
                    made = make(self.directory / "tls")
                    fields = dataclasses.asdict(made)
                    _write(record_file, {name: str(path) for name, path in fields.items()})
                paths = json.loads(record_file.read_text())
            self._material = TLSMaterial(**{name: Path(path) for name, path in paths.items()})
        return self._material

    def note_wait(self, name: str, seconds: float) -> None:
        """Record that a test waited ``seconds`` for its turn on ``name`` (when it waited)."""
        if seconds >= WAIT_NOTED:
            with open(self.directory / "waits.log", "a", encoding="utf-8") as log:
                log.write(f"{name} {seconds:.3f}\n")  # one short append: lines never mix

    def summary(self) -> tuple[list[str], dict[str, tuple[int, float, float]]]:
        """Return the topologies started, and per topology: tests that waited, total, longest."""
        started = sorted(path.stem for path in self.directory.glob("*.json"))
        waits: dict[str, tuple[int, float, float]] = {}
        try:
            lines = (self.directory / "waits.log").read_text(encoding="utf-8").splitlines()
        except OSError:
            lines = []
        for line in lines:
            name, seconds = line.split()
            count, total, longest = waits.get(name, (0, 0.0, 0.0))
            waits[name] = (count + 1, total + float(seconds), max(longest, float(seconds)))
        return [name for name in started if name != "tls_material"], waits


def _write(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as JSON, whole or not at all (readers never see half a file)."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record))
    partial.chmod(0o600)  # a topology's record holds its (throwaway) password
    partial.replace(path)


def stop_recorded(directory: Path) -> list[str]:
    """Stop every process recorded in the run's ``directory`` by PID, then delete it all.

    Returns one line per topology stopped, for the log. A PID whose process
    is no longer the recorded one (its start time differs) is left alone.
    """
    stopped: list[str] = []
    for record_file in sorted(directory.glob("*.json")):
        record = json.loads(record_file.read_text())
        if "kind" not in record:
            continue
        pids = _recorded_pids(record)
        for pid, started in pids:
            if _alive(pid, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # a shared node has nothing to save
        for pid, started in pids:
            _wait_gone(pid, started)
        shutil.rmtree(record["directory"], ignore_errors=True)
        stopped.append(f"{record_file.stem}: {len(pids)} processes")
    shutil.rmtree(directory, ignore_errors=True)
    return stopped


def _wait_gone(pid: int, started: str | None, timeout: float = 10.0) -> None:
    """Wait until ``pid`` has exited; reap it if it is this process's child.

    A multi-threaded server's leader shows as a zombie before its other threads
    are gone, and cannot be reaped until they are: so our own child counts as
    gone only once reaped. It polls (a SIGKILLed server is gone within
    milliseconds); ``timeout`` only bounds a process that never goes.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # Our own child (a run without xdist started it): gone once reaped.
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # another process's child: its parent (or init) reaps it
            if not _alive(pid, started):
                return
        time.sleep(0.01)


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (None without /proc or process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()


def _start_time(pid: int) -> str | None:
    """The process's start time, in clock ticks since boot (None where /proc is missing)."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def _alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` is a live (not zombie) process that started at ``started``."""
    if started is not None or Path("/proc").is_dir():
        fields = _stat_fields(pid)
        if fields is None or fields[0] == "Z":
            return False
        return started is None or fields[19] == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
