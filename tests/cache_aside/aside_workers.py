"""What the worker processes of the cache-aside tests run: a tiny command loop, and memoised code.

Each worker is a separate OS process started by ``aside_support.Workers``
(``python -c "import aside_workers; aside_workers.serve()"``) with this folder
on ``PYTHONPATH``, so this module has the same name, ``aside_workers``, in
every process: a ``@cached`` function defined here gets the same key
everywhere, as a user's module would.

The caches are built from ``PEVENSIE_CACHE_URL`` at import, as an application
would build its own. A worker prints ``{"ready": pid}``, then reads one JSON
command a line from stdin (the parent writes the same line to every worker at
once, so their calls race; with ``"at"``, each waits for that moment first)
and answers one JSON line each (``{pid}`` in an argument is the worker's PID)::

    {"op": "add", "args": ["race", "k", "by {pid}"], "at": <time.time() + 0.2>}
    -> {"value": true, "error": null, "started": <time.time()>, "ended": ...}

Every loader and memoised function appends a line to the file named by
``ASIDE_CALLS`` when it starts (``{"pid", "what", "at"}``), so the parent
counts the calls of every process in one place.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from pevensie_cache import cache

c = cache.from_env()
ac = cache.from_env_async()


def record_call(what: str) -> None:
    """Append one line saying this process started ``what`` now (one write: atomic)."""
    line = json.dumps({"pid": os.getpid(), "what": what, "at": time.time()}) + "\n"
    fd = os.open(os.environ["ASIDE_CALLS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@c.cached("report", ttl_seconds=300)
def monthly_report(region: str, month: int, *, currency: str = "EUR") -> dict[str, Any]:
    """A memoised function: its result names the process that computed it."""
    record_call("monthly_report")
    return {"region": region, "month": month, "currency": currency, "by": os.getpid()}


@c.cached("slow-report", ttl_seconds=300, lock=True)
def slow_report(region: str) -> dict[str, Any]:
    """A memoised function with a cross-process lock, slow enough for callers to pile up."""
    record_call("slow_report")
    time.sleep(0.3)
    return {"region": region, "by": os.getpid()}


class Ledger:
    """A memoised method: ``self`` (a different object in every process) is not in the key."""

    def __init__(self) -> None:
        self.opened_by = os.getpid()

    @c.cached("ledger", ttl_seconds=300)
    def balance(self, account: str) -> dict[str, Any]:
        """Return the balance of ``account``, and which process computed it."""
        record_call("balance")
        return {"account": account, "cents": 1234, "by": self.opened_by}


@ac.cached("async-report", ttl_seconds=300)
async def async_report(region: str, month: int) -> dict[str, Any]:
    """A memoised ``async def`` function."""
    record_call("async_report")
    await asyncio.sleep(0)
    return {"region": region, "month": month, "by": os.getpid()}


def _loader(sleep: float) -> str:
    record_call("loader")
    time.sleep(sleep)
    return f"loaded by {os.getpid()}"


def _run(command: dict[str, Any]) -> Any:
    op = command["op"]
    me = str(os.getpid())
    args: list[Any] = [
        arg.replace("{pid}", me) if isinstance(arg, str) else arg for arg in command["args"]
    ]
    kwargs = command.get("kwargs", {})
    if op == "add":
        return c.add(*args, **kwargs)
    if op == "get_or_set":
        sleep = float(command.get("sleep", 0.0))
        rt, key = args
        return c.get_or_set(rt, key, lambda: _loader(sleep), **kwargs)
    if op == "monthly_report":
        return monthly_report(*args, **kwargs)
    if op == "slow_report":
        return slow_report(*args, **kwargs)
    if op == "balance":
        return Ledger().balance(*args, **kwargs)
    if op == "async_report":
        return asyncio.run(_async_report(*args, **kwargs))
    raise ValueError(f"unknown op {op!r}")


async def _async_report(*args: Any, **kwargs: Any) -> Any:
    async with ac:
        return await async_report(*args, **kwargs)


def serve() -> None:
    """Connect, say ready, then answer one command per stdin line until stdin closes."""
    c.connect()
    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        at = command.get("at")  # a moment every worker waits for, so their calls overlap
        while at is not None and time.time() < at:
            time.sleep(min(0.001, max(0.0, at - time.time())))
        started = time.time()
        try:
            value, error = _run(command), None
        except Exception as exc:
            value, error = None, [type(exc).__name__, str(exc)]
        reply = {"value": value, "error": error, "started": started, "ended": time.time()}
        print(json.dumps(reply), flush=True)
    c.disconnect()
