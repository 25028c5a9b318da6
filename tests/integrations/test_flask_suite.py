"""Flask-Caching's own generic backend tests, ``GenericCacheTests``, on PevensieCache.

The test module is the one in the source distribution of the installed
Flask-Caching (see ``flask_support``), run on the Redis and memory drivers;
the tests in ``exclusions.FLASK`` are skipped with their reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import flask_support
import pytest
from exclusions import FLASK

from pevensie_cache.contrib.flask import PevensieCache

suite = flask_support.backend_suite()


class _OnPevensie(suite.GenericCacheTests):  # type: ignore[misc]
    _can_use_fast_sleep = False  # the server keeps time: sleep for real

    @pytest.fixture
    def sleep(self) -> Callable[[float], None]:
        return time.sleep

    @pytest.fixture
    def make_cache(self, pevensie_url: str) -> Iterator[Callable[[], PevensieCache]]:
        made = PevensieCache(
            pevensie_url, resource_type="flask-suite", key_prefix="werkzeug-test-case:"
        )
        made.clear()
        yield lambda: made
        made.clear()


for _name, _reason in FLASK.items():
    setattr(
        _OnPevensie,
        _name,
        pytest.mark.skip(reason=_reason)(getattr(suite.GenericCacheTests, _name)),
    )


class TestFlaskCachingSuite(_OnPevensie):
    """On the Redis driver and the memory driver (``pevensie_url``)."""
