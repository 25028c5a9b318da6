"""get_across: an entry and its tags' counters in one MGET, whatever their resource types.

``get_or_set`` with tags reads so on every hit; the driver keeps the envelopes
it read lately decoded, and that memory stays bounded however many it reads.
"""

from __future__ import annotations

from typing import Any

from pevensie_cache import PevensieCache, cache
from pevensie_cache.envelope import unpack

KEPT_AT_MOST = 1024  # the driver's bound on envelopes kept decoded


def test_get_across_reads_values_envelopes_and_counters_in_order(
    pevensie_redis_cache: PevensieCache,
) -> None:
    c = pevensie_redis_cache
    driver: Any = c.driver
    c.set("page", "home", "h")
    assert c.get_or_set("page", "tagged", lambda: "v", 60, tags=["t"]) == "v"
    assert driver.get_across([("page", "home"), ("page", "absent")]) == ["h", None]
    for _ in range(3):  # the first read decodes the envelope, the others find it decoded
        text, counter = driver.get_across([("page", "tagged"), ("", "tag:t")])
        assert unpack(text, "page", "tagged").value == "v"
        assert counter.isdigit()
    three = [("", "tag:t"), ("page", "home"), ("page", "tagged")]
    assert driver.get_across(three) == [counter, "h", text]
    c.set("page", "tagged", "written without tags")
    assert driver.get_across([("page", "tagged"), ("", "tag:t")]) == [
        "written without tags",
        counter,
    ]


def test_reading_many_tagged_entries_keeps_the_decoded_envelopes_bounded(
    pevensie_redis_cache: PevensieCache,
) -> None:
    c = pevensie_redis_cache
    count = 3 * KEPT_AT_MOST
    for n in range(count):
        c.get_or_set("page", str(n), lambda n=n: f"v{n}", 60, tags=["t"])
    for _ in range(2):
        for n in range(count):
            assert c.get_or_set("page", str(n), lambda: "x", 60, tags=["t"]) == f"v{n}"
    driver: Any = c.driver
    assert 0 < len(driver._decoded) <= KEPT_AT_MOST
    c.invalidate_tags("t")
    assert c.get_or_set("page", "1", lambda: "new", 60, tags=["t"]) == "new"


async def test_the_async_face_reads_the_same(
    pevensie_redis_cache: PevensieCache, pevensie_redis_url: str
) -> None:
    sync_driver: Any = pevensie_redis_cache.driver
    async with cache.from_url_async(pevensie_redis_url) as c:
        assert await c.get_or_set("page", "a", lambda: "v", 60, tags=["t"]) == "v"
        driver: Any = c.driver
        for _ in range(3):
            text, counter = await driver.get_across([("page", "a"), ("", "tag:t")])
            assert unpack(text, "page", "a").value == "v"
            assert [text, counter] == sync_driver.get_across([("page", "a"), ("", "tag:t")])
        assert await c.get_or_set("page", "a", lambda: "x", 60, tags=["t"]) == "v"
