"""Run a piece of work in a forked child and bring back what it returned.

Every fork test does the same dance: flush the output, fork, let the child work
with the objects it inherited, report through a pipe, and exit at once without
cleaning up the parent's objects. :func:`in_child` is that dance, once.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable

import pytest

CHILD_BOUND = 20.0
"""Seconds the parent waits for a child before it kills it and calls it hung."""

NEAR_CHILD_BOUND = 60.0
"""The same for a near-cache child, whose own waits for tracking and invalidations add up
to 20-21 s at most (one each of 5-10 s, in turn)."""


def in_child(work: Callable[[], object], bound: float = CHILD_BOUND) -> object:
    """Fork; return what ``work()`` returned in the child (JSON), which must end in time.

    The child reports through a pipe and exits at once (``os._exit``: no clean-up
    of the parent's objects); an exception in the child fails the test with its
    repr, and a child still running after ``bound`` seconds (:data:`CHILD_BOUND`)
    is killed and fails it. A child whose own waits add up to more passes a longer one.
    """
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        status = 1
        try:
            os.write(write_end, json.dumps({"result": work()}).encode())
            status = 0
        except BaseException as exc:
            os.write(write_end, json.dumps({"error": repr(exc)}).encode())
        finally:
            os.close(write_end)
            os._exit(status)
    os.close(write_end)
    # Read as it writes: a report larger than the pipe's buffer (64 KiB) would otherwise
    # block the child in its write, and a child that finished be called hung.
    os.set_blocking(read_end, False)
    chunks: list[bytes] = []
    deadline = time.monotonic() + bound
    while True:
        _drain(read_end, chunks)
        ended, wait_status = os.waitpid(pid, os.WNOHANG)
        if ended:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
            pytest.fail(f"the child still ran {bound:g} s after the fork: it hung")
        time.sleep(0.02)
    _drain(read_end, chunks)
    os.close(read_end)
    report = json.loads(b"".join(chunks) or b"{}")
    assert "error" not in report, report
    assert os.waitstatus_to_exitcode(wait_status) == 0
    return report["result"]


def _drain(fd: int, chunks: list[bytes]) -> None:
    """Append what the non-blocking pipe ``fd`` holds now to ``chunks``."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:  # the child closed its end
            return
        chunks.append(chunk)
