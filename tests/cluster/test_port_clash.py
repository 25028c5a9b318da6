"""Topology starters retry on fresh ports when a node finds its port taken."""

from __future__ import annotations

import pytest

from pevensie_test_support import TopologyError, retry_on_port_clash


def test_a_port_clash_is_retried_until_a_start_succeeds() -> None:
    calls: list[int] = []

    def start() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TopologyError("node3 exited; its log ends with: bind: Address already in use")
        return "cluster"

    assert retry_on_port_clash(start) == "cluster"
    assert len(calls) == 3


def test_a_port_clash_on_every_attempt_is_raised() -> None:
    calls: list[int] = []

    def start() -> str:
        calls.append(1)
        raise TopologyError("bind: Address already in use")

    with pytest.raises(TopologyError, match="already in use"):
        retry_on_port_clash(start)
    assert len(calls) == 3


def test_other_start_failures_are_not_retried() -> None:
    calls: list[int] = []

    def start() -> str:
        calls.append(1)
        raise TopologyError("the cluster did not become ok within 30 s")

    with pytest.raises(TopologyError, match="did not become ok"):
        retry_on_port_clash(start)
    assert len(calls) == 1
