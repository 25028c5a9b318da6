"""Threads sharing one connection: no caller is left waiting for a reader that never comes.

On the sync face threads share a pipe: one of the waiting callers reads for
all, then hands the reader role to another. A caller whose command is still
queued (another thread writes or reads at that moment) must get the role too,
or it waits until its timeout and the pipe is closed as stalled. A burst of
threads released together is where that hand-over is tested hardest.
"""

from __future__ import annotations

import threading
from typing import Any

from reliability_support import connect_cache

from pevensie_redis.testing import RedisServer

THREADS = 32
ROUNDS = 8


def test_bursts_of_threads_on_one_pipe_are_answered_and_never_close_it_as_stalled(
    private_server: RedisServer,
) -> None:
    c = connect_cache(private_server, timeout=2000, retries=0)
    try:
        c.set_many("burst", {str(n): f"v{n}" for n in range(THREADS)}, None)
        channel: Any = c.driver._channel  # type: ignore[attr-defined]
        [pipe] = channel.pipes
        for round_ in range(ROUNDS):
            outcomes: list[Any] = [None] * THREADS
            start = threading.Barrier(THREADS)

            def run(n: int, start: threading.Barrier, outcomes: list[Any]) -> None:
                start.wait()
                try:
                    outcomes[n] = [c.get("burst", str(n)) for _ in range(5)]
                except Exception as exc:
                    outcomes[n] = exc

            threads = [
                threading.Thread(target=run, args=(n, start, outcomes)) for n in range(THREADS)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert outcomes == [[f"v{n}"] * 5 for n in range(THREADS)], round_
            assert not pipe.closed, f"round {round_}: the pipe was closed as stalled"
            assert channel.pipes == [pipe]
    finally:
        c.disconnect()


def test_a_reply_left_unread_by_an_interrupted_caller_is_no_stall_for_the_next_one(
    private_server: RedisServer,
) -> None:
    """Interrupted while it waited to read, a caller leaves its reply to whoever reads next.

    Its reply arrives when nobody reads; long after its deadline, the next
    caller reads it (and drops it) instead of taking the pipe for stalled.
    """
    import signal
    import time

    import pytest

    if not hasattr(signal, "setitimer"):
        pytest.skip("needs setitimer")

    class Stop(Exception):
        pass

    def stop(signum: int, frame: object) -> None:
        raise Stop

    timeout_ms = 500
    c = connect_cache(private_server, timeout=timeout_ms, retries=0)
    previous = signal.signal(signal.SIGALRM, stop)
    try:
        c.set("left", "1", "one")
        channel: Any = c.driver._channel  # type: ignore[attr-defined]
        [pipe] = channel.pipes
        private_server.pause()
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            with pytest.raises(Stop):
                c.driver.get("left", "1")  # type: ignore[attr-defined]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            private_server.resume()
        time.sleep(timeout_ms / 1000 + 0.3)  # its reply came meanwhile; its deadline passed
        assert c.get("left", "1") == "one"
        assert not pipe.closed
    finally:
        signal.signal(signal.SIGALRM, previous)
        c.disconnect()
