"""The conformance suite: the behaviour every Pevensie Cache driver must have, for both faces.

Any driver, ours or a third party's, runs it against itself by subclassing
:class:`CacheConformance` (the sync face) and, for a driver with an async face,
:class:`AsyncCacheConformance`, in a test module, and overriding fixtures::

    import pytest
    from pevensie_cache import cache
    from pevensie_cache.testing import AsyncCacheConformance, CacheConformance

    class TestMyDriver(CacheConformance):
        @pytest.fixture
        def cache_under_test(self):
            c = cache.new(driver="mydriver").connect()  # connected and empty
            yield c
            c.disconnect()

        @pytest.fixture
        def stored_keys(self):
            return lambda: set(...)  # every stored key, as "<resource_type>:<key>"

    class TestMyDriverAsync(AsyncCacheConformance):
        @pytest_asyncio.fixture
        async def cache_under_test(self):
            c = await cache.new_async(driver="mydriver").connect()
            yield c
            await c.disconnect()

        # stored_keys as above

Both suites run the same case definitions. ``stored_keys`` lets the suite
prove that a rejected call wrote nothing; a store that cannot list its keys
sets ``observable_layout = False`` instead. The TTL cases let time pass
through the ``advance_time`` fixture, which sleeps; a store whose clock the
test controls overrides it to move that clock (the async suite's fixture
returns an async function)::

        @pytest.fixture
        def advance_time(self, clock):
            return clock.advance  # the TTL cases then wait for nothing

A store with smaller limits than the defaults (64 MiB values, 10,000-character
keys) declares them with ``max_value_bytes`` and ``max_key_bytes``. The suite
needs ``pytest``, ``hypothesis`` and, for the async suite, ``pytest-asyncio``
(the ``testing`` extra).
"""

from __future__ import annotations

from pevensie_cache.testing.cases import BAD_ADDRESSES, BAD_TTLS, BAD_VALUES, StoredKeys
from pevensie_cache.testing.conformance import CacheConformance
from pevensie_cache.testing.conformance_async import AsyncCacheConformance

__all__ = [
    "BAD_ADDRESSES",
    "BAD_TTLS",
    "BAD_VALUES",
    "AsyncCacheConformance",
    "CacheConformance",
    "StoredKeys",
]
