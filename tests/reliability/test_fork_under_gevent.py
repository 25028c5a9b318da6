"""Under gevent, a forked child stops the parent's listeners and runs its own.

gevent's threads are greenlets, and a greenlet, unlike a thread, goes on in a
forked child (``gunicorn -k gevent`` with ``preload_app``). The near cache's
invalidation listener and the lease waiters' lock-release subscriber of the
parent kept running in the child: there they reconnected on their own, beside
the child's, and outlived the child's ``disconnect()``. Each scenario runs in a
process of its own (gevent must patch the standard library first).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pevensie_redis.testing import RedisServer

_SCRIPT = """
from gevent import monkey

monkey.patch_all()

import json, os, sys, time
import gevent
import redis
from pevensie_cache import cache

host, port, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
raw = redis.Redis(host=host, port=port)
url = f"redis://{host}:{port}/0?timeout=2000&client_name=forked-app"
c = cache.from_url(url + ("&near_cache=true" if what == "near" else "")).connect()

def use(c):
    if what == "near":
        c.set("t", "k", "v")
        c.get("t", "k")
    else:  # a lease waiter subscribes to lock releases while another holder loads
        def slow():
            time.sleep(0.3)
            return "v"
        def loader():
            return "w"
        holder = gevent.spawn(c.get_or_set, "t", "k", slow, 60, lock=True)
        time.sleep(0.05)
        other = cache.from_url(url).connect()
        other.get_or_set("t", "k", loader, 60, lock=True)
        other.disconnect()
        holder.join()
        c.delete("t", "k")

def subscribers(exclude):
    return sorted(
        int(x["id"]) for x in raw.client_list()
        if x["name"] == "forked-app" and x["sub"] != "0" and int(x["id"]) not in exclude
    )

use(c)
deadline = time.monotonic() + 5
while not subscribers(()) and time.monotonic() < deadline:
    time.sleep(0.05)  # the parent's listener, started by its first use
parents = set(subscribers(()))
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    time.sleep(1.0)  # the parent's run, if it goes on here, has woken up by now
    use(c)
    time.sleep(0.5)
    after_use = subscribers(parents)
    c.disconnect()
    deadline = time.monotonic() + 5
    while subscribers(parents) and time.monotonic() < deadline:
        time.sleep(0.1)
    found = {"after_use": after_use, "after_disconnect": subscribers(parents)}
    os.write(w, json.dumps(found).encode())
    os._exit(0)
os.close(w)
os.waitpid(pid, 0)
found = json.loads(os.read(r, 10000).decode())
found["parent_still"] = sorted(set(subscribers(())) & parents)
c.disconnect()
print(json.dumps(found))
"""


@pytest.mark.parametrize("what", ["near", "lock"])
def test_a_child_forked_under_gevent_runs_one_listener_and_closes_it(
    private_server: RedisServer, what: str
) -> None:
    ran = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(_SCRIPT),
            private_server.host,
            str(private_server.port),
            what,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    found = json.loads(ran.stdout.strip().splitlines()[-1])
    # Its own listener only, not the parent's reconnected beside it, and gone at disconnect.
    assert len(found["after_use"]) == 1, found
    assert found["after_disconnect"] == [], found
    assert found["parent_still"], found  # the parent's own listener is untouched
    assert "invalidation channel is down" not in ran.stderr
    assert "Traceback" not in ran.stderr, ran.stderr[-3000:]  # gevent's, for a greenlet ended
