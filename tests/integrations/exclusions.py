"""Tests of the frameworks' own suites that cannot apply to Pevensie's backends, with why.

The suites skip each listed test with its reason, so a run shows them; the
README's integration section lists the same table. Anything not listed here
must pass.
"""

from __future__ import annotations

DJANGO: dict[str, str] = {
    "test_cull": (
        "Django's culling (MAX_ENTRIES/CULL_FREQUENCY) is a policy of its database, file and "
        "local-memory backends; the store bounds its own size (Redis maxmemory, "
        "memory://?max_entries=). Django's RedisCache skips it the same way."
    ),
    "test_zero_cull": "Culling, as test_cull.",
    "test_cull_delete_when_store_empty": "Culling, as test_cull.",
}
"""Django's ``BaseCacheTests``."""

FLASK: dict[str, str] = {}
"""Flask-Caching's ``GenericCacheTests``."""

DOGPILE: dict[str, str] = {
    "test_argument_dictionary_unmodified": (
        "It configures the backend with made-up arguments (arbitrary_arg_one, ...) that a "
        "dogpile backend is expected to ignore; ours reject an unknown argument with a "
        "ConfigError naming it, so a misspelt setting is never silently dropped. That the "
        "arguments mapping is left unmodified is tested with valid arguments in "
        "test_dogpile_backend.py."
    ),
}
"""dogpile.cache's ``_GenericBackendTestSuite``, ``_GenericSerializerTestSuite`` and
``_GenericMutexTestSuite``."""
