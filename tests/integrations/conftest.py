"""Framework integration suites: Django, Flask-Caching and dogpile.cache on Pevensie.

These run in their own nox session (``nox -s integrations``), which installs
the frameworks and sets ``PEVENSIE_INTEGRATIONS=1``; the main test session,
without the frameworks, leaves this directory alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

GATE = "PEVENSIE_INTEGRATIONS"

if os.environ.get(GATE, "") in ("", "0"):
    collect_ignore_glob = ["test_*.py"]


def pytest_configure(config: pytest.Config) -> None:
    # dogpile.cache's suites mark their slow tests so (its own setup registers the marker).
    config.addinivalue_line("markers", "time_intensive: dogpile.cache's slow tests")


@pytest.fixture(scope="session", autouse=True)
def _disconnect_shared_caches(pevensie_redis_server: object) -> Iterator[None]:
    """Disconnect the caches the backends share when the run ends, before the server stops."""
    yield
    from pevensie_cache.contrib.shared import close_all

    close_all()


@pytest.fixture(params=["redis", "memory"])
def pevensie_url(request: pytest.FixtureRequest) -> str:
    """A Pevensie URL for each driver the backends are tested on."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("pevensie_redis_url")
    return url
