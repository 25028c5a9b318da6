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

            def run(n: int) -> None:
                start.wait()
                try:
                    outcomes[n] = [c.get("burst", str(n)) for _ in range(5)]
                except Exception as exc:
                    outcomes[n] = exc

            threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert outcomes == [[f"v{n}"] * 5 for n in range(THREADS)], round_
            assert not pipe.closed, f"round {round_}: the pipe was closed as stalled"
            assert channel.pipes == [pipe]
    finally:
        c.disconnect()
