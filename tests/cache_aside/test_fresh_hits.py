"""A hit with freshness options or tags is judged alike whatever form the options take.

The usual options (``stale_seconds`` or ``early_recompute=True``, with no tag or
one) take a shorter path to a hit than the others (a tuple of tags, a tag that
is not ASCII, several tags, ``stale_on_error``, a float beta): both must give
the same answers, on the memory driver, one server and a Cluster, both faces.
"""

from __future__ import annotations

from typing import Any

import pytest
from aside_support import Target
from fresh_support import Loads

from pevensie_cache import cache
from pevensie_test_support.faces import Face

pytestmark = pytest.mark.filterwarnings(
    "ignore:connect\\(\\) on a sync cache inside a running event loop"
)

FORMS = [
    {"stale_seconds": 60},
    {"early_recompute": True},
    {"stale_seconds": 60, "tags": ["t:1"]},
    {"stale_seconds": 60, "early_recompute": True, "tags": ["t:1"]},
    {"tags": ["t:1"]},
    {"stale_seconds": 60, "tags": ("t:1",)},
    {"stale_seconds": 60, "tags": ["té:1"]},
    {"stale_seconds": 60, "tags": ["t:1", "t:2"]},
    {"stale_seconds": 60, "stale_on_error": True, "tags": ["t:1"]},
    {"early_recompute": 0.5, "tags": ["t:1"]},
]


def open_face(store: Target, name: str) -> Face:
    if name == "sync":
        return Face(name, cache.from_url(store.url))
    return Face(name, cache.from_url_async(store.url))


@pytest.mark.parametrize("face", ["sync", "async"])
@pytest.mark.parametrize("form", range(len(FORMS)), ids=[repr(form) for form in FORMS])
async def test_a_hit_is_judged_alike_whatever_form_its_options_take(
    store: Target, face: str, form: int
) -> None:
    options: dict[str, Any] = FORMS[form]
    c = open_face(store, face)
    await c.connect()
    try:
        load = Loads()
        key = f"{face}-{form}"
        assert await c.get_or_set("page", key, load, 300, **options) == "v1"
        for _ in range(3):
            assert await c.get_or_set("page", key, load, 300, **options) == "v1"
        assert await c.get("page", key) == "v1"
        assert load.calls == 1
        tags = options.get("tags")
        if tags:
            await c.invalidate_tags(tags[-1])
        else:
            await c.delete("page", key)
        assert await c.get_or_set("page", key, load, 300, **options) == "v2"
        assert await c.get_or_set("page", key, load, 300, **options) == "v2"
        assert load.calls == 2
    finally:
        await c.disconnect()


@pytest.mark.parametrize("face", ["sync", "async"])
async def test_a_caller_with_some_of_an_entrys_tags_hits_until_any_of_them_is_invalidated(
    store: Target, face: str
) -> None:
    c = open_face(store, face)
    await c.connect()
    try:
        load = Loads()
        both = ["a:1", "b:1"]
        assert await c.get_or_set("page", face, load, 300, stale_seconds=60, tags=both) == "v1"
        # Fewer tags than the entry recorded: the others' counters are read, then it hits.
        for tags in (["b:1"], ["a:1"], both):
            assert await c.get_or_set("page", face, load, 300, stale_seconds=60, tags=tags) == "v1"
        assert load.calls == 1
        await c.invalidate_tags("a:1")  # one the caller below does not name
        assert await c.get_or_set("page", face, load, 300, stale_seconds=60, tags=["b:1"]) == "v2"
        # A caller with a tag the entry does not carry loads it again, with that tag.
        assert await c.get_or_set("page", face, load, 300, stale_seconds=60, tags=both) == "v3"
        assert load.calls == 3
    finally:
        await c.disconnect()
