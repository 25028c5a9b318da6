"""A dogpile.cache backend over any Pevensie driver (``pip install "pevensie-cache[dogpile]"``).

Registered through dogpile's ``dogpile.cache`` entry points as ``"pevensie"``:

.. code-block:: python

    region = make_region().configure(
        "pevensie",
        expiration_time=300,
        arguments={"url": "redis://localhost:6379/0"},  # any Pevensie URL
    )

Arguments: ``url`` (required); ``fail_open`` (default ``False``): an
unreachable server reads as ``NO_VALUE`` (dogpile then creates the value)
and writes nothing, logged at WARNING and counted by ``instrument()``, so a
region keeps serving its creator's values through an outage;
``resource_type`` (default ``"dogpile"``);
``ttl_seconds``, a server-side TTL for every entry (default none: dogpile's
own ``expiration_time`` decides freshness; a TTL above it lets expired values
be served while one creator regenerates); ``distributed_lock`` (default
``True``): the dogpile lock is the server-side lease lock of
:meth:`~pevensie_cache.PevensieCache.acquire_lock`, held across processes
and hosts, ``lock_lease`` seconds at most (default 30: a crashed holder's lock
expires), waited for ``lock_wait`` seconds at most (default: twice the lease,
then the creator runs anyway, as dogpile's Redis backend does after
``lock_blocking_timeout``). Every other argument is a driver option; an
unknown one is a :class:`~pevensie_cache.ConfigError`, not silently ignored.

Values are dogpile's serialized bytes, kept as base64 text. Multi-key calls
(``get_multi``, ``set_multi``, ``delete_multi``) are one batch each.
:meth:`PevensieBackend.clear` (``region.backend.clear()``) deletes the
resource type on the server: an invalidation every process sees, where
``region.invalidate()`` is local to its process.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dogpile.cache.api import NO_VALUE, BytesBackend, CacheMutex, SerializedReturnType

from pevensie_cache.contrib.shared import SharedCache, shared_cache
from pevensie_cache.contrib.values import bytes_to_text, text_to_bytes
from pevensie_cache.errors import ArgumentTypeError
from pevensie_cache.options import UnknownOptionError
from pevensie_cache.validation import check_lock_seconds, check_resource_type, check_ttl

__all__ = ["LeaseMutex", "PevensieBackend"]

DEFAULT_RESOURCE_TYPE = "dogpile"
"""The resource type of a backend whose arguments name none."""

DEFAULT_LOCK_LEASE = 30.0
"""Seconds a dogpile lock is held at most, unless released first."""

_OWN_ARGUMENTS = (
    "url",
    "resource_type",
    "ttl_seconds",
    "distributed_lock",
    "lock_lease",
    "lock_wait",
)
"""The backend's own arguments; every other one goes to the driver (or the cache)."""

_POLL_FIRST = 0.005
_POLL_MAX = 0.1


class PevensieBackend(BytesBackend):
    """A dogpile.cache backend: ``arguments={"url": ..., ...}`` (see the module docs)."""

    def __init__(self, arguments: Mapping[str, Any]) -> None:
        """Configure the backend from dogpile's ``arguments``; nothing connects until first use."""
        options = dict(arguments)  # never change the caller's mapping
        url = options.pop("url", None)
        self.resource_type: str = options.pop("resource_type", DEFAULT_RESOURCE_TYPE)
        check_resource_type(self.resource_type)
        self.ttl_seconds: int | None = options.pop("ttl_seconds", None)
        check_ttl(self.ttl_seconds)
        self.distributed_lock: bool = options.pop("distributed_lock", True)
        if not isinstance(self.distributed_lock, bool):
            raise ArgumentTypeError("distributed_lock must be True or False")
        self.lock_lease: float = check_lock_seconds(
            "lock_lease", options.pop("lock_lease", DEFAULT_LOCK_LEASE), zero=False
        )
        wait = options.pop("lock_wait", None)
        self.lock_wait: float = (
            2 * self.lock_lease
            if wait is None
            else check_lock_seconds("lock_wait", wait, zero=False)
        )
        try:
            self._shared: SharedCache = shared_cache(url, options, what='arguments["url"]')
        except UnknownOptionError as exc:
            raise exc.with_options("dogpile backend", _OWN_ARGUMENTS) from None

    def get_mutex(self, key: str) -> CacheMutex | None:
        """Return the lease lock of ``key``.

        With ``distributed_lock=False``, ``None``: dogpile then locks within the process.
        """
        if not self.distributed_lock:
            return None
        return LeaseMutex(self._shared, self.resource_type, key, self.lock_lease, self.lock_wait)

    def get_serialized(self, key: str) -> SerializedReturnType:
        """Return the bytes stored under ``key``, or ``NO_VALUE``."""
        text = self._shared.sync().get(self.resource_type, key, None)
        return NO_VALUE if text is None else text_to_bytes(text)

    def get_serialized_multi(self, keys: Iterable[str]) -> Sequence[SerializedReturnType]:
        """Return the bytes under each of ``keys`` (``NO_VALUE`` for a miss), in one batch."""
        keys = list(keys)
        if not keys:
            return []
        found = self._shared.sync().get_many(self.resource_type, keys)
        return [_bytes_or_no_value(found.get(key)) for key in keys]

    def set_serialized(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``."""
        self._shared.sync().set(self.resource_type, key, bytes_to_text(value), self.ttl_seconds)

    def set_serialized_multi(self, mapping: Mapping[str, bytes]) -> None:
        """Store every item of ``mapping`` in one batch."""
        if mapping:
            items = {key: bytes_to_text(value) for key, value in mapping.items()}
            self._shared.sync().set_many(self.resource_type, items, self.ttl_seconds)

    def delete(self, key: str) -> None:
        """Delete ``key``."""
        self._shared.sync().delete(self.resource_type, key)

    def delete_multi(self, keys: Iterable[str]) -> None:
        """Delete every key of ``keys`` in one batch."""
        keys = list(keys)
        if keys:
            self._shared.sync().delete_many(self.resource_type, keys)

    def clear(self) -> int:
        """Delete every key of this backend's resource type on the server; return how many.

        Every process sharing the server sees it, unlike ``region.invalidate()``.
        """
        return self._shared.sync().clear(self.resource_type)


class LeaseMutex(CacheMutex):
    """dogpile's creation lock for one key, as a server-side lease lock.

    dogpile keeps one mutex per key in a process and may release it from
    another thread than the one that acquired it (``async_creation_runner``),
    so the holder's token lives on the mutex, not in a thread.
    """

    def __init__(
        self, shared: SharedCache, resource_type: str, key: str, lease: float, wait: float
    ) -> None:
        """Bind the lock of ``key`` in ``resource_type``; ``lease`` and ``wait`` in seconds."""
        self._shared = shared
        self._resource_type = resource_type
        self._key = key
        self._lease = lease
        self._wait = wait
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"<LeaseMutex {self._resource_type!r} {self._key!r}>"

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock; with ``wait``, poll for it up to the wait bound. Return whether taken."""
        c = self._shared.sync()
        token = secrets.token_hex(16)
        deadline = time.monotonic() + self._wait
        pause = _POLL_FIRST
        while not c.acquire_lock(self._resource_type, self._key, token, self._lease):
            left = deadline - time.monotonic()
            if not wait or left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(2 * pause, _POLL_MAX)
        self._token = token
        return True

    def release(self) -> None:
        """Release the lock if this mutex's token still holds it (an expired lease: nothing)."""
        token, self._token = self._token, None
        if token is not None:
            self._shared.sync().release_lock(self._resource_type, self._key, token)

    def locked(self) -> bool:
        """Return whether anyone holds the lock (a probe: take it and give it back at once)."""
        if self._token is not None:
            return True
        c = self._shared.sync()
        probe = secrets.token_hex(16)
        if not c.acquire_lock(self._resource_type, self._key, probe, self._lease):
            return True
        c.release_lock(self._resource_type, self._key, probe)
        return False


def _bytes_or_no_value(text: str | None) -> SerializedReturnType:
    return NO_VALUE if text is None else text_to_bytes(text)
