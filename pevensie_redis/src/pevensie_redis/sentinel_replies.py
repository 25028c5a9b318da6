"""What the sentinels answer, read: a primary's address, the replicas fit to read from, errors.

The replies of ``SENTINEL MASTER`` and ``SENTINEL REPLICAS`` (a flat list of
names and values on RESP2, a map on RESP3), and the errors the Sentinel
locator raises when no sentinel names a primary. The same on both faces: the
locator that asks (:mod:`pevensie_redis.sentinel_async` and its sync twin) does
the I/O; this module does none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisPyConnectionError

__all__ = [
    "NoPrimary",
    "acl_refusal",
    "closed_error",
    "no_primary",
    "pairs",
    "primary_of",
    "replicas_of",
]

_DOWN = frozenset({"s_down", "o_down", "disconnected"})


class NoPrimary(RedisPyConnectionError):
    """No sentinel named a primary for the service (each sentinel's problem in the message)."""


def primary_of(state: Mapping[str, Any] | None, service_name: str) -> tuple[str, int] | str:
    """Read one sentinel's state of ``service_name``: the primary's address, or what is wrong."""
    if not state:
        return f"does not monitor {service_name!r}"
    flags = set(_text(state.get("flags", "")).split(","))
    if "master" not in flags or flags & _DOWN:
        return "reports the primary down"
    return _text(state["ip"]), int(state["port"])


def replicas_of(reply: Any) -> list[tuple[str, int]]:
    """Read one sentinel's ``SENTINEL REPLICAS`` reply: the replicas fit to read from.

    A replica flagged ``s_down``, ``o_down`` or ``disconnected``, or whose link
    to the primary is not ``ok`` (cut, or still syncing), is left out.
    """
    found: list[tuple[str, int]] = []
    for item in reply or ():
        state = pairs(item)
        flags = set(state.get("flags", "").split(","))
        if flags & _DOWN or state.get("master-link-status") != "ok":
            continue
        if state.get("ip") and state.get("port", "").isdigit():
            found.append((state["ip"], int(state["port"])))
    return found


def no_primary(service_name: str, problems: Sequence[str], refused: int) -> Exception:
    """Return the error when no sentinel named a primary (the credentials, when all refused)."""
    if refused and refused == len(problems):
        return AuthenticationError(
            "every sentinel refused the sentinel credentials (sentinel_username / "
            "sentinel_password; the data nodes' username / password are separate)"
        )
    return NoPrimary(f"no sentinel names a primary for {service_name!r} ({'; '.join(problems)})")


def acl_refusal(subcommand: str, reply: Exception | None) -> str:
    """Say that the sentinel user may not run ``SENTINEL <subcommand>`` (the server's words too)."""
    said = "" if reply is None else f" ({reply})"
    return (
        f"the sentinel user may not run SENTINEL {subcommand}{said}: its ACL on the sentinels "
        f"needs +sentinel|{subcommand.lower()} (sentinel_username / sentinel_password)"
    )


def closed_error() -> RedisPyConnectionError:
    """Return the error for a question asked after the sentinels' pipes were closed."""
    return RedisPyConnectionError("the connections to the sentinels were closed (disconnected)")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def pairs(reply: Any) -> dict[str, Any]:
    """Read one instance's state: a flat list of names and values (RESP2), or a map (RESP3)."""
    if isinstance(reply, Mapping):
        return {_text(name): _flat(value) for name, value in reply.items()}
    items = [_text(item) for item in reply or ()]
    return dict(zip(items[::2], items[1::2], strict=False))


def _flat(value: Any) -> str:
    if isinstance(value, (set, frozenset, list, tuple)):
        return ",".join(sorted(_text(item) for item in value))
    return _text(value)
