"""@cached across processes: what one process stored is a hit in another.

The memoised functions live in a real module, ``aside_workers``, imported by
every worker process: the key (module, qualified name, arguments) is the same
in each, and a result records which process computed it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aside_support import Target, Workers, read_calls

PROCESSES = 4


def one(workers: Workers, index: int, op: str, *args: object, **kwargs: object) -> object:
    """Run one call in worker ``index`` alone; return its value."""
    workers.send({"op": op, "args": list(args), "kwargs": kwargs}, [index])
    [reply] = workers.replies([index])
    assert reply["error"] is None, reply["error"]
    return reply["value"]


def test_cached_entries_written_by_one_process_are_hits_in_another(
    target: Target, calls_file: Path
) -> None:
    with Workers(target.url, 2, calls_file) as workers:
        first, second = workers.pids
        report = one(workers, 0, "monthly_report", "eu", 5)
        assert report == {"region": "eu", "month": 5, "currency": "EUR", "by": first}
        # Another process: the same call, and the same call spelt with the default given.
        assert one(workers, 1, "monthly_report", "eu", 5) == report
        assert one(workers, 1, "monthly_report", "eu", month=5, currency="EUR") == report
        assert len(read_calls(calls_file, "monthly_report")) == 1
        # Other arguments are another entry, computed there.
        assert one(workers, 1, "monthly_report", "eu", 6)["by"] == second  # type: ignore[index]
        assert len(read_calls(calls_file, "monthly_report")) == 2

        # A method: each process has its own instance, and self is not part of the key.
        assert one(workers, 1, "balance", "acc-1") == {
            "account": "acc-1",
            "cents": 1234,
            "by": second,
        }
        assert one(workers, 0, "balance", "acc-1")["by"] == second  # type: ignore[index]
        assert len(read_calls(calls_file, "balance")) == 1

        # An async def function, through the async face of each process.
        assert one(workers, 0, "async_report", "us", 1)["by"] == first  # type: ignore[index]
        assert one(workers, 1, "async_report", "us", 1)["by"] == first  # type: ignore[index]
        assert len(read_calls(calls_file, "async_report")) == 1

    keys = target.scan_keys()
    assert {key.split(":", 1)[0] for key in keys} == {"report", "ledger", "async-report"}
    assert sum(key.startswith("report:aside_workers.monthly_report:") for key in keys) == 2
    assert any(key.startswith("ledger:aside_workers.Ledger.balance:") for key in keys)


@pytest.mark.slow
def test_4_processes_calling_a_locked_cached_function_run_it_once(
    target: Target, calls_file: Path
) -> None:
    with Workers(target.url, PROCESSES, calls_file) as workers:
        replies = workers.call({"op": "slow_report", "args": ["eu"], "at": time.time() + 0.2})
    assert [reply["error"] for reply in replies] == [None] * PROCESSES
    [call] = read_calls(calls_file, "slow_report")
    assert [reply["value"] for reply in replies] == [{"region": "eu", "by": call["pid"]}] * 4
