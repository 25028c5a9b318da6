"""dogpile.cache's own backend, serializer and mutex suites (``dogpile.testing.fixtures``)
on the ``"pevensie"`` backend, on the Redis and memory drivers.

The backend is loaded by name through dogpile's ``dogpile.cache`` entry point,
as users configure it; the tests in ``exclusions.DOGPILE`` are skipped with
their reason.
"""

from __future__ import annotations

from typing import Any

import pytest
from dogpile.testing import fixtures
from exclusions import DOGPILE

SUITES = {
    "Backend": fixtures._GenericBackendTestSuite,
    "Serializer": fixtures._GenericSerializerTestSuite,
    "Mutex": fixtures._GenericMutexTestSuite,
}


def _suite_class(kind: str, driver: str) -> type:
    bases: tuple[type, ...] = (SUITES[kind],)
    if kind == "Serializer":  # its three tests, on the fixture (the backend suite runs apart)
        bases = (fixtures._GenericSerializerTestSuite, fixtures._GenericBackendFixture)
    namespace: dict[str, Any] = {
        "backend": "pevensie",
        "config_args": {"arguments": {"url": "memory://", "resource_type": f"dogpile-{kind}"}},
        "__doc__": f"dogpile.cache's {kind.lower()} suite on the {driver} driver.",
    }
    for name, reason in DOGPILE.items():
        for base in bases:
            if hasattr(base, name):
                namespace[name] = pytest.mark.skip(reason=reason)(getattr(base, name))
                break
    return type(f"TestDogpile{kind}On{driver.title()}", bases, namespace)


TestDogpileBackendOnRedis = _suite_class("Backend", "redis")
TestDogpileSerializerOnRedis = _suite_class("Serializer", "redis")
TestDogpileMutexOnRedis = _suite_class("Mutex", "redis")
TestDogpileBackendOnMemory = _suite_class("Backend", "memory")
TestDogpileSerializerOnMemory = _suite_class("Serializer", "memory")
TestDogpileMutexOnMemory = _suite_class("Mutex", "memory")

ON_REDIS = (TestDogpileBackendOnRedis, TestDogpileSerializerOnRedis, TestDogpileMutexOnRedis)


@pytest.fixture(scope="module", autouse=True)
def _redis_url(pevensie_redis_url: str) -> None:
    for suite in ON_REDIS:
        arguments = {**suite.config_args["arguments"], "url": pevensie_redis_url}
        suite.config_args = {"arguments": arguments}
