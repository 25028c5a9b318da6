"""A plugin with a misspelt hook name: pluggy's check_pending catches it."""

from __future__ import annotations

from typing import Any

from pevensie_cache import hookimpl


@hookimpl
def register_cache_driver(register: Any) -> None:  # the hook is register_cache_drivers
    register("misspelt", lambda **options: object())
