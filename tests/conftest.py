"""Until the Redis driver has the operations of issue 22 (exists, ttl, delete's answer,
lock extend), its conformance runs mark the cases that need them as expected failures.

Strict: the day the driver has them, these marks fail the run, and this file goes.
"""

from __future__ import annotations

import pytest

_WAITING_FOR_THE_REDIS_DRIVER = {
    "test_ttl_says_the_whole_seconds_left_none_or_a_miss",
    "test_ttl_follows_touch",
    "test_extend_keeps_a_lock_past_its_first_lease",
    "test_extend_of_a_lock_no_longer_held_raises_lock_not_held",
    "test_ttl_says_seconds_left_none_forever_and_zero_when_absent",
    "test_lock_is_held_by_one_holder_at_a_time",
    "test_every_python_block_of_the_readme_runs_as_written",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = getattr(item, "originalname", item.name)
        path = str(item.path)
        redis = "/tests/redis/" in path or "/tests/cluster/" in path or "[redis" in item.name
        if name in _WAITING_FOR_THE_REDIS_DRIVER and redis:
            item.add_marker(
                pytest.mark.xfail(
                    reason="the Redis driver lacks it until issue 22 part G", strict=True
                )
            )
