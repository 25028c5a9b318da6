"""A third-party style driver plugin: a dict-backed driver with no batch methods.

Registering it imports nothing heavy; the driver module is imported by the factory.
"""

from __future__ import annotations

from typing import Any

from pevensie_cache import Register, hookimpl


def _factory(**options: Any) -> Any:
    from pevensie_test_echo.driver import EchoDriver

    return EchoDriver(**options)


def _from_url(url: str, **options: Any) -> Any:
    from pevensie_test_echo.driver import EchoDriver

    return EchoDriver(url=url, **options)


@hookimpl
def register_cache_drivers(register: Register) -> None:
    register(
        "echo",
        _factory,
        url_factory=_from_url,
        schemes=["echo"],
        description="Echo: a dict-backed test driver.\nSecond line is not shown.",
    )
