"""Django for the integration tests: settings, and the cache test module of its sdist.

Django's ``tests/cache`` package (``tests.py``, ``models.py``, ...) of the
installed release is fetched from its source distribution and imported as the
app ``cache``, as Django's own test runner does.
"""

from __future__ import annotations

import sys
from types import ModuleType

import django
from django.conf import settings
from sources import installed, suite_dir

BACKEND = "pevensie_cache.contrib.django.PevensieCache"


def configure() -> None:
    """Configure Django once for this process: SQLite in memory, the ``cache`` test app."""
    if settings.configured:
        return
    suite = suite_dir("django", installed("django"), "tests/cache")
    sys.path.insert(0, str(suite / "tests"))
    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "cache"],
        CACHES={"default": {"BACKEND": BACKEND, "LOCATION": "memory://"}},
        SECRET_KEY="pevensie-integration-tests",
        USE_TZ=True,
        ALLOWED_HOSTS=["testserver"],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()


def suite() -> ModuleType:
    """Return Django's ``cache.tests`` module (configuring Django first)."""
    configure()
    import cache.tests  # type: ignore[import-not-found]

    module: ModuleType = cache.tests
    return module
