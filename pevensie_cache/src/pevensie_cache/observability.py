"""``instrument(c)``: OpenTelemetry metrics (and optional spans) for one cache, sync or async.

>>> from pevensie_cache import cache, instrument
>>> c = instrument(cache.new(driver="memory"))  # doctest: +SKIP

Instrumenting changes the class of that one cache object (see
:mod:`pevensie_cache.instrumented_async` for why that costs an uninstrumented
cache nothing); :func:`uninstrument` changes it back. What is recorded, and
under which names, is described in :mod:`pevensie_cache.telemetry`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar, cast

from pevensie_cache.cache import identify_driver
from pevensie_cache.errors import ArgumentTypeError
from pevensie_cache.facade import PevensieCache
from pevensie_cache.facade_async import AsyncPevensieCache
from pevensie_cache.instrumented import InstrumentedPevensieCache
from pevensie_cache.instrumented_async import InstrumentedAsyncPevensieCache
from pevensie_cache.telemetry import Recorder, ResourceTypes

__all__ = ["instrument", "recorder_of", "uninstrument"]

_C = TypeVar("_C", PevensieCache, AsyncPevensieCache)

DEFAULT_MAX_RESOURCE_TYPES = 100
"""Resource types reported by name when no allow-list is given; later ones are ``other``."""


def instrument(
    c: _C,
    meter_provider: Any = None,
    tracer_provider: Any = None,
    *,
    resource_types: Iterable[str] | None = None,
    max_resource_types: int = DEFAULT_MAX_RESOURCE_TYPES,
    system: str | None = None,
) -> _C:
    """Record every operation of ``c`` with OpenTelemetry, and return ``c`` itself.

    Metrics go to ``meter_provider`` (default: the global one, which records
    nothing until an SDK is configured); spans are made only when a
    ``tracer_provider`` is given. ``resource_types`` is the allow-list of
    resource types reported by name (the rest are ``other``); without it, the
    first ``max_resource_types`` seen are. ``system`` overrides the
    ``db.system.name`` attribute (default: the driver's registered name,
    ``redis`` or ``memory``). Instrumenting a cache twice replaces the first
    instrumentation. Needs the ``[otel]`` extra (``opentelemetry-api``).
    """
    if isinstance(c, PevensieCache):
        base: type = InstrumentedPevensieCache
    elif isinstance(c, AsyncPevensieCache):
        base = InstrumentedAsyncPevensieCache
    else:
        raise ArgumentTypeError(
            f"instrument() takes a PevensieCache or AsyncPevensieCache, not {type(c).__name__}"
        )
    name = system if system is not None else identify_driver(c)[0]
    recorder = Recorder(
        name,
        ResourceTypes(resource_types, max_resource_types),
        meter_provider=meter_provider,
        tracer_provider=tracer_provider,
        driver=c.driver,
    )
    uninstrument(c)  # an earlier recorder stops reporting
    # One class per instrumented cache, holding its recorder: the facade's __slots__
    # leave no room on the instance, and a subclass adding no slot can be swapped in.
    own = type(base.__name__, (base,), {"__slots__": (), "_recorder": recorder})
    own.__module__ = base.__module__
    c.__class__ = own
    return c


def uninstrument(c: _C) -> _C:
    """Stop recording the operations of ``c`` (a no-op when it is not instrumented)."""
    plain: type
    recorder = recorder_of(c)
    if recorder is not None:
        recorder.active = False
    if isinstance(c, InstrumentedPevensieCache):
        plain = PevensieCache
    elif isinstance(c, InstrumentedAsyncPevensieCache):
        plain = AsyncPevensieCache
    else:
        return c
    cast(Any, c).__class__ = plain
    return c


def recorder_of(c: PevensieCache | AsyncPevensieCache) -> Recorder | None:
    """Return the recorder of an instrumented cache (its instruments), or ``None``."""
    if isinstance(c, (InstrumentedPevensieCache, InstrumentedAsyncPevensieCache)):
        return c._recorder
    return None
