"""The event-loop switch (PEVENSIE_TEST_EVENT_LOOP) reaches every kind of async test."""

from __future__ import annotations

import asyncio

import pytest

from pevensie_test_support import loops


def _kind(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


async def test_pytest_asyncio_runs_the_async_tests_on_the_selected_loop() -> None:
    assert _kind(asyncio.get_running_loop()) == loops.selected()


@pytest.mark.event_loop
def test_helpers_that_run_their_own_loop_get_the_selected_loop() -> None:
    async def running() -> str:
        return _kind(asyncio.get_running_loop())

    assert loops.run(running()) == loops.selected()
    loop = loops.new_event_loop()
    try:
        assert _kind(loop) == loops.selected()
    finally:
        loop.close()


def test_an_unknown_loop_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(loops.LOOP_VARIABLE, "trio")
    with pytest.raises(ValueError, match="expected one of asyncio, uvloop"):
        loops.selected()
