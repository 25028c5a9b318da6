"""Hook specifications of the ``pevensie`` plugin system.

A plugin is a module named by an entry point in the group ``pevensie.drivers``;
it holds functions marked with :data:`hookimpl`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pevensie_cache.registry import Register

__all__ = ["hookimpl", "hookspec", "register_cache_drivers"]

PROJECT_NAME = "pevensie"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks the hook specifications below (for this module only)."""
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin's ``register_cache_drivers`` function: ``@hookimpl``."""


@hookspec
def register_cache_drivers(register: Register) -> None:
    """Register cache drivers by calling ``register(name, factory, ...)`` once per driver."""
