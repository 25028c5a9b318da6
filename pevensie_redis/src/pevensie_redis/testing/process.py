"""A server binary running as a child process on a loopback port: :class:`ProcessServer`.

The one model of a server process, for the fixtures and for anything built of
several servers (this repository's Cluster and Sentinel test topologies). The
server reads its settings from a configuration file in its own working
directory (so a password never appears on a command line), followed by any
extra command-line arguments. It is killed, paused, restarted and stopped by
its PID.

>>> server = ProcessServer(find_server_binary(), password="secret").start()  # doctest: +SKIP
>>> server.kill(); server.restart()      # same port, same configuration file  # doctest: +SKIP
>>> server.stop()                        # SIGTERM, then SIGKILL; files deleted  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pevensie_redis.testing.binaries import (
    LOOPBACK,
    ServerBinary,
    base_settings,
    free_port,
    log_tail,
    spawn_server,
    stop_process,
    wait_until_ready,
    write_config,
)
from pevensie_redis.testing.errors import ServerNotControllable, ServerStartError
from pevensie_redis.testing.servers import READY_TIMEOUT, ProviderKind, RedisServer

__all__ = ["ProcessServer"]

_START_ATTEMPTS = 3


class ProcessServer(RedisServer):
    """A server binary running as a child process on a loopback port.

    ``args`` are extra command-line arguments, after the configuration file
    (``--sentinel``, ``--maxmemory 5mb``...). ``settings`` are extra lines of
    the configuration file, after the :func:`base settings
    <pevensie_redis.testing.binaries.base_settings>`. With ``password``, the
    server requires it (``requirepass``, and ``masterauth`` for a replica) and
    :meth:`client` sends it; it stays out of the URL, the ``repr`` and
    messages. ``client_options`` are extra redis-py options for :meth:`client`.

    Without ``port`` a free one is picked (another is tried if it is taken
    before the server binds it); with ``port``, that one is used. The working
    directory (a new temporary one unless ``workdir`` is given) holds the
    configuration file and the log, and is deleted by :meth:`stop`.
    """

    kind: ProviderKind = "binary"

    def __init__(
        self,
        binary: ServerBinary,
        args: Sequence[str] = (),
        *,
        host: str = LOOPBACK,
        port: int | None = None,
        settings: Sequence[tuple[str, str]] = (),
        password: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        workdir: Path | None = None,
        name: str = "",
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        super().__init__(host=host, port=port or 0, provider=binary.describe(), name=name)
        self.binary = binary
        # Until INFO says otherwise (it cannot when the server wants a password).
        self.version = binary.version
        self.server_name = binary.name.removesuffix("-server")
        self.extra_args = tuple(args)
        self.extra_settings = tuple(settings)
        self.ready_timeout = ready_timeout
        self._password = password
        self._client_options = dict(client_options or {})
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="pevensie-redis-"))
        else:
            workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.config_path = workdir / "server.conf"
        self.log_path = workdir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._fixed_port = port is not None

    @property
    def pid(self) -> int | None:
        """The PID of the server process (of the last one, once it has exited)."""
        return self._process.pid if self._process is not None else None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The ``Popen`` object of the current server process."""
        return self._process

    def server_settings(self) -> list[tuple[str, str]]:
        """Return the configuration file's settings: base, password, then the extra ones."""
        settings = base_settings(self.port, self.workdir, host=self.host)
        if self._password is not None:
            settings += [("requirepass", self._password), ("masterauth", self._password)]
        return [*settings, *self.extra_settings]

    def command_args(self) -> list[str]:
        """Return the arguments of the server binary: the configuration file, then ``args``."""
        return [str(self.config_path), *self.extra_args]

    def client_options(self) -> dict[str, Any]:
        """Return the ``redis.Redis`` keyword arguments to reach this server."""
        options = super().client_options()
        if self._password is not None:
            options["password"] = self._password
        return {**options, **self._client_options}

    def start(self) -> ProcessServer:
        """Write the configuration file, start the process and wait until it answers PING.

        On a free port, another is tried when one is taken before the server
        binds it. Raises :class:`ServerStartError` (with the log's last lines)
        when the server does not come up; nothing is left running then.
        """
        attempts = 1 if self._fixed_port else _START_ATTEMPTS
        for attempt in range(attempts):
            if not self._fixed_port:
                self.port = free_port(self.host)
            write_config(self.config_path, self.server_settings())
            try:
                self._spawn()
            except ServerStartError as exc:
                if attempt + 1 < attempts and "already in use" in str(exc):
                    self.log_path.unlink(missing_ok=True)
                    continue
                self.stop()
                raise
            break
        self._track()
        self._read_version()
        return self

    def _spawn(self) -> None:
        self._process = spawn_server(self.binary, self.command_args(), log_path=self.log_path)
        wait_until_ready(
            self.host,
            self.port,
            timeout=self.ready_timeout,
            process=self._process,
            log_path=self.log_path,
            what=f"{self.name} ({self.provider})" if self.name else self.provider,
            **self._ping_options(),
        )

    def kill(self) -> None:
        """Send SIGKILL to the server process and reap it (nothing if it has exited)."""
        process = self._require_process()
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def restart(self) -> None:
        """Kill the process if alive, then start it again; wait until it answers.

        Same port, same arguments, same configuration file (as the server may
        have rewritten it: a Sentinel or ``CONFIG REWRITE`` does).
        """
        if self._stopped:
            raise ServerNotControllable(f"{self!r} was stopped; start a new server instead")
        process = self._require_process()
        if process.poll() is None:
            self.kill()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                self._spawn()
                return
            except ServerStartError as exc:
                # The old socket may linger for a moment; try again until the deadline.
                if "already in use" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def pause(self) -> None:
        """Send SIGSTOP to the server process and wait until the kernel has stopped it."""
        process = self._require_process()
        os.kill(process.pid, signal.SIGSTOP)
        _wait_for_state(process, stopped=True)

    def resume(self) -> None:
        """Send SIGCONT to the server process and wait until it runs again."""
        process = self._require_process()
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            _wait_for_state(process, stopped=False)

    def stop(self) -> None:
        """Stop the process by its PID (SIGTERM, then SIGKILL) and delete its directory."""
        if self._process is not None:
            stop_process(self._process)
        super().stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def is_running(self) -> bool:
        """Return True while the server process exists (stopped by SIGSTOP counts)."""
        return self._process is not None and self._process.poll() is None

    def logs(self, lines: int = 30) -> str:
        """Return the last ``lines`` lines of the server's log file."""
        return log_tail(self.log_path, lines)

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise ServerNotControllable(f"{self!r} has not been started")
        return self._process


def _process_state(pid: int) -> str:
    """Return the one-letter state of ``pid`` from /proc ('' when unknown)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0]


def _wait_for_state(
    process: subprocess.Popen[bytes], *, stopped: bool, timeout: float = 2.0
) -> None:
    """Wait (bounded) until SIGSTOP / SIGCONT has taken effect; no-op without /proc."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        state = _process_state(process.pid)
        if not state or (state in ("T", "t")) == stopped:
            return
        time.sleep(0.005)
