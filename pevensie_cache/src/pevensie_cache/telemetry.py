"""OpenTelemetry instruments for an instrumented cache: what is recorded and under which names.

:func:`pevensie_cache.instrument` builds one :class:`Recorder` per cache; the
instrumented cache classes (:mod:`pevensie_cache.instrumented_async` and its
generated sync twin) call it around every operation. Nothing here runs for a
cache that was never instrumented, and ``opentelemetry-api`` (the ``[otel]``
extra) is imported only when a recorder is built.

Names
-----

There are no semantic conventions for caches. The database client conventions
define ``db.client.operation.duration`` for the *commands* a client sends; a
cache operation is not one command (``get_many`` is one ``MGET`` per chunk,
``clear`` pages of ``SCAN`` and ``UNLINK``, ``get_or_set`` a read, a load and
a write), and redis-py's own instrumentation already records the commands
under that name, so the cache's metrics live in their own namespace and reuse
the conventions' *attribute* names where one means the same thing:

==============================  =====================================================
``db.system.name``              the driver's system: ``redis`` (the conventions'
                                value, also for Valkey), ``memory``, or the name a
                                third-party driver registered
``db.operation.name``           the cache operation as the application calls it:
                                ``get``, ``set``, ``get_many``, ``get_or_set``, ...
``error.type``                  on failures only: the exception's fully qualified
                                class name (``pevensie_redis.errors.RedisTimeoutError``)
``pevensie.cache.resource_type`` the resource type, bounded (see
                                :class:`ResourceTypes`): unknown ones are ``other``
``pevensie.cache.outcome``      ``hit``, ``miss``, ``ok`` or ``error``
==============================  =====================================================

Metrics: ``pevensie.cache.operations`` (counter of calls), ``pevensie.cache.
operation.duration`` (histogram, seconds), ``pevensie.cache.lookups`` (counter
of keys read, outcome ``hit`` or ``miss``: a ``get_many`` of 100 keys is one
operation and 100 lookups, so the hit ratio per resource type is
``lookups{outcome="hit"} / lookups``), and, for a driver with a near cache:

==============================================  ===========================================
``pevensie.cache.near_cache.lookups``           observable counter, ``{key}``: reads answered
                                                in this process (outcome ``hit``) or sent to
                                                the server (``miss``)
``pevensie.cache.near_cache.invalidations``     observable counter, ``{key}``: keys the server
                                                said changed
``pevensie.cache.near_cache.flushes``           observable counter, ``{flush}``: times the
                                                whole store was emptied (the invalidation
                                                channel broke, ``FLUSHDB``)
``pevensie.cache.near_cache.evictions``         observable counter, ``{entry}``: entries
                                                dropped to stay within the store's bounds
``pevensie.cache.near_cache.entries``           observable up-down counter, ``{entry}``:
                                                entries held now
``pevensie.cache.near_cache.memory.usage``      observable up-down counter, ``By``: the
                                                memory the entries take now, as the store
                                                counts it against its bound
==============================================  ===========================================

A driver has a near cache when it offers ``near_cache_stats()`` returning an
object with cumulative ``hits`` and ``misses`` (:class:`NearCacheStats`; the
Redis driver's ``near_cache=True`` does), and ``None`` while it has none
(disconnected). The other figures are reported when that object has them
(``invalidations``, ``flushes``, ``evictions``, ``entries``, ``bytes``: ints).
The instruments read it when the metrics are collected, so reads pay nothing
for them. A cache built with ``fail_open=True``
counts each failure it served as a miss or no-op in
``pevensie.cache.fail_open.errors`` (counter, attributes ``db.operation.name``,
the resource type and ``error.type``).

For ``get_or_set`` with freshness options (see
:mod:`pevensie_cache.freshness_async`): ``pevensie.cache.stale_reads``
(counter, ``{key}``: lookups answered with a value past its TTL, inside its
stale window; they also count as ``hit`` lookups) and
``pevensie.cache.refreshes`` (counter, ``{refresh}``: background refreshes by
``pevensie.cache.refresh.trigger``, ``stale`` or ``early``, and outcome
``ok`` or ``error``, with ``error.type`` the loader's exception: a refresh
that failed while ``stale_on_error`` kept the stale value served).

Spans, only with a tracer provider:
one CLIENT span per operation named ``"<operation> <resource type>"``, status
ERROR with the exception recorded on failure.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

from pevensie_cache import forks
from pevensie_cache.errors import ConfigError

__all__ = [
    "ATTR_ERROR_TYPE",
    "ATTR_OPERATION",
    "ATTR_OUTCOME",
    "ATTR_RESOURCE_TYPE",
    "ATTR_SYSTEM",
    "ATTR_TRIGGER",
    "DURATION_BUCKETS",
    "ERROR",
    "FIRST_LOOKUP",
    "HIT",
    "METER_NAME",
    "METRIC_DURATION",
    "METRIC_FAIL_OPEN",
    "METRIC_LOOKUPS",
    "METRIC_NEAR_CACHE_BYTES",
    "METRIC_NEAR_CACHE_ENTRIES",
    "METRIC_NEAR_CACHE_EVICTIONS",
    "METRIC_NEAR_CACHE_FLUSHES",
    "METRIC_NEAR_CACHE_INVALIDATIONS",
    "METRIC_NEAR_CACHE_LOOKUPS",
    "METRIC_OPERATIONS",
    "METRIC_REFRESHES",
    "METRIC_STALE_READS",
    "MISS",
    "OK",
    "OTHER",
    "SERVED_OPEN",
    "NearCacheStats",
    "Operation",
    "Recorder",
    "ResourceTypes",
]

SERVED_OPEN: ContextVar[bool] = ContextVar("pevensie_served_open", default=False)
"""Set when a failure was served open in this context: an instrumented ``add`` that
returned ``False`` then found no key (a miss), rather than one already there (a hit)."""

ATTR_SYSTEM = "db.system.name"
ATTR_OPERATION = "db.operation.name"
ATTR_ERROR_TYPE = "error.type"
ATTR_RESOURCE_TYPE = "pevensie.cache.resource_type"
ATTR_OUTCOME = "pevensie.cache.outcome"
ATTR_TRIGGER = "pevensie.cache.refresh.trigger"

METER_NAME = "pevensie_cache"
"""The instrumentation scope of the meter and the tracer."""
METRIC_OPERATIONS = "pevensie.cache.operations"
METRIC_DURATION = "pevensie.cache.operation.duration"
METRIC_LOOKUPS = "pevensie.cache.lookups"
METRIC_NEAR_CACHE_LOOKUPS = "pevensie.cache.near_cache.lookups"
METRIC_FAIL_OPEN = "pevensie.cache.fail_open.errors"
METRIC_REFRESHES = "pevensie.cache.refreshes"
METRIC_STALE_READS = "pevensie.cache.stale_reads"
METRIC_NEAR_CACHE_INVALIDATIONS = "pevensie.cache.near_cache.invalidations"
METRIC_NEAR_CACHE_FLUSHES = "pevensie.cache.near_cache.flushes"
METRIC_NEAR_CACHE_EVICTIONS = "pevensie.cache.near_cache.evictions"
METRIC_NEAR_CACHE_ENTRIES = "pevensie.cache.near_cache.entries"
METRIC_NEAR_CACHE_BYTES = "pevensie.cache.near_cache.memory.usage"

# (instrument, stats attribute, unit, description, kind) of the near cache's figures
# besides its lookups; an attribute a driver's stats lack is not reported.
_NEAR_CACHE_FIGURES = (
    (
        METRIC_NEAR_CACHE_INVALIDATIONS,
        "invalidations",
        "{key}",
        "Keys the server said changed, dropped from the near cache.",
        "counter",
    ),
    (
        METRIC_NEAR_CACHE_FLUSHES,
        "flushes",
        "{flush}",
        "Times the near cache was emptied whole (its invalidation channel broke, FLUSHDB).",
        "counter",
    ),
    (
        METRIC_NEAR_CACHE_EVICTIONS,
        "evictions",
        "{entry}",
        "Entries the near cache dropped to stay within its bounds.",
        "counter",
    ),
    (
        METRIC_NEAR_CACHE_ENTRIES,
        "entries",
        "{entry}",
        "Entries the near cache holds.",
        "updown",
    ),
    (
        METRIC_NEAR_CACHE_BYTES,
        "bytes",
        "By",
        "Memory the near cache's entries take, as counted against its bound.",
        "updown",
    ),
)

HIT = "hit"
MISS = "miss"
OK = "ok"
ERROR = "error"
OTHER = "other"
"""The label of a resource type outside the allow-list or beyond the cap."""

DURATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Histogram boundaries (seconds), advised to the SDK: a cache answers in 100 µs to 10 ms."""

FIRST_LOOKUP: ContextVar[list[bool] | None] = ContextVar("pevensie_first_lookup", default=None)
"""Set by an instrumented ``get_or_set``: its first ``get`` appends whether it hit."""


class NearCacheStats(Protocol):
    """What a driver's ``near_cache_stats()`` returns: counts since it connected.

    ``hits`` and ``misses`` are required; ``invalidations``, ``flushes``,
    ``evictions`` (counts since it connected), ``entries`` and ``bytes``
    (held now) are reported when present.
    """

    @property
    def hits(self) -> int:
        """Reads answered by the near cache."""

    @property
    def misses(self) -> int:
        """Reads the near cache sent to the server."""


class ResourceTypes:
    """Bounds the ``resource_type`` attribute: an allow-list, or the first ``cap`` seen.

    A careless resource type (one per user, per request) would otherwise make
    one time series each in the metrics backend. Anything outside the
    allow-list, beyond the cap, or not a ``str`` is reported as ``other``.
    """

    def __init__(self, allow: Iterable[str] | None = None, cap: int = 100) -> None:
        """Allow the names in ``allow`` only; without a list, the first ``cap`` names seen."""
        if allow is not None and (isinstance(allow, str) or not isinstance(allow, Iterable)):
            raise ConfigError("resource_types must be an iterable of resource type names")
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
            raise ConfigError(f"max_resource_types must be an int >= 0, got {cap!r}")
        self._fixed = allow is not None
        self._known: set[str] = set(allow) if allow is not None else set()
        self._cap = cap
        self._lock = threading.Lock()
        forks.renew_after_fork(self)

    def _forked(self) -> None:
        """In a forked child: a new lock (another thread may have held it)."""
        self._lock = threading.Lock()

    def label(self, resource_type: object) -> str:
        """Return the attribute value for ``resource_type``."""
        if type(resource_type) is not str:
            return OTHER
        if resource_type in self._known:
            return resource_type
        if self._fixed:
            return OTHER
        with self._lock:
            if len(self._known) < self._cap:
                self._known.add(resource_type)
                return resource_type
        return OTHER


class Recorder:
    """The instruments of one instrumented cache, and the attribute sets they are recorded with."""

    def __init__(
        self,
        system: str,
        resource_types: ResourceTypes,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        driver: object = None,
    ) -> None:
        """Create the instruments on ``meter_provider`` (default: the global one).

        ``driver`` is asked for its near cache's counters when metrics are
        collected, if it has a near cache.
        """
        try:
            from opentelemetry import metrics
        except ImportError:
            raise ConfigError(
                "instrument() needs the OpenTelemetry API: pip install 'pevensie-cache[otel]'"
            ) from None
        provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
        meter = provider.get_meter(METER_NAME, _release())
        self.system = system
        self.resource_types = resource_types
        self.operations = meter.create_counter(
            METRIC_OPERATIONS, unit="{operation}", description="Cache operations by outcome."
        )
        self.duration = meter.create_histogram(
            METRIC_DURATION,
            unit="s",
            description="Duration of cache operations.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.lookups = meter.create_counter(
            METRIC_LOOKUPS, unit="{key}", description="Keys read, by outcome hit or miss."
        )
        self.fail_open = meter.create_counter(
            METRIC_FAIL_OPEN,
            unit="{error}",
            description="Store failures fail_open=True served as a miss or a no-op.",
        )
        self.stale_reads = meter.create_counter(
            METRIC_STALE_READS,
            unit="{key}",
            description="Lookups answered with a stale value, refreshed in the background.",
        )
        self.refreshes = meter.create_counter(
            METRIC_REFRESHES,
            unit="{refresh}",
            description="Background refreshes of cache-aside entries, by trigger and outcome.",
        )
        self.active = True
        """Whether it still reports (``uninstrument`` and a new ``instrument`` stop it)."""
        near_stats = _near_cache_stats_of(driver)
        if near_stats is not None:
            self._observe_near_cache(meter, near_stats)
        self.tracer: Any = None
        if tracer_provider is not None:
            self.tracer = tracer_provider.get_tracer(METER_NAME, _release())
        self._attributes: dict[tuple[str, str, str, str | None], dict[str, str]] = {}

    def start(self, operation: str, resource_type: object) -> Operation:
        """Begin timing ``operation`` (and its span, with a tracer); finish or fail it after."""
        return Operation(self, operation, self.resource_types.label(resource_type))

    def attributes(
        self, operation: str, label: str, outcome: str, error_type: str | None = None
    ) -> dict[str, str]:
        """Return the (cached, shared) attribute set of one kind of recording."""
        key = (operation, label, outcome, error_type)
        found = self._attributes.get(key)
        if found is None:
            found = {
                ATTR_SYSTEM: self.system,
                ATTR_OPERATION: operation,
                ATTR_RESOURCE_TYPE: label,
                ATTR_OUTCOME: outcome,
            }
            if error_type is not None:
                found[ATTR_ERROR_TYPE] = error_type
            if len(self._attributes) < 4096:  # bounded; errors' types are few
                self._attributes[key] = found
        return found

    def refreshed(self, label: str, trigger: str, error: BaseException | None) -> None:
        """Count one background refresh of ``trigger`` (``stale``, ``early``) and its outcome."""
        attributes = {ATTR_SYSTEM: self.system, ATTR_RESOURCE_TYPE: label, ATTR_TRIGGER: trigger}
        if error is None:
            attributes[ATTR_OUTCOME] = OK
        else:
            kind = type(error)
            attributes[ATTR_OUTCOME] = ERROR
            attributes[ATTR_ERROR_TYPE] = f"{kind.__module__}.{kind.__qualname__}"
        self.refreshes.add(1, attributes)

    def looked_up(self, operation: str, label: str, hits: int, misses: int) -> None:
        """Count keys read by ``operation``: ``hits`` found, ``misses`` not."""
        if hits:
            self.lookups.add(hits, self.attributes(operation, label, HIT))
        if misses:
            self.lookups.add(misses, self.attributes(operation, label, MISS))

    def failed_open(self, operation: str, resource_type: object, exc: BaseException) -> None:
        """Count one failure a ``fail_open`` cache served as a miss or a no-op."""
        SERVED_OPEN.set(True)
        kind = type(exc)
        attributes = {
            ATTR_SYSTEM: self.system,
            ATTR_OPERATION: operation,
            ATTR_ERROR_TYPE: f"{kind.__module__}.{kind.__qualname__}",
        }
        if resource_type:  # connect has none
            attributes[ATTR_RESOURCE_TYPE] = self.resource_types.label(resource_type)
        self.fail_open.add(1, attributes)

    def _observe_near_cache(self, meter: Any, read: Callable[[], NearCacheStats | None]) -> None:
        """Create the near cache's instruments, each reading ``read()`` when collected."""
        from opentelemetry.metrics import Observation

        system = {ATTR_SYSTEM: self.system}
        hit = {**system, ATTR_OUTCOME: HIT}
        miss = {**system, ATTR_OUTCOME: MISS}

        def current() -> NearCacheStats | None:
            # None: not connected, or the cache is gone or uninstrumented.
            return read() if self.active else None

        def lookups(options: Any) -> Iterable[Any]:
            stats = current()
            if stats is None:
                return []
            return [Observation(stats.hits, hit), Observation(stats.misses, miss)]

        meter.create_observable_counter(
            METRIC_NEAR_CACHE_LOOKUPS,
            callbacks=[lookups],
            unit="{key}",
            description="Reads the near cache answered (hit) or sent to the server (miss).",
        )

        def figure(attribute: str) -> Callable[[Any], Iterable[Any]]:
            def observe(options: Any) -> Iterable[Any]:
                value = getattr(current(), attribute, None)
                if not isinstance(value, int) or isinstance(value, bool):
                    return []  # no near cache now, or a driver whose stats lack this figure
                return [Observation(value, system)]

            return observe

        for name, attribute, unit, description, kind in _NEAR_CACHE_FIGURES:
            create = (
                meter.create_observable_counter
                if kind == "counter"
                else meter.create_observable_up_down_counter
            )
            create(name, callbacks=[figure(attribute)], unit=unit, description=description)


def _near_cache_stats_of(driver: object) -> Callable[[], NearCacheStats | None] | None:
    """Return a reader of ``driver``'s near cache counters (held weakly), or ``None``."""
    driver = getattr(driver, "sync_driver", driver)  # a sync driver run in threads
    method: Callable[[], NearCacheStats | None] | None = getattr(driver, "near_cache_stats", None)
    if not callable(method):
        return None
    try:
        weak = weakref.WeakMethod(method)
    except TypeError:  # not a bound method of a weakly referable object
        return method

    def read() -> NearCacheStats | None:
        bound = weak()
        return None if bound is None else bound()

    return read


class Operation:
    """One timed operation: finish it with its outcome, or fail it with the exception."""

    __slots__ = ("_context_token", "_label", "_operation", "_recorder", "_span", "_start")

    def __init__(self, recorder: Recorder, operation: str, label: str) -> None:
        """Start the clock (and the span, when the recorder has a tracer)."""
        self._recorder = recorder
        self._operation = operation
        self._label = label
        self._span: Any = None
        self._context_token: Any = None
        if recorder.tracer is not None:
            self._begin_span()
        self._start = time.perf_counter()

    @property
    def label(self) -> str:
        """The bounded resource type label of this operation."""
        return self._label

    def finish(self, outcome: str) -> None:
        """Record the operation as ended with ``outcome`` (``hit``, ``miss`` or ``ok``)."""
        elapsed = time.perf_counter() - self._start
        recorder = self._recorder
        attributes = recorder.attributes(self._operation, self._label, outcome)
        recorder.operations.add(1, attributes)
        recorder.duration.record(elapsed, attributes)
        if self._span is not None:
            self._end_span(outcome, None)

    def fail(self, exc: BaseException) -> None:
        """Record the operation as failed with ``exc``."""
        elapsed = time.perf_counter() - self._start
        recorder = self._recorder
        kind = type(exc)
        error_type = f"{kind.__module__}.{kind.__qualname__}"
        attributes = recorder.attributes(self._operation, self._label, ERROR, error_type)
        recorder.operations.add(1, attributes)
        recorder.duration.record(elapsed, attributes)
        if self._span is not None:
            self._end_span(ERROR, exc)

    def _begin_span(self) -> None:
        from opentelemetry import context, trace

        recorder = self._recorder
        self._span = recorder.tracer.start_span(
            f"{self._operation} {self._label}",
            kind=trace.SpanKind.CLIENT,
            attributes={
                ATTR_SYSTEM: recorder.system,
                ATTR_OPERATION: self._operation,
                ATTR_RESOURCE_TYPE: self._label,
            },
        )
        # Current while the operation runs, so the driver's own spans nest under it.
        self._context_token = context.attach(trace.set_span_in_context(self._span))

    def _end_span(self, outcome: str, exc: BaseException | None) -> None:
        from opentelemetry import context, trace

        span = self._span
        span.set_attribute(ATTR_OUTCOME, outcome)
        if exc is not None:
            kind = type(exc)
            span.set_attribute(ATTR_ERROR_TYPE, f"{kind.__module__}.{kind.__qualname__}")
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, kind.__name__))
        try:
            context.detach(self._context_token)
        finally:
            span.end()


def _release() -> str:
    """Return the installed release of pevensie-cache, which names the meter and tracer.

    Read from the distribution's metadata, not from ``pevensie_cache.__version__``:
    the package imports this module, so importing the package back would close a cycle.
    """
    try:
        return version("pevensie-cache")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"
