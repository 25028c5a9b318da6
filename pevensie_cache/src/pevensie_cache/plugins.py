"""Plugin loading: finds driver plugins through the ``pevensie.drivers`` entry points.

Nothing is loaded at import time. The first lookup loads every plugin once, each
in isolation, and caches the registry: a plugin that fails to import, fails hook
validation or raises while registering is recorded and shown by
``cache.drivers()`` and in ``DriverNotFound``, and breaks no other driver.
"""

from __future__ import annotations

import importlib
import logging
import threading
from importlib import metadata
from importlib.metadata import EntryPoint, entry_points

import pluggy

from pevensie_cache import hookspecs
from pevensie_cache.errors import raised_by_signal_handler
from pevensie_cache.registry import (
    DriverSpec,
    PluginFailure,
    Provider,
    Registry,
    make_register,
)

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "get_registry",
    "register_plugin",
    "reset",
]

ENTRY_POINT_GROUP = "pevensie.drivers"

DISTRIBUTION = "pevensie-cache"
"""The distribution of the core, which ships the built-in drivers."""

BUILTIN_PLUGINS = {"memory": "pevensie_cache.memory"}
"""The built-in driver plugins by name, loaded by import path before any entry point."""

logger = logging.getLogger("pevensie_cache.plugins")

_lock = threading.Lock()
_registry: Registry | None = None
_extra_plugins: list[tuple[object, str]] = []


def get_registry() -> Registry:
    """Return the registry, loading the plugins on first use."""
    registry = _registry
    if registry is not None:
        return registry
    with _lock:
        registry = _registry
        if registry is None:
            registry = _load()
            _set_registry(registry)
        return registry


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin object (a module or class with ``@hookimpl`` functions) by hand.

    For applications and tests that provide a driver without packaging it. The
    registry is rebuilt on next use.
    """
    with _lock:
        label = name or str(getattr(plugin, "__name__", type(plugin).__name__))
        _extra_plugins.append((plugin, label))
        _set_registry(None)


def reset() -> None:
    """Forget the loaded registry and hand-registered plugins; the next lookup reloads."""
    with _lock:
        _extra_plugins.clear()
        _set_registry(None)


def _set_registry(registry: Registry | None) -> None:
    global _registry
    _registry = registry


def _load() -> Registry:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    registry = Registry()
    candidates: list[tuple[object, Provider]] = []
    # The built-in drivers load by import path, so they work from a bare source tree
    # (no installed metadata); their entry points, when installed, name the same modules.
    for name, module in BUILTIN_PLUGINS.items():
        provider = Provider(plugin=name, distribution=DISTRIBUTION, version=_own_version())
        try:
            candidates.append((importlib.import_module(module), provider))
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the plugin's: the caller's own, unchanged
            _fail(registry, provider, f"import failed: {type(exc).__name__}: {exc}")
    builtin = set(BUILTIN_PLUGINS.values())
    for entry_point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=_entry_point_key):
        if entry_point.value in builtin:
            continue
        provider = _provider(entry_point)
        try:
            candidates.append((entry_point.load(), provider))
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the plugin's: the caller's own, unchanged
            _fail(registry, provider, f"import failed: {type(exc).__name__}: {exc}")
    candidates.extend((plugin, Provider(plugin=name)) for plugin, name in _extra_plugins)

    for plugin, provider in candidates:
        try:
            manager.register(plugin, name=f"{provider.plugin}@{provider.distribution}")
            manager.check_pending()
        except Exception as exc:
            if raised_by_signal_handler(exc):
                raise  # not the plugin's: the caller's own, unchanged
            _unregister(manager, plugin)
            # pluggy names the module (and its path) after " in plugin": the hook is enough.
            reason = str(exc).split(" in plugin ", 1)[0]
            _fail(registry, provider, f"invalid plugin: {type(exc).__name__}: {reason}")
            continue
        for impl in manager.hook.register_cache_drivers.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            staged: list[DriverSpec] = []
            try:
                impl.function(register=make_register(provider, staged.append))
            except Exception as exc:
                if raised_by_signal_handler(exc):
                    raise  # not the plugin's: the caller's own, unchanged
                _fail(registry, provider, f"registration failed: {type(exc).__name__}: {exc}")
                continue
            for spec in staged:
                registry.add(spec)
    return registry


def _own_version() -> str | None:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # a bare source tree
        return None


def _entry_point_key(entry_point: EntryPoint) -> tuple[str, str]:
    return (entry_point.name, entry_point.value)


def _provider(entry_point: EntryPoint) -> Provider:
    dist = entry_point.dist
    if dist is None:
        return Provider(plugin=entry_point.name)
    return Provider(plugin=entry_point.name, distribution=dist.name, version=dist.version)


def _fail(registry: Registry, provider: Provider, reason: str) -> None:
    logger.warning("pevensie plugin %s from %s: %s", provider.plugin, provider.describe(), reason)
    registry.failures.append(
        PluginFailure(plugin=provider.plugin, provider=provider, reason=reason)
    )


def _unregister(manager: pluggy.PluginManager, plugin: object) -> None:
    if manager.is_registered(plugin):
        manager.unregister(plugin)
