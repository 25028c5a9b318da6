"""A plugin whose hook raises while registering, after registering one driver."""

from __future__ import annotations

from typing import Any

from pevensie_cache import Register, hookimpl


@hookimpl
def register_cache_drivers(register: Register) -> None:
    register("half-registered", lambda **options: object(), description="never visible")
    raise RuntimeError("the plugin blew up while registering")


def unused(**options: Any) -> None:
    return None
