"""Freshness controls and tags for cache-aside, async face.

This module is the source of the sync face's too: ``freshness.py`` is
generated from it by ``.ci/unasync.py``. Edit this file, then run
``nox -s generate``.

What it adds to ``get_or_set`` (and so to resources and ``@cached``):

- ``stale_seconds=N``: the entry is kept ``N`` seconds past ``ttl_seconds``
  (server TTL ``ttl + N``). A read in that window returns the old value at
  once, and one caller per key refreshes it in the background: one per process
  (:class:`~pevensie_cache.primitives_async.Background` runs one refresh per
  key), one across processes (the refresh takes the key's lease lock, and
  does nothing if another process holds it; it reads the entry again first, so
  a refresh that another one overtook calls no loader).
- ``early_recompute=True`` (or a float ``beta``): probabilistic early
  expiration (XFetch): a hit refreshes the entry in the background, before it
  expires, with probability ``exp(-left / (compute * beta))``, where ``left``
  is the time until expiry and ``compute`` the loader's measured time. Hits
  never wait for it.
- ``stale_on_error=True``: a background refresh whose loader raises keeps the
  stale value servable (the rest of its window) and logs and counts the error;
  without it, the failed refresh deletes the stale entry (unless another
  value was stored while its loader ran), so the next read loads in the
  foreground and its caller gets the loader's error, as without these options.
- ``tags=[...]``: see :mod:`pevensie_cache.tags`.

An entry written with any of these is an envelope (:mod:`pevensie_cache.envelope`);
a plain ``get`` (``get_many``, a resource's, a framework backend's) returns its
value while it is neither past ``ttl_seconds`` nor invalidated by a tag, and a
miss otherwise. Entries written without them are untouched by all of this.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from pevensie_cache.driver import AsyncCacheDriver, InProcessTable, MemoCell
from pevensie_cache.envelope import (
    ENVELOPE_MARK,
    OPENED_TEXT_MAX,
    Opened,
    Pairs,
    is_envelope,
    open_envelope,
    pack,
    pack_tags,
)
from pevensie_cache.errors import (
    ArgumentTypeError,
    ArgumentValueError,
    PevensieCacheError,
    UnsupportedOperation,
    driver_failure,
)
from pevensie_cache.layers_async import outside_any_call, step_in, step_out
from pevensie_cache.lease_async import load_under_lease, release, try_lease
from pevensie_cache.primitives_async import Background, SingleFlight, call
from pevensie_cache.tags import COUNTERS, check_tags, counter_key, first_version
from pevensie_cache.validation import TTL_MAX, check_ttl

__all__ = [
    "EARLY",
    "HIT",
    "MISS",
    "STALE",
    "AsyncFreshHost",
    "AsyncFreshness",
    "FreshnessOptions",
    "check_freshness",
]

logger = logging.getLogger("pevensie_cache")

HIT = "hit"
"""A lookup that found a fresh value."""
STALE = "stale"
"""A lookup answered with a value past its TTL, inside its stale window (refreshed behind)."""
MISS = "miss"
"""A lookup that found nothing servable."""
EARLY = "early"
"""The trigger of a refresh before expiry (early recomputation)."""


class FreshnessOptions(NamedTuple):
    """The checked freshness options of one call."""

    stale: int
    """Seconds a value stays servable past its TTL (0: none)."""
    beta: float
    """The early-recomputation factor (0: none)."""
    on_error: bool
    """Whether a failed refresh keeps the stale value servable."""
    tags: tuple[str, ...]
    """The entry's tags."""


def check_freshness(
    ttl_seconds: int | None,
    stale_seconds: object,
    early_recompute: object,
    stale_on_error: object,
    tags: object,
) -> FreshnessOptions:
    """Check the freshness options of a ``get_or_set``; return them, or raise an argument error."""
    # The usual call first, in one test: this runs on every hit.
    if (
        type(stale_seconds) is int
        and 0 < stale_seconds <= TTL_MAX
        and early_recompute is False
        and stale_on_error is False
        and ttl_seconds is not None
    ):
        if tags is None:
            return _new(FreshnessOptions, (stale_seconds, 0.0, False, ()))
        if type(tags) is list and len(tags) == 1:  # one tag, as check_tags would accept it
            tag = tags[0]
            if type(tag) is str and tag and tag.isascii():
                return _new(FreshnessOptions, (stale_seconds, 0.0, False, (tag,)))
        return _new(FreshnessOptions, (stale_seconds, 0.0, False, check_tags(tags)))
    if type(stale_seconds) is int and 0 < stale_seconds <= TTL_MAX:
        stale = stale_seconds
    elif stale_seconds is None:
        stale = 0
    else:  # a TTL's rules: an int, a float without fraction, a timedelta (rounded up)
        stale = check_ttl(stale_seconds, "stale_seconds", none="no stale window") or 0
    if early_recompute is False or early_recompute is None:
        beta = 0.0
    elif early_recompute is True:
        beta = 1.0
    elif isinstance(early_recompute, (int, float)) and not isinstance(early_recompute, bool):
        shown: object = early_recompute
        try:
            beta = float(early_recompute)
        except OverflowError:  # an int no float holds (nor, past 4300 digits, any text)
            beta = math.inf if early_recompute > 0 else -math.inf
            shown = "an int beyond any float"
        if not 0 < beta < math.inf:
            raise ArgumentValueError(
                f"early_recompute must be True or a positive beta, got {shown}"
            )
    else:
        raise ArgumentTypeError(
            f"early_recompute must be a bool or a float beta, not {type(early_recompute).__name__}"
        )
    if stale_on_error is not False and stale_on_error is not True:
        raise ArgumentTypeError(
            f"stale_on_error must be a bool, not {type(stale_on_error).__name__}"
        )
    if ttl_seconds is None and (stale or beta):
        raise ArgumentValueError(
            "stale_seconds and early_recompute need ttl_seconds: an entry without one never "
            "goes stale"
        )
    if stale_on_error and not stale:
        raise ArgumentValueError(
            "stale_on_error needs stale_seconds: the window in which a stale value may be served"
        )
    checked = () if tags is None else check_tags(tags)
    return _new(FreshnessOptions, (stale, beta, stale_on_error, checked))


_new = tuple.__new__  # builds the options from their parts without the NamedTuple's Python call

Versions = tuple[tuple[str, str | None], ...]
"""A caller's tags with the versions just read (``None``: the counter is absent), in order:
the shape of the tags an envelope records (:data:`~pevensie_cache.envelope.Pairs`)."""


def _usual(stale: int, beta: float, tag: str | None) -> FreshnessOptions:
    """Return the usual options get_or_set accepted, when a load or a refresh needs them."""
    return _new(FreshnessOptions, (stale, beta, False, () if tag is None else (tag,)))


class AsyncFreshHost(Protocol):
    """What this module needs of the cache (``AsyncPevensieCache`` has it)."""

    _flights: SingleFlight

    async def _optional(self, driver: AsyncCacheDriver, operation: str, *args: Any) -> Any: ...

    def _fresh_lookup(self, resource_type: str, outcome: str) -> None: ...

    def _refreshed(self, resource_type: str, trigger: str, error: BaseException | None) -> None: ...


class AsyncFreshness:
    """The freshness and tag logic of one cache, with its background refreshes."""

    __slots__ = (
        "_across",
        "_attach",
        "_background",
        "_clock",
        "_entries",
        "_opened",
        "envelopes",
        "in_process",
    )

    def __init__(self, driver: object) -> None:
        """Prepare for ``driver``: envelopes are used only if it stores them."""
        self.envelopes = bool(getattr(driver, "stores_envelopes", False))
        self._across: Callable[..., Any] | None = getattr(driver, "get_across", None)
        self._background = Background()
        self._opened: dict[str, Opened] = {}  # envelopes read lately, opened (see open_envelope)
        lend = getattr(driver, "in_process_table", None)
        table: InProcessTable | None = None if lend is None else lend()
        self.in_process = table is not None  # whether hit() may answer
        self._entries: Mapping[str, tuple[Any, ...]] = {} if table is None else table.entries
        self._clock: Callable[[], float] = time.monotonic if table is None else table.clock
        self._attach = None if table is None else table.attach

    @property
    def background(self) -> Background:
        """The background refreshes of this cache (tests wait on it)."""
        return self._background

    async def close(self) -> None:
        """Stop the background refreshes (cancel or wait for them): the cache disconnects."""
        await self._background.close()

    def _need_envelopes(self, driver: AsyncCacheDriver, what: str) -> None:
        if not self.envelopes:
            named = getattr(driver, "sync_driver", driver)  # the driver a ThreadedAsyncDriver runs
            raise UnsupportedOperation(
                f"the {type(named).__name__} driver cannot store {what} "
                "(it does not declare stores_envelopes)"
            )

    # -- get_or_set ----------------------------------------------------------------------

    def hit(
        self,
        resource_type: str,
        key: str,
        ttl_seconds: int | None,
        stale_seconds: object,
        early_recompute: object,
        stale_on_error: object,
        tags: object,
    ) -> str | None:
        """Return the value of a hit answered from the entry's memo, or ``None``: ask get_or_set.

        Only with :attr:`in_process`, the address and TTL checked. The entry is
        read in place, with the memo :meth:`_keep` attached to it, which answers
        without opening the envelope or reading the tag's counter: the memo lives
        as long as the entry is unchanged, and its cell says whether the counter
        still is the one whose version the entry recorded. Anything else (no memo,
        past the TTL or the store's deadline, within reach of an early
        recomputation, options other than the usual ones, valid or not) gives
        ``None``, for :meth:`get_or_set` to judge as ever.
        """
        # (value, deadline, cell, answer, until, tag, reach): read by index, so that only
        # what is judged is touched (on a hit that misses the CPU's caches, each object
        # costs). ``until``: the logical expiry on the store's clock, or its deadline if
        # earlier (attach folds them), so one clock and one instant judge both.
        entry = self._entries.get(f"{resource_type}:{key}", _GONE)
        if len(entry) == 2:  # no memo (yet)
            return None
        now = self._clock()
        until = entry[4]
        if until <= now or not entry[2].live:
            return None
        if tags is not None:
            if type(tags) is not list or len(tags) != 1:
                return None
            first = tags[0]
            if type(first) is not str or first != entry[5]:  # recorded, so a valid tag
                return None
        if stale_on_error is not False or not (early_recompute is False or early_recompute is True):
            return None
        if stale_seconds is not None and not (
            type(stale_seconds) is int and 0 < stale_seconds <= TTL_MAX
        ):
            return None
        if ttl_seconds is None and (stale_seconds is not None or early_recompute):
            return None
        if early_recompute and until - now <= entry[6]:
            return None
        return entry[3]  # type: ignore[no-any-return]

    def _keep(self, resource_type: str, key: str, text: str) -> None:
        """Attach what :meth:`hit` needs to the entry that holds ``text``, if the store can."""
        attach = self._attach
        if attach is None:
            return
        if not is_envelope(text):  # a plain value: a hit for callers without tags
            attach(resource_type, key, text, (text, math.inf, None, -math.inf), None)
            return
        if len(text) > _KEPT_TEXT_MAX:
            return
        value, expiry, compute, recorded = open_envelope(text, resource_type, key, self._opened)
        if len(recorded) > 1:  # several tags: a memo that never answers (-inf: past its TTL)
            attach(resource_type, key, text, (value, -math.inf, None, -math.inf), None)
            return
        try:
            took = int(compute)
        except ValueError:
            took = 0
        # Where a draw of early recomputation (beta 1) may begin to win: _early's bound.
        reach = took * 1.0 / 1000 * _DRAW_MOST if took > 0 else -math.inf
        # The logical expiry, moved to the store's clock (its TTLs' clock), which then
        # judges it while the memo lives: one clock read per hit, not two.
        until = math.inf if expiry is None else self._clock() + (expiry - _time())
        if not recorded:
            attach(resource_type, key, text, (value, until, None, reach), None)
            return
        tag, version = recorded[0]
        watched = (COUNTERS, _TAG + tag, version)
        attach(resource_type, key, text, (value, until, tag, reach), watched)

    async def get_or_set(
        self,
        cache: AsyncFreshHost,
        driver: AsyncCacheDriver,
        resource_type: str,
        key: str,
        loader: Callable[[], Any],
        ttl_seconds: int | None,
        stale_seconds: object,
        early_recompute: object,
        stale_on_error: object,
        tags: object,
        lock: bool,
        lease: float,
        wait: float,
        observed: bool,
    ) -> str:
        """``get_or_set`` with freshness options or tags (the address, TTL and loader checked).

        The options are checked here (:func:`check_freshness`). ``observed``: the
        cache records its lookups (an instrumented cache).
        """
        # The usual options (stale_seconds or early_recompute=True, no tag or one) are
        # accepted by one test, as check_freshness would accept them: this runs on every
        # hit, which then costs one read and one judgement.
        tag = tags[0] if type(tags) is list and len(tags) == 1 else None
        options: FreshnessOptions | None
        if (
            ttl_seconds is not None
            and stale_on_error is False
            and (
                stale_seconds is None
                or (type(stale_seconds) is int and 0 < stale_seconds <= TTL_MAX)
            )
            and (early_recompute is False or early_recompute is True)
            and (tags is None or (type(tag) is str and tag and tag.isascii()))
        ):
            options = None  # built below if a load or a refresh needs them
            stale = stale_seconds or 0
            beta = 1.0 if early_recompute else 0.0
        else:
            options = check_freshness(
                ttl_seconds, stale_seconds, early_recompute, stale_on_error, tags
            )
            stale, beta = options[0], options[1]
            tag = options[3][0] if len(options[3]) == 1 else None
        if not self.envelopes:
            self._need_envelopes(driver, "entries with freshness options or tags")
        across = self._across
        if tag is not None and across is not None:
            # The usual read: the entry and its one tag's counter, in one go.
            try:
                text, version = await across(((resource_type, key), (COUNTERS, _TAG + tag)))
            except PevensieCacheError:
                raise
            except Exception as exc:
                raise driver_failure(exc) from exc
            wanted: Versions = ((tag, version),)
        else:
            checked = (() if tag is None else (tag,)) if options is None else options[3]
            text, wanted = await self._read(driver, resource_type, key, checked)
        if text is not None:
            judged = _judge(text, wanted, stale, beta, self._opened, resource_type, key)
            if isinstance(judged, _Unsure):
                judged = await self._judge_tags(
                    driver, resource_type, key, text, judged, wanted, stale, beta
                )
            if judged is not None:
                value, state = judged
                if state is HIT:
                    if self._attach is not None:
                        self._keep(resource_type, key, text)
                else:
                    if options is None:
                        options = _usual(stale, beta, tag)
                    self._start(
                        cache,
                        driver,
                        resource_type,
                        key,
                        loader,
                        ttl_seconds,
                        options,
                        lease,
                        state,
                        text,
                    )
                if observed:
                    cache._fresh_lookup(resource_type, STALE if state is STALE else HIT)
                return value
        if observed:
            cache._fresh_lookup(resource_type, MISS)
        if options is None:
            options = _usual(stale, beta, tag)
        return await self._miss(
            cache,
            driver,
            resource_type,
            key,
            loader,
            ttl_seconds,
            options,
            lock,
            lease,
            wait,
            wanted,
        )

    async def _miss(
        self,
        cache: AsyncFreshHost,
        driver: AsyncCacheDriver,
        resource_type: str,
        key: str,
        loader: Callable[[], Any],
        ttl_seconds: int | None,
        options: FreshnessOptions,
        lock: bool,
        lease: float,
        wait: float,
        current: Versions,
    ) -> str:
        """Load the value in a single flight (and under the lease lock with ``lock``)."""
        flights = cache._flights
        finished = flights.finished
        ran = False

        async def lookup() -> str | None:
            found = await self._lookup(driver, resource_type, key, options)
            return None if found is None else found[0]

        async def store() -> str:
            return await self._load(
                cache, driver, resource_type, key, loader, ttl_seconds, options, current
            )

        async def load() -> str:
            nonlocal ran
            ran = True
            # A flight may have stored the value and ended between this caller's miss
            # and its joining: then look again, or the loader runs twice.
            if flights.finished != finished:
                stored = await lookup()
                if stored is not None:
                    return stored
            if lock:
                return await load_under_lease(
                    cache, driver, resource_type, key, lease, wait, lookup, store
                )
            return await store()

        bound = wait if lock else None  # lock_wait bounds this process's waiters too
        value = await flights.run((resource_type, key), load, bound)
        if ran or not options.tags:
            return value
        # Another caller's load, which may have begun before this caller saw a tag
        # invalidated: its value is this caller's only if what it stored is servable
        # now (a waiter's one more read). If not, a load again: any flight under way
        # now began after that one ended, so after the invalidation.
        stored = await lookup()
        if stored is not None:
            return stored
        finished = flights.finished
        return await flights.run((resource_type, key), load, bound)

    async def _lookup(
        self, driver: AsyncCacheDriver, resource_type: str, key: str, options: FreshnessOptions
    ) -> tuple[str, str] | None:
        """Read the entry and judge it (see :func:`_judge`), reading any other tags it names."""
        text, wanted = await self._read(driver, resource_type, key, options[3])
        if text is None:
            return None
        stale, beta = options[0], options[1]
        found = _judge(text, wanted, stale, beta, self._opened, resource_type, key)
        if isinstance(found, _Unsure):
            return await self._judge_tags(
                driver, resource_type, key, text, found, wanted, stale, beta
            )
        return found

    async def _judge_tags(
        self,
        driver: AsyncCacheDriver,
        resource_type: str,
        key: str,
        text: str,
        opened: _Unsure,
        wanted: Versions,
        stale: int,
        beta: float,
    ) -> tuple[str, str] | None:
        """Judge an entry that recorded other tags than the caller's (``wanted``).

        It is servable if those tags are all current (read here) and include the caller's.
        """
        recorded = opened[3]
        if not await self._tags_valid(driver, recorded, wanted):
            return None
        return _judge(text, recorded, stale, beta, self._opened, resource_type, key)  # type: ignore[return-value]

    async def _load(
        self,
        cache: AsyncFreshHost,
        driver: AsyncCacheDriver,
        resource_type: str,
        key: str,
        loader: Callable[[], Any],
        ttl_seconds: int | None,
        options: FreshnessOptions,
        current: Versions,
    ) -> str:
        """Call the loader, store its value in an envelope, and return it.

        ``current``: the tags with the versions read with the entry.
        """
        # The versions are read before the loader runs: a tag invalidated while it
        # runs leaves the entry it writes a miss, as its value may predate the change.
        versions = await self._versions(cache, driver, options.tags, dict(current))
        began = time.perf_counter()
        stepped = step_out()  # the loader's own cache calls are not this call's round trips
        try:
            value = await call(loader)
        finally:
            step_in(stepped)
        compute = time.perf_counter() - began
        if type(value) is not str:
            raise ArgumentTypeError(
                f"get_or_set: the loader returned {type(value).__name__}, not str "
                "(use cache.resource(..., codec='json') to store other values)"
            )
        await self._write(
            driver, resource_type, key, value, ttl_seconds, options, compute, versions
        )
        return value

    async def _write(
        self,
        driver: AsyncCacheDriver,
        resource_type: str,
        key: str,
        value: str,
        ttl_seconds: int | None,
        options: FreshnessOptions,
        compute: float,
        versions: Sequence[str],
    ) -> None:
        if not value.isascii():
            _check_text(value)
        timed = ttl_seconds is not None and bool(options.stale or options.beta)
        expiry = time.time() + ttl_seconds if timed and ttl_seconds is not None else None
        server_ttl = None if ttl_seconds is None else ttl_seconds + options.stale
        text = pack(value, expiry, compute, pack_tags(options.tags, versions))
        try:
            await driver.set(resource_type, key, text, server_ttl)
        except PevensieCacheError:
            raise
        except Exception as exc:
            raise driver_failure(exc) from exc
        self._keep(resource_type, key, text)

    # -- background refresh -----------------------------------------------------------------

    def _start(
        self,
        cache: AsyncFreshHost,
        driver: AsyncCacheDriver,
        resource_type: str,
        key: str,
        loader: Callable[[], Any],
        ttl_seconds: int | None,
        options: FreshnessOptions,
        lease: float,
        trigger: str,
        seen: str,
    ) -> None:
        """Refresh the entry in the background, unless this process already does."""

        async def refresh() -> None:
            outside_any_call()  # its round trips are its own, not the caller's (fail_open)
            await self._run_refresh(
                cache,
                driver,
                resource_type,
                key,
                loader,
                ttl_seconds,
                options,
                lease,
                trigger,
                seen,
            )

        self._background.start((resource_type, key), refresh)

    async def _run_refresh(
        self,
        cache: AsyncFreshHost,
        driver: AsyncCacheDriver,
        resource_type: str,
        key: str,
        loader: Callable[[], Any],
        ttl_seconds: int | None,
        options: FreshnessOptions,
        lease: float,
        trigger: str,
        seen: str,
    ) -> None:
        try:
            token = await try_lease(cache, driver, resource_type, key, lease)
        except PevensieCacheError as exc:
            _log_refresh(resource_type, key, trigger, exc, "could not take the lease")
            cache._refreshed(resource_type, trigger, exc)
            return
        if token is None:
            return  # another process holds the lease: it refreshes
        try:
            text, current = await self._read(driver, resource_type, key, options.tags)
            if text != seen:
                return  # stored (or deleted) since this caller read it: nothing to do
            await self._load(
                cache, driver, resource_type, key, loader, ttl_seconds, options, current
            )
        except Exception as exc:
            cache._refreshed(resource_type, trigger, exc)
            if trigger == STALE and not options.on_error:
                dropped = await self._drop(cache, driver, resource_type, key, seen)
                outcome = "dropped the stale value" if dropped else "dropped nothing"
                _log_refresh(resource_type, key, trigger, exc, outcome)
            else:
                _log_refresh(resource_type, key, trigger, exc, "still serving the old value")
            return
        finally:
            await release(cache, driver, resource_type, key, token)
        cache._refreshed(resource_type, trigger, None)

    async def _drop(
        self,
        cache: AsyncFreshHost,
        driver: AsyncCacheDriver,
        resource_type: str,
        key: str,
        seen: str,
    ) -> bool:
        """Delete the stale entry ``seen``, unless another value was stored since the read.

        Returns whether it deleted it (not if another value was there, or the
        delete failed: logged).

        (A value written while the loader ran must survive its failure. The
        check and the delete are two calls: a write between them is lost, a
        window of one round trip rather than of the loader's whole run.)
        """
        try:
            if await cache._optional(driver, "get", resource_type, key) != seen:
                return False
            await cache._optional(driver, "delete", resource_type, key)
        except PevensieCacheError as exc:
            logger.warning("deleting the stale value failed (%s); it expires", exc)
            return False
        return True

    # -- reads of entries and tag counters ----------------------------------------------------

    async def _read(
        self, driver: AsyncCacheDriver, resource_type: str, key: str, tags: tuple[str, ...]
    ) -> tuple[str | None, Versions]:
        """Read the entry and, with ``tags``, their counters (in one go where the driver can).

        Returns the entry's text and the tags with their current versions (``None``:
        a counter is absent), in the form an envelope records them.
        """
        try:
            if not tags:
                return await driver.get(resource_type, key), ()
            across = self._across
            if across is not None:
                values = await across(
                    [(resource_type, key), *[(COUNTERS, counter_key(tag)) for tag in tags]]
                )
                return values[0], tuple(zip(tags, values[1:], strict=True))
            counters = [counter_key(tag) for tag in tags]
            text = await driver.get(resource_type, key)
            found = await _get_many(driver, COUNTERS, counters)
        except PevensieCacheError:
            raise
        except Exception as exc:
            raise driver_failure(exc) from exc
        return text, tuple(
            [(tag, found.get(counter)) for tag, counter in zip(tags, counters, strict=True)]
        )

    async def _counters(
        self, driver: AsyncCacheDriver, tags: Sequence[str]
    ) -> dict[str, str | None]:
        """Return the current version of each tag (``None``: its counter is absent)."""
        counters = [counter_key(tag) for tag in tags]
        try:
            found = await _get_many(driver, COUNTERS, counters)
        except PevensieCacheError:
            raise
        except Exception as exc:
            raise driver_failure(exc) from exc
        return {tag: found.get(counter) for tag, counter in zip(tags, counters, strict=True)}

    async def _tags_valid(
        self, driver: AsyncCacheDriver, recorded: Pairs, wanted: Versions
    ) -> bool:
        """Whether an entry's recorded tags are all current and include every ``wanted`` one.

        ``wanted``: the caller's tags with the versions just read (the other
        tags' versions are read here).
        """
        versions = dict(recorded)
        current = dict(wanted)
        if any(tag not in versions for tag in current):
            return False
        missing = [tag for tag in versions if tag not in current]
        if missing:
            current.update(await self._counters(driver, missing))
        return all(current.get(tag) == version for tag, version in versions.items())

    async def _versions(
        self,
        cache: AsyncFreshHost,
        driver: AsyncCacheDriver,
        tags: tuple[str, ...],
        known: Mapping[str, str | None],
    ) -> list[str]:
        """Return the current version of each tag, creating the counters that are absent."""
        if not tags:
            return []
        versions = dict(known)
        unknown = [tag for tag in tags if tag not in versions]
        if unknown:
            versions.update(await self._counters(driver, unknown))
        for tag in tags:
            if versions.get(tag) is None:
                first = first_version()
                if await cache._optional(driver, "add", COUNTERS, counter_key(tag), first, None):
                    versions[tag] = first
                else:  # another writer created it first
                    versions[tag] = (await self._counters(driver, [tag]))[tag]
        # A counter that vanished again at once is recorded as "", which never matches.
        return [versions.get(tag) or "" for tag in tags]

    # -- plain reads of envelopes, tagged writes, invalidation -------------------------------

    async def open(
        self,
        cache: AsyncFreshHost,
        driver: AsyncCacheDriver,
        resource_type: str,
        key: str,
        text: str,
    ) -> str | None:
        """Return the value of an envelope a plain ``get`` read, or ``None`` if it is not servable.

        Not servable: past its TTL (a plain read never serves a stale value), or
        carrying a tag invalidated since it was written.
        """
        value, expiry, _, recorded = open_envelope(text, resource_type, key, self._opened)
        if expiry is not None and time.time() >= expiry:
            return None
        if recorded and not await self._tags_valid(driver, recorded, ()):
            return None
        return value

    async def open_many(
        self,
        cache: AsyncFreshHost,
        driver: AsyncCacheDriver,
        resource_type: str,
        found: dict[str, str],
    ) -> dict[str, str]:
        """:meth:`open` for the result of a ``get_many``: one read of every tag counter involved."""
        now = time.time()
        opened: dict[str, str] = {}
        tagged: dict[str, tuple[str, dict[str, str]]] = {}
        for key, text in found.items():
            if not is_envelope(text):
                opened[key] = text
                continue
            value, expiry, _, recorded = open_envelope(text, resource_type, key, self._opened)
            if expiry is not None and now >= expiry:
                continue
            if not recorded:
                opened[key] = value
                continue
            tagged[key] = (value, dict(recorded))
        if tagged:
            wanted = list(dict.fromkeys(tag for _, versions in tagged.values() for tag in versions))
            current = await self._counters(driver, wanted)
            for key, (value, versions) in tagged.items():
                if all(current.get(tag) == version for tag, version in versions.items()):
                    opened[key] = value
        return {key: opened[key] for key in found if key in opened}

    async def set_tagged(
        self,
        cache: AsyncFreshHost,
        driver: AsyncCacheDriver,
        resource_type: str,
        key: str,
        value: str,
        ttl_seconds: int | None,
        tags: object,
    ) -> None:
        """``set`` with tags (address, value and TTL already checked)."""
        checked = check_tags(tags)
        self._need_envelopes(driver, "tagged entries")
        options = FreshnessOptions(0, 0.0, False, checked)
        versions = await self._versions(cache, driver, checked, {})
        await self._write(driver, resource_type, key, value, ttl_seconds, options, 0.0, versions)

    async def invalidate_tags(
        self, cache: AsyncFreshHost, driver: AsyncCacheDriver, tags: tuple[str, ...]
    ) -> None:
        """Increment each tag's counter: every entry that recorded an older version is a miss."""
        checked = check_tags(tags)
        for tag in checked:
            counter = counter_key(tag)
            if await cache._optional(driver, "incr", COUNTERS, counter, 1, None) == 1:
                # The counter was absent (never used, evicted, flushed), and incr created
                # it at 1: a value it may have held before, when it was created the same
                # way, which entries may have recorded. A random start never repeats one.
                await cache._optional(driver, "set", COUNTERS, counter, first_version(), None)


class _Unsure(tuple[str, float | None, str, Pairs]):
    """An envelope :func:`_judge` could not judge alone (opened): its tags need reading."""

    __slots__ = ()


def _judge(
    text: str,
    wanted: Versions,
    stale: int,
    beta: float,
    memo: dict[str, Opened],
    resource_type: str,
    key: str,
) -> tuple[str, str] | _Unsure | None:
    """Return the value in ``text`` and how servable it is now (``HIT``, ``EARLY``, ``STALE``).

    ``None``: not servable to this caller (past its stale window, or a plain
    value for a caller with tags). ``wanted``: the caller's tags with their
    current versions; an envelope that recorded exactly these is judged here,
    one that recorded others comes back :class:`_Unsure`, for the counters it
    names to be read (then judged again with ``wanted`` its own tags, found
    current). ``EARLY``: a hit that should be refreshed in the background,
    before it expires. ``stale`` and ``beta``: the caller's options.
    """
    if text.isascii():
        # A plain value (written without options) has no tags: a caller with tags reloads it.
        return None if wanted else (text, HIT)
    # Only envelopes are kept opened (none longer than OPENED_TEXT_MAX): a hot entry is
    # found there at once, without the test of its mark.
    opened = memo.get(text) if len(text) <= OPENED_TEXT_MAX else None
    if opened is None:
        if text[0] != ENVELOPE_MARK:
            return None if wanted else (text, HIT)
        opened = open_envelope(text, resource_type, key, memo)
    if opened[3] != wanted:
        return _Unsure(opened)
    expiry = opened[1]
    if expiry is None:
        return opened[0], HIT
    now = _time()
    if now < expiry:
        if beta and _early(now, expiry, opened[2], beta):
            return opened[0], EARLY
        return opened[0], HIT
    if now < expiry + stale:
        return opened[0], STALE
    return None


_time = time.time

_GONE = ("", -math.inf, MemoCell(False), "", -math.inf, None, -math.inf)

_KEPT_TEXT_MAX = 4096
"""Longer envelopes get no memo (:meth:`AsyncFreshness.hit`): it would hold the value twice."""
"""What :meth:`AsyncFreshness.hit` reads for an absent entry: gone (a deadline of -inf)."""

_TAG = counter_key("")
"""What every tag counter's key starts with (``counter_key(tag)`` is ``_TAG + tag``)."""

_DRAW_MOST = 37.0
"""More than the largest exponential draw :func:`_early` can make: ``-log(2**-53)`` is 36.74."""


def _early(now: float, expiry: float, compute: str, beta: float) -> bool:
    """XFetch: whether to recompute now, with a chance that grows as ``expiry`` nears.

    True with probability ``exp(-(expiry - now) / (compute * beta))`` (``now``
    and ``expiry`` in seconds, ``compute`` in milliseconds, as recorded): it
    grows as expiry nears, and the slower the loader the sooner it starts.
    """
    try:
        took = int(compute)
    except ValueError:
        return False  # not ours to judge: the entry is served as it is
    if took <= 0:
        return False
    scale = took * beta / 1000
    if expiry - now > scale * _DRAW_MOST:
        return False  # farther from expiry than any draw reaches: no need to draw
    # -log(u) for u uniform in (0, 1] is an exponential draw of mean 1.
    return now - scale * math.log(1.0 - random.random()) >= expiry  # noqa: S311


def _check_text(value: str) -> None:
    """Refuse a loaded value that ``set`` would refuse: text with a lone surrogate."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ArgumentValueError(
            f"get_or_set: the loader returned text that cannot be encoded as UTF-8 "
            f"(position {exc.start}: lone surrogate?)"
        ) from None


def _log_refresh(
    resource_type: str, key: str, trigger: str, exc: BaseException, outcome: str
) -> None:
    # Only the exception's type: its text may hold a secret (a loader's connection URL).
    logger.warning(
        "get_or_set: the %s refresh of resource type %r, key %r failed with %s; %s",
        "background" if trigger == STALE else "early",
        resource_type,
        key,
        type(exc).__name__,
        outcome,
    )


async def _get_many(
    driver: AsyncCacheDriver, resource_type: str, keys: Sequence[str]
) -> dict[str, str]:
    get_many = getattr(driver, "get_many", None)
    if get_many is not None:
        found: dict[str, str] = await get_many(resource_type, keys)
        return found
    found = {}
    for key in keys:
        value = await driver.get(resource_type, key)
        if value is not None:
            found[key] = value
    return found
