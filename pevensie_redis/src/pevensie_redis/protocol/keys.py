"""The key layout: where ``(resource_type, key)`` is stored, the one place that says so.

Keys are ``<resource_type>:<key>`` in UTF-8, the layout the Gleam driver uses,
so both can share a database. With Cluster's ``cluster_hash_tag`` they are
``{<resource_type>}:<key>``: the braces make every key of a resource type hash
to one slot. A lease lock of a key is ``:lock:`` before that key's stored name.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "escape_glob",
    "full_key",
    "key_maker",
    "lock_key",
    "prefix",
    "scan_pattern",
    "tagged_key",
]


def full_key(resource_type: str, key: str) -> bytes:
    """Return the stored key for ``(resource_type, key)``: ``<resource_type>:<key>`` in UTF-8."""
    return f"{resource_type}:{key}".encode()


def tagged_key(resource_type: str, key: str) -> bytes:
    """Return the hash-tagged stored key (``cluster_hash_tag``): ``{<resource_type>}:<key>``."""
    return f"{{{resource_type}}}:{key}".encode()


def key_maker(*, hash_tag: bool = False) -> Callable[[str, str], bytes]:
    """Return :func:`tagged_key` with ``hash_tag``, else :func:`full_key` (bind it once)."""
    return tagged_key if hash_tag else full_key


def prefix(resource_type: str, *, hash_tag: bool = False) -> str:
    """Return what every stored key of ``resource_type`` begins with: ``<type>:``/``{<type>}:``."""
    return f"{{{resource_type}}}:" if hash_tag else f"{resource_type}:"


def lock_key(resource_type: str, key: str, *, hash_tag: bool = False) -> bytes:
    """Return the key of the lease lock of ``(resource_type, key)``: ``:lock:<stored key>``.

    It starts with ``:``, which no key written through the API can (a resource
    type is never empty), so a lock can never collide with a cached value, and
    ``clear`` (which matches ``<type>:*``) never deletes a lock. Hash-tagged
    like its key, so both live in one Cluster slot.
    """
    return b":lock:" + (tagged_key if hash_tag else full_key)(resource_type, key)


def escape_glob(text: str) -> str:
    r"""Escape the glob characters of ``text`` (``*?[]\``) for a ``SCAN ... MATCH`` pattern."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def scan_pattern(resource_type: str, *, hash_tag: bool = False) -> str:
    """Return the ``SCAN ... MATCH`` pattern matching the stored keys of ``resource_type`` only."""
    return escape_glob(prefix(resource_type, hash_tag=hash_tag)) + "*"
