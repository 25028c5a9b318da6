"""Threads sharing one connection: no caller is left waiting for a reader that never comes.

On the sync face threads share a pipe: one of the waiting callers reads for
all, then hands the reader role to another. A caller whose command is still
queued (another thread writes or reads at that moment) must get the role too,
or it waits until its timeout and the pipe is closed as stalled. A burst of
threads released together is where that hand-over is tested hardest.

Then a pipe of its own, with an exception from outside landing at one chosen
step of a thread that wakes, reads for, writes for or closes the pipe for the
others; and a subscribed pipe whose heartbeat meets a pushed message.
"""

from __future__ import annotations

import contextlib
import select
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from interrupt_support import Interrupt, interrupt_after
from redis.exceptions import ConnectionError as RedisPyConnectionError
from redis.exceptions import TimeoutError as RedisPyTimeoutError
from reliability_support import MARGIN_S, connect_cache

from pevensie_redis.config import RedisConfig
from pevensie_redis.endpoint import endpoint
from pevensie_redis.pipe import Pipe, _Slot, open_pipe
from pevensie_redis.protocol.commands import PING, SUBSCRIBE_REPLY, pack, pack_get, pack_set
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


@pytest.mark.parametrize("cause", ["stalled", "closed"])
def test_a_command_queued_as_its_pipe_closes_is_a_free_try_only_if_the_server_is_blameless(
    private_server: RedisServer, cause: str
) -> None:
    # A command offered while another caller reads waits in the queue; it is never sent
    # if the pipe closes meanwhile, so the channel may send it elsewhere. A pipe closed
    # under it for a reason of its own (here closed by hand) makes that a free try. A
    # pipe closed as stalled (by a parked caller whose deadline passed with the reader
    # gone: _wait's abort, taken here at that point) does not: the command waited on a
    # server that answers nothing, and a free try opened a new connection to it and
    # waited a whole timeout more (QA saw calls take timeout x (retries + 2)).
    pipe = sync_pipe(private_server, 1000)
    try:
        assert pipe.call(pack_set(b"a", b"A")) == b"OK"
        queued = _Slot(time.monotonic() + 1.0)
        with pipe._lock:  # as _enqueue leaves a command offered while another reads
            pipe._queued.append((pack_get(b"a"), (queued,)))
            if cause == "stalled":
                pipe._abort(pipe._stalled())
        if cause == "closed":
            pipe.close()
        error = queued.outcome
        expected = RedisPyTimeoutError if cause == "stalled" else RedisPyConnectionError
        assert isinstance(error, expected), error
        assert getattr(error, "pevensie_not_sent", False)  # it may go elsewhere
        assert getattr(error, "pevensie_closed_pipe", False) is (cause == "closed"), vars(error)
    finally:
        pipe.close()


def test_a_reply_left_unread_by_an_interrupted_caller_is_no_stall_for_the_next_one(
    private_server: RedisServer,
) -> None:
    """Interrupted while it waited to read, a caller leaves its reply to whoever reads next.

    Its reply arrives when nobody reads; long after its deadline, the next
    caller reads it (and drops it) instead of taking the pipe for stalled.
    """
    import signal

    if not hasattr(signal, "setitimer"):
        pytest.skip("needs setitimer")

    class Stop(Exception):
        pass

    def stop(signum: int, frame: object) -> None:
        raise Stop

    timeout_ms = 1000  # far beyond the 0.1 s alarm: the alarm lands first, even under load
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
        # Its reply came meanwhile (waited for, not guessed), and its deadline passed.
        assert select.select([pipe.socket], [], [], 10)[0], "the paused server never replied"
        time.sleep(timeout_ms / 1000 + 0.3)
        assert c.get("left", "1") == "one"
        assert not pipe.closed
    finally:
        signal.signal(signal.SIGALRM, previous)
        c.disconnect()


# -- interruptions at chosen points, on a pipe of its own ---------------------------------
#
# An exception raised into a thread from outside (a signal handler's) lands between two
# steps of the pipe's code. These tests make it land at one chosen step, once, by wrapping
# what that step calls, and check that the other threads on the pipe still get their own
# replies, or a failure at once, never a wait until their timeout.

PIPE_TIMEOUT_MS = 5000


SLEPT_ON_TIMEOUT_MS = 30000
"""The timeout of the wake-up test's pipe: a caller nobody wakes sleeps this long.

So much longer than a recheck that no stall of a loaded machine passes for it.
"""


def write_once_another_is_queued(pipe: Pipe) -> None:
    """Hold the pipe's next write until a second command is queued: both go out together."""
    send = pipe._send

    def send_after_b_is_queued(data: bytes | memoryview) -> None:
        pipe._send = send
        until(lambda: bool(pipe._queued), "queued b")
        send(data)

    pipe._send = send_after_b_is_queued


def sync_pipe(server: RedisServer, timeout_ms: int = PIPE_TIMEOUT_MS) -> Pipe:
    config = RedisConfig(host=server.host, port=server.port, timeout=timeout_ms)
    return open_pipe(endpoint(config))


class Outcome:
    """A pipe call running in a thread of its own: its reply or exception, once it returns."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.value: object = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], object]) -> None:
        try:
            self.value = call()
        except BaseException as exc:
            self.error = exc

    def wait(self, seconds: float) -> bool:
        """Whether the call returned within ``seconds``."""
        self._thread.join(seconds)
        return not self._thread.is_alive()


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.002)


def read_next_at_once(pipe: Pipe, size: int) -> None:
    """Make the pipe's next read wait until ``size`` bytes have come.

    A server may send replies that came together in more than one write: a
    test whose first caller must find them all in one read waits for them.
    """
    read_once = pipe._read_once

    def buffered() -> int:
        try:
            return len(pipe.socket.recv(size, socket.MSG_PEEK))
        except BlockingIOError:
            return 0

    def read_once_when_all_came(slot: Any) -> int:
        pipe._read_once = read_once  # type: ignore[method-assign]
        until(lambda: buffered() >= size, f"{size} bytes came")
        return read_once(slot)

    pipe._read_once = read_once_when_all_came  # type: ignore[method-assign]


class InterruptedWakeUp:
    """A parked caller's lock whose wake-up, given by ``waker``, is interrupted once.

    The exception lands in the waking thread just before the lock is released,
    as a signal handler's can (the pipe releases it after its own lock).
    """

    def __init__(self, waker: str, landed: list[Interrupt]) -> None:
        self._lock = threading.Lock()
        self._waker = waker
        self.landed = landed

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        if not self.landed and sys._getframe(1).f_code.co_name == self._waker:
            self.landed.append(Interrupt(f"landed in {self._waker} before the wake-up"))
            raise self.landed[-1]
        self._lock.release()


@pytest.mark.parametrize("waker", ["_hand_on", "_wake_next"])
def test_a_wake_up_interrupted_in_the_waking_thread_leaves_no_caller_asleep(
    private_server: RedisServer, waker: str
) -> None:
    """The thread that wakes another is interrupted just before the wake-up.

    ``_hand_on``: the reader, done, hands the reader role to a parked caller
    whose command it has not written yet. ``_wake_next``: the reader wakes a
    parked caller whose reply it read. Either way the woken caller must not
    sleep until its timeout (and then, handed the role, write its command
    too late and fail as stalled): it gets its own reply within a recheck.
    """
    pipe = sync_pipe(private_server, SLEPT_ON_TIMEOUT_MS)
    try:
        assert pipe.call(pack_set(b"a", b"value of a")) == b"OK"
        assert pipe.call(pack_set(b"b", b"value of b")) == b"OK"
        landed: list[Interrupt] = []
        pipe._new_lock = lambda: InterruptedWakeUp(waker, landed)
        if waker == "_wake_next":
            # Both commands written in one go before either caller waits: one reads, the
            # other parks, and both replies come to the reader.
            write_once_another_is_queued(pipe)
        private_server.pause()
        try:
            a = Outcome(lambda: pipe.call(pack_get(b"a")))
            if waker == "_hand_on":  # a reads: b's command waits in the queue for a reader
                until(lambda: pipe._leader is not None, "read for a")
            else:  # a writes, and waits for b's command to write it too
                until(lambda: bool(pipe._waiting), "taken a")
            b = Outcome(lambda: pipe.call(pack_get(b"b")))

            def parked() -> bool:  # one caller reads, the other sleeps
                slots = [*pipe._waiting, *(s for _, ss in pipe._queued for s in ss)]
                return len(slots) == 2 and all(
                    s is pipe._leader or s.lock is not None for s in slots
                )

            until(parked, "parked b")
        finally:
            private_server.resume()
        resumed = time.monotonic()
        assert a.wait(SLEPT_ON_TIMEOUT_MS / 1000 + 10)
        assert b.wait(SLEPT_ON_TIMEOUT_MS / 1000 + 10)
        assert time.monotonic() - resumed < SLEPT_ON_TIMEOUT_MS / 1000 / 2, "a caller slept on"
        assert landed, "the exception never landed"
        outcomes = {"a": a, "b": b}
        interrupted = [k for k, o in outcomes.items() if o.error in landed]
        assert len(interrupted) == 1, {k: (o.value, o.error) for k, o in outcomes.items()}
        [other] = [o for k, o in outcomes.items() if k not in interrupted]
        assert other.error is None, other.error
        assert other.value == b"value of " + ("ab".replace(interrupted[0], "")).encode()
        assert not pipe.closed
        assert pipe.call(pack_get(b"a")) == b"value of a"
    finally:
        pipe.close()


def test_a_reader_interrupted_as_it_takes_the_queued_commands_closes_the_pipe_at_once(
    private_server: RedisServer,
) -> None:
    """The reader takes the commands queued meanwhile for writing, then is interrupted.

    It holds the writer role and has written nothing: the pipe must close
    (those commands may not have gone out whole), so that the next command is
    refused at once as never sent, where it waited for a writer that had
    left and failed after its timeout as if the server had stalled.
    """
    pipe = sync_pipe(private_server)
    landed: list[Interrupt] = []
    take = pipe._take

    def interrupted_take() -> bytes:
        pipe._take = take
        take()  # the queued commands are taken for writing
        landed.append(Interrupt("landed as the reader took the queued commands"))
        raise landed[-1]

    try:
        assert pipe.call(pack_set(b"a", b"value of a")) == b"OK"
        private_server.pause()
        try:
            a = Outcome(lambda: pipe.call(pack_get(b"a")))
            until(lambda: pipe._leader is not None, "read for a")
            b = Outcome(lambda: pipe.call(pack_get(b"b")))  # queued: a reads, and writes it
            until(
                lambda: bool(pipe._queued) and pipe._queued[0][1][0].lock is not None,
                "parked b",
            )
            pipe._take = interrupted_take
        finally:
            private_server.resume()
        assert a.wait(10)
        assert b.wait(10)
        assert landed, "the exception never landed"
        assert [a.error, b.error].count(landed[0]) == 1
        started = time.monotonic()
        with pytest.raises(RedisPyConnectionError) as refused:
            pipe.call(pack_get(b"a"))
        assert time.monotonic() - started < PIPE_TIMEOUT_MS / 1000 / 2
        assert getattr(refused.value, "pevensie_not_sent", False), refused.value
        assert pipe.closed
    finally:
        pipe.close()


def test_a_message_pushed_as_the_heartbeat_ping_goes_out_leaves_the_pipe_open(
    private_server: RedisServer,
) -> None:
    """A subscribed pipe, silent for a heartbeat, sends ``PING`` as a message arrives.

    The message is no sign of a dead connection (a subscribed pipe is owed
    messages while idle): it goes to ``on_push``, and ``PING`` is answered.
    """
    pipe = sync_pipe(private_server)
    messages: list[Any] = []
    try:
        pipe.on_push = messages.append
        assert SUBSCRIBE_REPLY(pipe.call(pack([b"SUBSCRIBE", b"news"])))
        assert not pipe.listen(0.05)  # a heartbeat of silence
        with private_server.client() as raw:
            assert raw.publish("news", "hello") == 1
        readable, _, _ = select.select([pipe.socket], [], [], 5)
        assert readable, "the message never came"
        assert pipe.call(PING, 1.0) == [b"pong", b""]
        assert messages == [[b"message", b"news", b"hello"]]
        assert not pipe.closed
    finally:
        pipe.close()


@pytest.mark.parametrize("lands", ["as it starts closing", "as it fails a queued command"])
def test_an_abort_cut_short_by_an_interrupt_still_fails_every_caller_in_time(
    private_server: RedisServer, lands: str
) -> None:
    """``close()`` is interrupted as it closes a pipe on a stalled server.

    One caller reads (its command sent), two wait with their commands still
    queued behind it. The exception lands at the first step of closing, or as
    the first queued command is failed. Every caller must still fail within
    its timeout (the queued ones as never sent), where they slept until it,
    then raised a ``TypeError`` or, reading a closed socket, spun for good.
    """
    timeout = 1.0
    config = RedisConfig(host=private_server.host, port=private_server.port, timeout=1000)
    pipe = open_pipe(endpoint(config))
    landed: list[Interrupt] = []
    try:
        private_server.pause()
        try:
            a = Outcome(lambda: pipe.call(pack_get(b"a")))
            until(lambda: pipe._leader is not None, "read for a")
            queued = [Outcome(lambda key=key: pipe.call(pack_get(key))) for key in (b"b", b"c")]
            until(
                lambda: [s.lock is not None for _, ss in pipe._queued for s in ss] == [True] * 2,
                "parked b and c",
            )
            step = "_shut" if lands == "as it starts closing" else "_fail"
            original = getattr(pipe, step)
            first_queued = pipe._queued[0][1][0]

            def interrupted(*args: Any) -> None:
                if step == "_fail" and args[0] is not first_queued:
                    original(*args)
                    return
                setattr(pipe, step, original)
                landed.append(Interrupt(f"landed {lands}"))
                raise landed[-1]

            setattr(pipe, step, interrupted)
            started = time.monotonic()
            with pytest.raises(Interrupt):
                pipe.close()
            done = [o.wait(timeout + MARGIN_S - (time.monotonic() - started)) for o in [a, *queued]]
        finally:
            private_server.resume()
        assert done == [True] * 3, "a caller was stranded past its timeout"
        for outcome in [a, *queued]:
            assert isinstance(outcome.error, (RedisPyConnectionError, RedisPyTimeoutError)), (
                outcome.error
            )
        for outcome in queued:  # never written: sent elsewhere by the channel
            assert getattr(outcome.error, "pevensie_not_sent", False), outcome.error
        assert pipe.closed
    finally:
        pipe.close()


def test_a_caller_whose_reply_was_lost_to_an_interrupted_reader_fails_at_once(
    private_server: RedisServer,
) -> None:
    """The reader is interrupted as it hands another caller its reply, which is lost.

    Both commands were written together, and both replies come in one read:
    the reader takes its own, then the exception lands as it hands the other
    caller's over. The pipe closes (the reader was reading). The other caller,
    parked, must then fail at once with a connection error, where its slot,
    in no list any more, was failed by no abort: it took the reader role of
    the closed pipe and spun at full CPU for ever, past its timeout.
    """
    pipe = sync_pipe(private_server, SLEPT_ON_TIMEOUT_MS)
    landed: list[Interrupt] = []
    try:
        assert pipe.call(pack_set(b"a", b"value of a")) == b"OK"
        assert pipe.call(pack_set(b"b", b"value of b")) == b"OK"
        deliver = pipe._deliver

        def interrupted_deliver(waiter: Any, reply: Any) -> None:
            if not landed and waiter is not pipe._leader:  # another caller's reply
                landed.append(Interrupt("landed as the reader handed another caller its reply"))
                raise landed[-1]
            deliver(waiter, reply)

        pipe._deliver = interrupted_deliver
        write_once_another_is_queued(pipe)
        private_server.pause()
        try:
            a = Outcome(lambda: pipe.call(pack_get(b"a")))
            until(lambda: bool(pipe._waiting), "taken a")
            b = Outcome(lambda: pipe.call(pack_get(b"b")))
            until(
                lambda: (
                    len(pipe._waiting) == 2
                    and all(s is pipe._leader or s.lock is not None for s in pipe._waiting)
                ),
                "written both, one reading, the other parked",
            )
        finally:
            private_server.resume()
        resumed = time.monotonic()
        outcomes = [a, b]
        done = [o.wait(10) for o in outcomes]
        assert landed, "the exception never landed"
        assert done == [True, True], "a caller is stranded on the closed pipe"
        assert time.monotonic() - resumed < SLEPT_ON_TIMEOUT_MS / 1000 / 2
        [interrupted] = [o for o in outcomes if o.error is landed[0]]
        [other] = [o for o in outcomes if o is not interrupted]
        assert isinstance(other.error, RedisPyConnectionError), (other.value, other.error)
        assert pipe.closed
    finally:
        pipe.close()
    fresh = sync_pipe(private_server)
    try:
        assert fresh.call(pack_get(b"b")) == b"value of b"
    finally:
        fresh.close()


PATIENCE_S = 10.0
"""How long a :class:`HookedLock`'s caller waits to be woken by another."""


class HookedLock:
    """A parked caller's lock that calls ``on_wait`` as its caller waits, ``on_release`` as
    another wakes it.

    Its caller is woken by another caller only, never by the pipe's recheck timer
    (``_RECHECK``, 0.5 s), which it waits out up to :data:`PATIENCE_S`: the tests that
    use it arrange the order of the wakes, and a caller that woke itself on a loaded
    machine (a wake-up slowed by the hooks) woke the next one early, out of that order.
    """

    def __init__(
        self,
        on_wait: Callable[[HookedLock], None],
        on_release: Callable[[HookedLock], None],
    ) -> None:
        self._lock = threading.Lock()
        self._on_wait = on_wait
        self._on_release = on_release

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if blocking:
            self._on_wait(self)
            if timeout >= 0:
                timeout = max(timeout, PATIENCE_S)  # a lost wake-up still ends the wait
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._on_release(self)
        self._lock.release()


def test_a_caller_interrupted_as_it_waits_to_read_after_the_woken_ones_stalls_nobody(
    private_server: RedisServer,
) -> None:
    """A caller that finds no reader while callers whose replies came are being woken
    takes the reader role and waits to be woken after them (to write what they send
    meanwhile in one write). Interrupted as it waits, it gives the role up: the woken
    callers get their replies, its command, never written, leaves the queue, and the
    next caller gets its own reply.
    """
    pipe = sync_pipe(private_server, SLEPT_ON_TIMEOUT_MS)
    landed: list[Interrupt] = []
    late: list[Outcome] = []
    late_thread: list[int] = []

    def interrupt_the_next_reader(parked: HookedLock) -> None:
        leader = pipe._leader
        if (
            not landed
            and threading.get_ident() in late_thread
            and leader is not None
            and leader.lock is parked
        ):
            landed.append(Interrupt("landed as it waited to read after the woken callers"))
            raise landed[-1]

    def late_call() -> object:
        late_thread.append(threading.get_ident())
        return pipe.call(pack_get(b"d"))

    first_wake = threading.Lock()

    def call_as_the_first_is_woken(parked: HookedLock) -> None:
        with first_wake:
            if late:
                return
            late.append(Outcome(late_call))  # the others are still to be woken
        until(lambda: bool(landed), "the late caller waited to read, and was interrupted")

    try:
        for name in (b"a", b"b", b"c", b"d"):
            assert pipe.call(pack_set(name, b"value of " + name)) == b"OK"
        send = pipe._send

        def send_once_two_more_are_queued(data: bytes | memoryview) -> None:
            pipe._send = send
            until(lambda: len(pipe._queued) == 2, "queued two more")
            send(data)

        pipe._new_lock = lambda: HookedLock(interrupt_the_next_reader, call_as_the_first_is_woken)
        pipe._send = send_once_two_more_are_queued
        read_next_at_once(pipe, 3 * len(b"$10\r\nvalue of a\r\n"))
        private_server.pause()
        try:  # three commands written before the server answers: their replies come at once
            first = Outcome(lambda: pipe.call(pack_get(b"a")))
            until(lambda: pipe._writer is not None, "writing the first")
            second = Outcome(lambda: pipe.call(pack_get(b"b")))
            until(lambda: len(pipe._queued) == 1, "queued the second")
            third = Outcome(lambda: pipe.call(pack_get(b"c")))
            until(lambda: len(pipe._waiting) == 3, "written all three")
        finally:
            private_server.resume()
        for outcome in (first, second, third):
            assert outcome.wait(10)
        assert late, "no caller came as the others were woken"
        assert late[0].wait(10)
        assert landed, "the exception never landed"
        assert late[0].error is landed[0]
        assert [(o.value, o.error) for o in (first, second, third)] == [
            (b"value of a", None),
            (b"value of b", None),
            (b"value of c", None),
        ]
        assert not pipe.closed
        pipe._new_lock = threading.Lock
        assert pipe.call(pack_get(b"a")) == b"value of a"
        assert pipe.call(pack_get(b"b")) == b"value of b"
        assert not pipe._queued
    finally:
        pipe.close()


@pytest.mark.parametrize(
    "lands", ["as its command is queued", "as its batch is queued", "as it waits to read"]
)
def test_a_caller_interrupted_as_it_queues_behind_the_woken_ones_leaves_no_command_to_run_late(
    private_server: RedisServer, lands: str
) -> None:
    """A caller finds no reader while callers whose replies came are being woken: it
    queues its ``SET`` (alone, or in a batch) for the reader after them (itself), and is
    interrupted right after the queueing returns, or as it waits to read. The ``SET``
    must never run after its caller left: withdrawn, it is not written when the pipe's
    next command goes out, where it stayed queued with no writer and no reader, went
    out with that next command (on an idle pipe, any time later) and overwrote the
    newer value another client had set meanwhile.
    """
    pipe = sync_pipe(private_server, SLEPT_ON_TIMEOUT_MS)
    window = threading.Event()
    carry_on = threading.Event()

    first_wake = threading.Lock()

    def hold_the_first_wake_up(parked: HookedLock) -> None:
        # The first woken caller wakes the next: the others are still to be woken,
        # and nobody reads or writes.
        with first_wake:
            if window.is_set() or not pipe._to_wake or pipe._leader is not None:
                return
            window.set()
        carry_on.wait(10)

    def interrupt_the_main_thread(parked: HookedLock) -> None:
        if lands == "as it waits to read" and threading.current_thread() is threading.main_thread():
            raise Interrupt("landed as it waited to read after the woken callers")

    try:
        for name in (b"a", b"b", b"c"):
            assert pipe.call(pack_set(name, b"value of " + name)) == b"OK"
        send = pipe._send

        def send_once_two_more_are_queued(data: bytes | memoryview) -> None:
            pipe._send = send
            until(lambda: len(pipe._queued) == 2, "queued two more")
            send(data)

        pipe._new_lock = lambda: HookedLock(interrupt_the_main_thread, hold_the_first_wake_up)
        pipe._send = send_once_two_more_are_queued
        read_next_at_once(pipe, 3 * len(b"$10\r\nvalue of a\r\n"))
        private_server.pause()
        try:  # three commands written before the server answers: their replies come at once
            first = Outcome(lambda: pipe.call(pack_get(b"a")))
            until(lambda: pipe._writer is not None, "writing the first")
            second = Outcome(lambda: pipe.call(pack_get(b"b")))
            until(lambda: len(pipe._queued) == 1, "queued the second")
            third = Outcome(lambda: pipe.call(pack_get(b"c")))

            def one_reads_two_sleep() -> bool:
                return len(pipe._waiting) == 3 and all(
                    s is pipe._leader or s.lock is not None for s in pipe._waiting
                )

            until(one_reads_two_sleep, "written all three, one reading, two parked")
        finally:
            private_server.resume()
        try:
            assert window.wait(10), "the replies never came in one read"
            assert pipe._to_wake
            assert pipe._leader is None
            assert pipe._writer is None
            interrupted_call = (
                (lambda: pipe.call_many([pack_get(b"a"), pack_set(b"k", b"stale")]))
                if lands == "as its batch is queued"
                else (lambda: pipe.call(pack_set(b"k", b"stale")))
            )
            landing = (
                contextlib.nullcontext()
                if lands == "as it waits to read"
                else interrupt_after(pipe, "_enqueue")
            )
            with landing, pytest.raises(Interrupt):
                interrupted_call()
        finally:
            carry_on.set()
        for outcome in (first, second, third):
            assert outcome.wait(10)
        assert [(o.value, o.error) for o in (first, second, third)] == [
            (b"value of a", None),
            (b"value of b", None),
            (b"value of c", None),
        ]
        with private_server.client() as raw:
            assert raw.get("k") is None  # the interrupted SET did not run (nor has it yet)
            raw.set("k", "newer")
            pipe._new_lock = threading.Lock
            assert pipe.call(pack_get(b"a")) == b"value of a"  # the pipe's next command
            assert raw.get("k") == "newer", "the interrupted SET ran after its caller left"
        assert not pipe.closed
    finally:
        pipe.close()


def test_threads_that_come_and_go_leave_no_descriptor_behind(
    private_server: RedisServer,
) -> None:
    """Each waiting thread parks on a waker of its own (an eventfd on Linux), freed as it ends."""
    import os

    import pytest

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    c = connect_cache(private_server, timeout=2000, retries=0)
    try:
        c.set_many("churn", {str(n): f"v{n}" for n in range(THREADS)}, None)

        def burst() -> int:
            outcomes: list[Any] = [None] * THREADS

            def run(n: int) -> None:
                outcomes[n] = [c.get("churn", str(n)) for _ in range(5)]

            threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert outcomes == [[f"v{n}"] * 5 for n in range(THREADS)]
            return len(os.listdir("/proc/self/fd"))

        after_first = burst()
        later = [burst() for _ in range(3)]
        # A waker kept past its thread would add two descriptors per thread and burst
        # (64 here, 192 by the third); the worker process's other descriptors (the
        # channel's pipes, what earlier tests left to the garbage collector) come and go
        # by a few, either way.
        assert max(later) < after_first + THREADS, (after_first, later)
    finally:
        c.disconnect()


def test_a_wait_nested_in_another_on_one_thread_leaves_the_outer_one_its_wake() -> None:
    """A signal handler that waits on the thread's waker may take the wake meant for the wait
    it interrupted; that one is still woken (not left to its timeout)."""
    import signal
    import time

    import pytest

    from pevensie_redis.wakers import Waker

    if not hasattr(signal, "setitimer"):
        pytest.skip("needs setitimer")
    try:
        waker = Waker()
    except (AttributeError, OSError):
        pytest.skip("no eventfd here")
    inner: list[bool] = []
    waiting = threading.Event()

    def handler(signum: int, frame: object) -> None:
        waiting.set()
        inner.append(waker.acquire(True, 10.0))

    def wake_once() -> None:
        waiting.wait(10.0)
        time.sleep(0.1)  # the handler's wait has begun
        waker.release()

    previous = signal.signal(signal.SIGALRM, handler)
    helper = threading.Thread(target=wake_once)
    helper.start()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)  # lands once the outer wait has begun
        outer = waker.acquire(True, 10.0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        helper.join()
    assert inner == [True]
    assert outer is True
