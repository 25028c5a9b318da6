"""The Sentinel mode's locator: where the primary (and the replicas) of a service are.

This module is the source of the sync face too: ``sentinel.py`` is generated
from it by ``.ci/unasync.py``. Edit this file, then run ``nox -s generate``.

With ``RedisConfig(sentinels=..., service_name=...)`` the driver's channel
asks :class:`Sentinels` where the primary of ``service_name`` is each time it
opens a connection (``SENTINEL MASTER``, asked of the sentinels in turn; the
one that answered is asked first next time, those that could not be reached
last), and while it is used about once
a second (:class:`~pevensie_redis.primary_check.PrimaryCheck`), so it leaves
a former primary that stays up (``SENTINEL FAILOVER``) within about a second;
after an idle spell, the first commands wait for that answer.
After a failover the next command on a connection to the old primary fails
(or gets ``READONLY``, the old primary being a replica now), and the channel
retries on a new connection, which lands on the primary the sentinels now
name. Until the sentinels have promoted a replica (about
``down-after-milliseconds`` + 1-2 s), calls raise
:class:`~pevensie_redis.RedisConnectionError`. While no sentinel can be
reached at all, the driver keeps the primary it knows, and a new connection
goes there too (at ``connect()`` it knows none yet, and raises).

The sentinels are reached over pipes of their own (kept open between
questions), with the driver's timeout (and TLS settings when ``tls`` is on)
and their own credentials, ``sentinel_username`` and ``sentinel_password``
(``username``/``password`` are the data nodes'). Wrong sentinel credentials
are a :class:`~pevensie_redis.RedisAuthenticationError` that says it was the
sentinels; a sentinel user their ACL refuses ``SENTINEL MASTER`` (or, with
replica reads, ``SENTINEL REPLICAS``) a
:class:`~pevensie_redis.RedisPermissionError` naming the rule it needs.

With ``read_from_replicas``, :meth:`Sentinels.replicas` names the replicas
(``SENTINEL REPLICAS``): only those the sentinels do not flag ``s_down``,
``o_down`` or ``disconnected`` and whose ``master-link-status`` is ``ok``
(:func:`~pevensie_redis.sentinel_replies.replicas_of`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from redis.exceptions import AuthenticationError, NoPermissionError, RedisError
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import TimeoutError as RedisPyTimeoutError

from pevensie_cache import forks
from pevensie_redis.config import RedisConfig
from pevensie_redis.endpoint import Endpoint, endpoint, sentinel_endpoint
from pevensie_redis.pipe_async import Pipe, open_pipe
from pevensie_redis.protocol.commands import pack
from pevensie_redis.sentinel_replies import (
    acl_refusal,
    closed_error,
    no_primary,
    pairs,
    primary_of,
    replicas_of,
)

__all__ = ["Sentinels"]


class Sentinels:
    """Asks the sentinels of ``config`` where the primary and the replicas of its service are."""

    def __init__(self, config: RedisConfig) -> None:
        """Prepare to ask the sentinels ``config`` names (nothing connects yet)."""
        if not config.sentinels or config.service_name is None:
            raise ValueError("Sentinels needs a RedisConfig with sentinels and service_name")
        self._config = config
        self._service = config.service_name
        self._sentinels = [sentinel_endpoint(config, host, port) for host, port in config.sentinels]
        self._configured = tuple(self._sentinels)  # in the configured order
        self._pipes: dict[str, Pipe] = {}
        self._lock = threading.Lock()
        self._primary: Endpoint | None = None
        self._closed = False
        forks.renew_after_fork(self)

    def __repr__(self) -> str:
        where = ", ".join(sentinel.label for sentinel in self._sentinels)
        return f"<Sentinels {where} of {self._service!r}>"

    async def primary(self) -> Endpoint:
        """Return the endpoint of the primary the first healthy sentinel names.

        When no sentinel can be reached at all (each refused the connection or
        timed out), the primary named last, if one was: the driver keeps the
        primary it knows, for new connections too. While it knows one, a
        question waits one timeout in all for unreachable sentinels (not one
        each), and those are asked last next time. Raises
        :class:`~pevensie_redis.sentinel_replies.NoPrimary` (a redis-py
        ``ConnectionError``) naming each sentinel's problem, or
        ``AuthenticationError`` when every sentinel refused the sentinel
        credentials, or ``NoPermissionError`` when each refused the sentinel
        user ``SENTINEL MASTER`` (its ACL).
        """
        problems: list[str] = []
        refused = forbidden = 0
        unreachable = 0
        last_error: BaseException | None = None
        known = self._primary
        started = time.monotonic()
        for sentinel in list(self._sentinels):
            if (
                known is not None
                and problems
                and unreachable == len(problems)
                and time.monotonic() - started >= sentinel.timeout
            ):
                break  # a timeout gone on unreachable sentinels: go on with the known primary
            try:
                reply = await self._ask(sentinel, pack(["SENTINEL", "MASTER", self._service]))
            except AuthenticationError:
                problems.append(f"{sentinel.label}: refused the sentinel credentials")
                refused += 1
                continue
            except (RedisPyConnectionError, RedisPyTimeoutError) as exc:
                problems.append(f"{sentinel.label}: {exc}")
                unreachable += 1
                last_error = exc
                self._last(sentinel)
                continue
            if isinstance(reply, AuthenticationError):
                problems.append(f"{sentinel.label}: refused the sentinel credentials")
                refused += 1
                continue
            if isinstance(reply, NoPermissionError):
                problems.append(f"{sentinel.label}: {acl_refusal('MASTER', reply)}")
                forbidden += 1
                continue
            state = None if isinstance(reply, Exception) else pairs(reply)
            found = primary_of(state, self._service)
            if isinstance(found, str):
                problems.append(f"{sentinel.label}: {found}")
                continue
            self._first(sentinel)
            return self._endpoint(*found)
        if known is not None and unreachable == len(problems) and not self._closed:
            return known  # none could be asked: nothing says the primary moved
        if forbidden and forbidden == len(problems):
            raise NoPermissionError(f"every sentinel: {acl_refusal('MASTER', None)}")
        raise no_primary(self._service, problems, refused) from last_error

    async def replicas(self) -> list[tuple[str, int]]:
        """Return the replicas of the service fit to read from, as the first sentinel says.

        Raises redis-py's ``ConnectionError`` when no sentinel answers, or
        ``NoPermissionError`` when each refused the sentinel user
        ``SENTINEL REPLICAS`` (its ACL).
        """
        problems: list[str] = []
        forbidden = 0
        for sentinel in list(self._sentinels):
            try:
                reply = await self._ask(sentinel, pack(["SENTINEL", "REPLICAS", self._service]))
            except RedisError as exc:
                problems.append(f"{sentinel.label}: {exc}")
                continue
            if isinstance(reply, NoPermissionError):
                problems.append(f"{sentinel.label}: {acl_refusal('REPLICAS', reply)}")
                forbidden += 1
                continue
            if isinstance(reply, Exception):
                problems.append(f"{sentinel.label}: {reply}")
                continue
            return replicas_of(reply)
        if forbidden and forbidden == len(problems):
            raise NoPermissionError(f"every sentinel: {acl_refusal('REPLICAS', None)}")
        raise RedisPyConnectionError(
            f"no sentinel listed the replicas of {self._service!r} ({'; '.join(problems)})"
        )

    async def close(self) -> None:
        """Close the pipes to the sentinels; a question still under way then opens none."""
        with self._lock:
            self._closed = True
            pipes, self._pipes = list(self._pipes.values()), {}
        for pipe in pipes:
            pipe.close()

    async def _ask(self, sentinel: Endpoint, packed: bytes) -> Any:
        """Send one command to ``sentinel`` over its pipe (opened, or opened again, as needed).

        Once :meth:`close` has run, raises redis-py's ``ConnectionError``: a
        question that was under way (the driver's periodic one, in the
        background) must not open a pipe nothing would close.
        """
        with self._lock:
            if self._closed:
                raise closed_error()
            pipe = self._pipes.get(sentinel.label)
        if pipe is None or pipe.closed:
            pipe = await open_pipe(sentinel)
            self._keep(sentinel, pipe)
        try:
            return await pipe.call(packed)
        except BaseException:
            pipe.close()
            raise

    def _keep(self, sentinel: Endpoint, pipe: Pipe) -> None:
        """Keep ``pipe`` as the one to ``sentinel``; close it and raise if :meth:`close` ran."""
        with self._lock:
            closed = self._closed
            replaced = None if closed else self._pipes.get(sentinel.label)
            if not closed:
                self._pipes[sentinel.label] = pipe
        if closed:
            pipe.close()
            raise closed_error()
        if replaced is not None and replaced is not pipe:
            replaced.close()

    def _first(self, sentinel: Endpoint) -> None:
        """Ask ``sentinel`` first next time (it answered)."""
        with self._lock:
            sentinels = self._sentinels
            if sentinels[0] is not sentinel and sentinel in sentinels:
                index = sentinels.index(sentinel)
                sentinels[0], sentinels[index] = sentinel, sentinels[0]

    def _last(self, sentinel: Endpoint) -> None:
        """Ask ``sentinel`` last next time (it could not be reached)."""
        with self._lock:
            sentinels = self._sentinels
            if sentinel in sentinels and sentinels[-1] is not sentinel:
                sentinels.remove(sentinel)
                sentinels.append(sentinel)

    def _forked(self) -> None:
        """In a forked child: a new lock; the parent's pipes forgotten, never closed.

        The order of the sentinels is the configured one again: another thread
        may have been half-way through swapping two of them. Their endpoints
        were made at the start (nothing here opens a file or builds a TLS
        context: another thread may have held a lock inside OpenSSL at the fork).
        """
        self._lock = threading.Lock()
        for pipe in self._pipes.values():
            pipe.forget()
        self._pipes = {}
        self._sentinels = list(self._configured)

    def _endpoint(self, host: str, port: int) -> Endpoint:
        known = self._primary
        if known is None or (known.host, known.port) != (host, port):
            known = self._primary = endpoint(self._config, host, port)
        return known
