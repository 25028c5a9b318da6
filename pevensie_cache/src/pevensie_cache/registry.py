"""The driver registry: what plugins registered, what failed, and lookups by name or scheme.

The host owns the registry. Plugins only call the ``register`` callback they are
handed; duplicate names are remembered as conflicts, never silently overridden.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pevensie_cache.driver import AsyncCacheDriver, CacheDriver
from pevensie_cache.errors import DriverConflict, DriverNotFound
from pevensie_cache.inspection import CacheInspector, InspectorFactory

__all__ = [
    "KNOWN_DRIVERS",
    "AsyncDriverFactory",
    "AsyncUrlDriverFactory",
    "DriverFactory",
    "DriverInfo",
    "DriverSpec",
    "PluginFailure",
    "Provider",
    "Register",
    "Registry",
    "UrlDriverFactory",
    "make_register",
]

DriverFactory = Callable[..., CacheDriver]
"""Builds a driver from keyword options: ``factory(**options)``."""

UrlDriverFactory = Callable[..., CacheDriver]
"""Builds a driver from a URL and keyword options: ``url_factory(url, **options)``."""

AsyncDriverFactory = Callable[..., AsyncCacheDriver]
"""Builds an async driver from keyword options: ``async_factory(**options)``."""

AsyncUrlDriverFactory = Callable[..., AsyncCacheDriver]
"""Builds an async driver from a URL and keyword options."""

KNOWN_DRIVERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "redis": (
        "pevensie-redis",
        (
            "redis",
            "rediss",
            "unix",
            "valkey",
            "valkeys",
            "redis+sentinel",
            "rediss+sentinel",
            "valkey+sentinel",
            "valkeys+sentinel",
        ),
    ),
}
"""Drivers published apart from the core: name -> (distribution, URL schemes), so that a
missing one's error says what to install."""

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*$")


class Register(Protocol):
    """The callback handed to ``register_cache_drivers`` hook implementations."""

    def __call__(
        self,
        name: str,
        factory: DriverFactory,
        *,
        url_factory: UrlDriverFactory | None = None,
        async_factory: AsyncDriverFactory | None = None,
        async_url_factory: AsyncUrlDriverFactory | None = None,
        schemes: Sequence[str] = (),
        description: str = "",
        inspector: InspectorFactory | None = None,
    ) -> None:
        """Register a driver named ``name``, built by ``factory(**options)``.

        ``schemes`` are the URL schemes (without ``://``) that select this driver
        in ``cache.from_url``; they need ``url_factory(url, **options)``.
        ``async_factory`` (and, with schemes, ``async_url_factory``) build the
        driver's native async face for ``cache.new_async``; without them the
        async face runs the sync driver in worker threads. ``inspector(driver)``
        returns a :class:`~pevensie_cache.inspection.CacheInspector` for a
        driver of this plugin (``None`` for any other), for operator tools such
        as the ``pevensie-cache`` command line. Registering must not import the
        driver's client library: do that inside the factories.
        """


@dataclass(frozen=True)
class Provider:
    """Where a registration came from: a plugin and the distribution that ships it."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        """Name the distribution and version, or the plugin when no distribution is known."""
        if self.distribution is None:
            return f"plugin {self.plugin!r}"
        return f"{self.distribution} {self.version or ''}".strip()


@dataclass(frozen=True)
class DriverSpec:
    """One registered driver."""

    name: str
    factory: DriverFactory
    url_factory: UrlDriverFactory | None
    schemes: tuple[str, ...]
    description: str
    provider: Provider
    async_factory: AsyncDriverFactory | None = None
    async_url_factory: AsyncUrlDriverFactory | None = None
    inspector: InspectorFactory | None = None


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be imported, validated or asked to register."""

    plugin: str
    provider: Provider
    reason: str


@dataclass(frozen=True)
class DriverInfo:
    """What ``cache.drivers()`` reports for one driver, or for a plugin that failed."""

    name: str
    distribution: str | None
    version: str | None
    schemes: tuple[str, ...]
    description: str
    loaded: bool
    error: str | None = None
    native_async: bool = False
    """Whether the driver has its own async face; if not, ``cache.new_async`` runs it in threads."""


@dataclass
class Registry:
    """Drivers by name and by URL scheme, plus conflicts and plugin failures."""

    by_name: dict[str, DriverSpec] = field(default_factory=dict)
    by_scheme: dict[str, DriverSpec] = field(default_factory=dict)
    conflicts: dict[str, list[DriverSpec]] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)

    def add(self, spec: DriverSpec) -> None:
        """Add ``spec``; a name or scheme taken by another spec becomes a conflict."""
        _add_keyed(self.by_name, self.conflicts, spec.name, spec)
        for scheme in spec.schemes:
            _add_keyed(self.by_scheme, self.conflicts, f"{scheme}://", spec)

    def lookup(self, name: str) -> DriverSpec:
        """Return the driver registered as ``name`` (in any letter case), or raise a clear error."""
        key = name if name in self.by_name or name in self.conflicts else name.lower()
        hint = self._name_hint(key) if key not in self.by_name else ""
        return self._find(key, self.by_name, f"no cache driver named {name!r}", hint)

    def lookup_scheme(self, scheme: str) -> DriverSpec:
        """Return the driver registered for the URL scheme ``scheme``."""
        key = f"{scheme.lower()}://"
        hint = ""
        if key not in self.by_scheme:
            for driver, (distribution, schemes) in KNOWN_DRIVERS.items():
                if key[:-3] in schemes:
                    hint = (
                        f": it is the {driver} driver's, not installed: pip install {distribution}"
                    )
        return self._find(key, self.by_scheme, f"no cache driver for URL scheme {key!r}", hint)

    def _name_hint(self, name: str) -> str:
        """Say what a driver name that is not registered probably meant."""
        owner = self.by_scheme.get(f"{name}://")
        if owner is not None:
            return (
                f": {name}:// is a URL scheme of the driver {owner.name!r}; "
                f"use driver={owner.name!r} (or cache.from_url('{name}://...'))"
            )
        for driver, (distribution, schemes) in KNOWN_DRIVERS.items():
            if name == driver or name in schemes:
                use = (
                    ""
                    if name == driver
                    else f"; {name}:// is a URL scheme of it: use driver={driver!r}"
                )
                return f": the {driver} driver is not installed: pip install {distribution}{use}"
        return ""

    def identify(self, driver: object) -> tuple[str, CacheInspector | None] | None:
        """Return the registered name of ``driver``'s plugin and its inspector, if any knows it.

        Each plugin's inspector factory is asked in turn; ``None`` when none
        recognises ``driver`` (a driver object of a plugin without one).
        """
        for spec in self.by_name.values():
            if spec.inspector is None:
                continue
            found = spec.inspector(driver)
            if found is not None:
                return spec.name, found
        return None

    def infos(self) -> list[DriverInfo]:
        """Describe every driver and every failed plugin, sorted by name."""
        infos = [_info(spec) for spec in self.by_name.values()]
        for name, specs in self.conflicts.items():
            if name.endswith("://"):
                continue
            infos.remove(_info(self.by_name[name]))
            infos.extend(_info(spec, error=_conflict_message(name, specs)) for spec in specs)
        infos.extend(
            DriverInfo(
                name=failure.plugin,
                distribution=failure.provider.distribution,
                version=failure.provider.version,
                schemes=(),
                description="",
                loaded=False,
                error=failure.reason,
            )
            for failure in self.failures
        )
        return sorted(infos, key=lambda info: (info.name, info.distribution or ""))

    def _find(
        self, key: str, table: dict[str, DriverSpec], missing: str, hint: str = ""
    ) -> DriverSpec:
        specs = self.conflicts.get(key)
        if specs is not None:
            raise DriverConflict(_conflict_message(key, specs))
        spec = table.get(key)
        if spec is None:
            suffix = "://" if key.endswith("://") else ""
            known = [
                name.removesuffix(suffix) for name in table if name.endswith("://") == bool(suffix)
            ]
            close = [
                f"{name}{suffix}"
                for name in difflib.get_close_matches(
                    key.lower().removesuffix(suffix), known, n=1, cutoff=0.6
                )
            ]
            if close and not hint:
                hint = f" (did you mean {close[0]!r}?)"
            raise DriverNotFound(f"{missing}{hint}.\n{self._inventory()}")
        return spec

    def _inventory(self) -> str:
        installed: list[str] = []
        failed: list[str] = []
        for info in self.infos():
            source = (
                f"{info.distribution} {info.version}" if info.distribution else "no distribution"
            )
            if info.loaded:
                schemes = ", ".join(f"{scheme}://" for scheme in info.schemes) or "no URL scheme"
                installed.append(f"{info.name} ({schemes}; {source})")
            else:
                failed.append(f"{info.name} from {source}: {info.error}")
        text = "Installed drivers:" + "".join(f"\n  {line}" for line in installed or ["none"])
        if failed:
            text += "\nNot available:\n" + "\n".join(f"  {line}" for line in failed)
        return text


def make_register(provider: Provider, sink: Callable[[DriverSpec], None]) -> Register:
    """Return a ``register`` callback that validates each registration and hands it to ``sink``."""

    def register(
        name: str,
        factory: DriverFactory,
        *,
        url_factory: UrlDriverFactory | None = None,
        async_factory: AsyncDriverFactory | None = None,
        async_url_factory: AsyncUrlDriverFactory | None = None,
        schemes: Sequence[str] = (),
        description: str = "",
        inspector: InspectorFactory | None = None,
    ) -> None:
        spec = _make_spec(name, factory, url_factory, schemes, description, provider)
        if inspector is not None and not callable(inspector):
            raise ValueError(f"driver {name!r}: inspector is not callable")
        spec = dataclasses.replace(spec, inspector=inspector)
        sink(_with_async(spec, async_factory, async_url_factory))

    return register


def _make_spec(
    name: object,
    factory: object,
    url_factory: object,
    schemes: object,
    description: object,
    provider: Provider,
) -> DriverSpec:
    """Validate one registration; a bad one is the plugin's failure, raised as ValueError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid driver name {name!r}: use lower-case letters, digits, _ or -")
    if not callable(factory):
        raise ValueError(f"driver {name!r}: factory is not callable")
    if url_factory is not None and not callable(url_factory):
        raise ValueError(f"driver {name!r}: url_factory is not callable")
    if isinstance(schemes, str) or not isinstance(schemes, Sequence):
        raise ValueError(f"driver {name!r}: schemes must be a sequence of strings")
    clean: list[str] = []
    for scheme in schemes:
        if not isinstance(scheme, str) or not _SCHEME.match(scheme.lower()):
            raise ValueError(f"driver {name!r}: invalid URL scheme {scheme!r}")
        clean.append(scheme.lower())
    if clean and url_factory is None:
        raise ValueError(f"driver {name!r}: URL schemes need a url_factory")
    if not isinstance(description, str):
        raise ValueError(f"driver {name!r}: description must be a string")
    return DriverSpec(
        name=name,
        factory=factory,
        url_factory=url_factory,
        schemes=tuple(clean),
        description=description.strip().splitlines()[0] if description.strip() else "",
        provider=provider,
    )


def _with_async(spec: DriverSpec, async_factory: object, async_url_factory: object) -> DriverSpec:
    """Add the async factories to ``spec``; a bad pair is the plugin's failure (ValueError)."""
    if async_factory is not None and not callable(async_factory):
        raise ValueError(f"driver {spec.name!r}: async_factory is not callable")
    if async_url_factory is not None and not callable(async_url_factory):
        raise ValueError(f"driver {spec.name!r}: async_url_factory is not callable")
    if async_url_factory is not None and async_factory is None:
        raise ValueError(f"driver {spec.name!r}: async_url_factory needs async_factory")
    if async_factory is not None and spec.schemes and async_url_factory is None:
        raise ValueError(
            f"driver {spec.name!r}: URL schemes with async_factory need async_url_factory"
        )
    return dataclasses.replace(
        spec,
        async_factory=async_factory,
        async_url_factory=async_url_factory,
    )


def _add_keyed(
    table: dict[str, DriverSpec],
    conflicts: dict[str, list[DriverSpec]],
    key: str,
    spec: DriverSpec,
) -> None:
    if key in conflicts:
        conflicts[key].append(spec)
    elif key in table:
        conflicts[key] = [table[key], spec]
    else:
        table[key] = spec


def _conflict_message(key: str, specs: list[DriverSpec]) -> str:
    what = f"URL scheme {key!r}" if key.endswith("://") else f"driver name {key!r}"
    sources = " and ".join(spec.provider.describe() for spec in specs)
    return (
        f"{what} is registered by more than one plugin: {sources}. "
        "Uninstall one of them, or pass a driver object to cache.new()."
    )


def _info(spec: DriverSpec, error: str | None = None) -> DriverInfo:
    return DriverInfo(
        name=spec.name,
        distribution=spec.provider.distribution,
        version=spec.provider.version,
        schemes=spec.schemes,
        description=spec.description,
        loaded=error is None,
        error=error,
        native_async=spec.async_factory is not None,
    )
