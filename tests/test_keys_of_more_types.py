"""@cached keys dates, times, UUIDs, decimals, enum members, paths and frozensets stably.

Each type is written as a tagged pair of its exact text (see pevensie_cache.keys),
so the key is the same in every process and release; the digests below pin
that. Keys of the types 0.1.0 took are unchanged (tests/test_keys.py).
"""

from __future__ import annotations

import enum
import hashlib
import json
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from pevensie_cache import ArgumentTypeError, cache
from pevensie_cache.keys import KeyMaker


class Plan(enum.Enum):
    FREE = "free"
    PRO = "pro"


class Level(enum.IntEnum):
    LOW = 1


Plan.__module__ = Level.__module__ = "billing"


def invoice(customer: Any, when: Any = None) -> None:
    return None


invoice.__module__, invoice.__qualname__ = "billing", "invoice"

ARGUMENTS = (
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    (
        date(2026, 12, 1),
        datetime(2026, 12, 1, 3, 4, 5, 6, tzinfo=UTC),
        datetime(2026, 12, 1, 3, 4, 5),
        time(3, 4, tzinfo=timezone(timedelta(hours=1))),
        Decimal("1.10"),
        Plan.PRO,
        Level.LOW,
        PurePosixPath("/srv/a b/é"),
        frozenset({"b", "a", 1}),
    ),
)


def test_the_keys_of_the_new_types_are_pinned() -> None:
    assert KeyMaker(invoice, None)(*ARGUMENTS) == (
        "billing.invoice:" + hashlib.sha256(EXPECTED_TEXT.encode()).hexdigest()
    )
    assert KeyMaker(invoice, None)(*ARGUMENTS) == PINNED


EXPECTED_TEXT = json.dumps(
    {
        "customer": ["uuid", "12345678-1234-5678-1234-567812345678"],
        "when": [
            "t",
            [
                ["date", "2026-12-01"],
                ["datetime", "2026-12-01T03:04:05.000006+00:00"],
                ["datetime", "2026-12-01T03:04:05"],
                ["time", "03:04:00+01:00"],
                ["decimal", "1.10"],
                ["enum", "billing.Plan", "PRO"],
                ["enum", "billing.Level", "LOW"],
                ["path", "/srv/a b/\u00e9"],
                ["fs", ["a", "b", 1]],  # the items' texts sorted: '"a"' < '1'
            ],
        ],
    },
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=True,
)
PINNED = "billing.invoice:424e1c98a3ce315cb00b1bb1264165112accf85902720898918d5c843d689c4c"
"""Computed by the first release that keys these types: a change here strands stored entries."""


def test_the_key_is_the_same_in_another_process() -> None:
    program = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import test_keys_of_more_types as t; from pevensie_cache.keys import KeyMaker; "
        "print(KeyMaker(t.invoice, None)(*t.ARGUMENTS))"
    )
    here = str(Path(__file__).parent)
    found = subprocess.run(
        [sys.executable, "-c", program, here],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert found.stdout.strip() == PINNED


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (date(2026, 12, 1), "2026-12-01"),
        (datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 1)),
        (datetime(2026, 12, 1), date(2026, 12, 1)),
        (Decimal("1.1"), Decimal("1.10")),
        (Decimal("1"), 1),
        (Plan.FREE, "free"),
        (Level.LOW, 1),
        (PurePosixPath("a/b"), "a/b"),
        (frozenset({1, 2}), (1, 2)),
        (uuid.UUID(int=1), str(uuid.UUID(int=1))),
    ],
)
def test_values_of_different_types_or_texts_get_different_keys(first: Any, second: Any) -> None:
    make = KeyMaker(invoice, None)
    assert make(first) != make(second)


def test_a_frozenset_keys_the_same_in_any_order_and_a_path_by_its_text() -> None:
    make = KeyMaker(invoice, None)
    assert make(frozenset(["x", "y", "z"])) == make(frozenset(["z", "y", "x"]))
    assert make(Path("data/report.csv")) == make(PurePosixPath("data/report.csv"))


def test_a_mutable_set_is_still_refused() -> None:
    with pytest.raises(ArgumentTypeError, match="type set cannot be keyed stably"):
        KeyMaker(invoice, None)({1, 2})


def test_cached_functions_take_these_arguments_on_both_faces() -> None:
    import asyncio

    calls: list[Any] = []
    with cache.new() as c:

        @c.cached("invoice", ttl_seconds=60)
        def total(customer: uuid.UUID, day: date, plan: Plan) -> str:
            calls.append((customer, day, plan))
            return f"{plan.value}:{day.isoformat()}"

        customer = uuid.UUID(int=7)
        assert total(customer, date(2026, 1, 2), Plan.PRO) == "pro:2026-01-02"
        assert total(customer, date(2026, 1, 2), Plan.PRO) == "pro:2026-01-02"
        assert len(calls) == 1

    async def main() -> str:
        async with cache.new_async() as a:

            @a.cached("invoice")
            async def due(when: datetime, amount: Decimal) -> str:
                return f"{amount} at {when:%Y-%m-%d}"

            await due(datetime(2026, 1, 2, tzinfo=UTC), Decimal("9.50"))
            return await due(datetime(2026, 1, 2, tzinfo=UTC), Decimal("9.50"))

    assert asyncio.run(main()) == "9.50 at 2026-01-02"
