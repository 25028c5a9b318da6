"""Django's own cache backend tests, ``BaseCacheTests``, on PevensieCache (Redis and memory).

The test module is the one in the source distribution of the installed Django
(see ``django_support``); the tests in ``exclusions.DJANGO`` are skipped with
their reason, every other one must pass.
"""

from __future__ import annotations

import unittest
from collections.abc import Iterator
from typing import Any, ClassVar

import django_support
import pytest
from exclusions import DJANGO

suite = django_support.suite()

from django.test import TestCase  # noqa: E402 - Django is configured by the line above
from django.test.utils import (  # noqa: E402
    setup_databases,
    setup_test_environment,
    teardown_databases,
    teardown_test_environment,
)

from pevensie_cache import CounterError  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _django_test_databases() -> Iterator[None]:
    """The test database (SQLite in memory) for the tests that cache model instances."""
    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    yield
    teardown_databases(old, verbosity=0)
    teardown_test_environment()


class _OnPevensie(suite.BaseCacheTests):  # type: ignore[misc]
    """Django's suite with every alias it uses (but the culling ones) on PevensieCache."""

    location: ClassVar[str] = ""
    # Django's hook for a backend's error on incr() of a non-integer (its RedisCache
    # sets it to redis.ResponseError): ours is CounterError, a ValueError.
    incr_decr_type_error = CounterError

    @classmethod
    def setUpClass(cls) -> None:
        base: dict[str, Any] = {"BACKEND": django_support.BACKEND, "LOCATION": cls.location}
        cls._overridden_settings = {
            "CACHES": suite.caches_setting_for_tests(base=base, exclude={"cull", "zero_cull"})
        }
        super().setUpClass()


for _name, _reason in DJANGO.items():
    setattr(_OnPevensie, _name, unittest.skip(_reason)(getattr(suite.BaseCacheTests, _name)))


class TestDjangoSuiteOnRedis(_OnPevensie, TestCase):
    """On the Redis driver (the run's shared server)."""


class TestDjangoSuiteOnMemory(_OnPevensie, TestCase):
    """On the memory driver."""

    location = "memory://"


@pytest.fixture(scope="module", autouse=True)
def _redis_location(pevensie_redis_url: str) -> None:
    TestDjangoSuiteOnRedis.location = pevensie_redis_url
