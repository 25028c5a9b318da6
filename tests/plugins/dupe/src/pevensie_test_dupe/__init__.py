"""A plugin that registers a name another plugin already took, and one of its own."""

from __future__ import annotations

from typing import Any

from pevensie_cache import Register, hookimpl


def _factory(**options: Any) -> Any:
    from pevensie_test_echo.driver import EchoDriver

    return EchoDriver(prefix="dupe/", **options)


@hookimpl
def register_cache_drivers(register: Register) -> None:
    register("echo", _factory, description="A second driver that claims the name echo.")
    register("dupe-only", _factory, description="A driver only this plugin provides.")
