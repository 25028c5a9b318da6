"""A plugin that registers an invalid driver name."""

from __future__ import annotations

from pevensie_cache import Register, hookimpl


@hookimpl
def register_cache_drivers(register: Register) -> None:
    register("Not A Name!", lambda **options: object())
