"""Random interleavings of reads, own writes and another client's writes, on a real server.

Hypothesis draws a sequence of actions on a few keys; a model numbers every
version each key goes through on the server. A read's value names the version
it saw, and must never be older than its key's *floor*:

- the cache's own write or delete raises the floor to that version at once
  (read-your-writes);
- another client's write or delete does not, until its invalidation is known
  to have arrived (``settle``: every invalidation sent before now, in order);
  meanwhile a read may still see the version before it, never an older one;
- a read raises the floor to the version it saw (a later read never goes back).

``racing_set`` has another client write while the cache reads the key: the
read may see either version, but once the write's invalidation has arrived the
old one must not have stayed cached.

Both faces; the async face's listener runs on its own event loop thread, so
invalidations arrive while the actions run, as they would in an application.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from near_support import FACES, Face, near_url, open_face, settle

from pevensie_redis.testing import RedisServer

# The outcome depends on the server: key tracking and its invalidations are the server's.
pytestmark = pytest.mark.server_dependent

KEYS = ["a", "b", "c"]
ACTIONS = [
    "get",
    "get_many",
    "set",
    "delete",
    "foreign_set",
    "foreign_delete",
    "racing_set",
    "flush",
    "settle",
]
_examples = itertools.count()


@pytest.fixture(scope="module", params=FACES)
def module_face(
    request: pytest.FixtureRequest, pevensie_redis_server: RedisServer
) -> Iterator[tuple[Face, redis.Redis]]:
    pevensie_redis_server.ensure_running()
    face = open_face(request.param, near_url(pevensie_redis_server.url, "near_cache=true"))
    raw = pevensie_redis_server.client()
    yield face, raw
    raw.close()
    face.close()


class Model:
    """The versions each key went through, and the oldest each read may still see."""

    def __init__(self) -> None:
        self.version = dict.fromkeys(KEYS, 0)
        self.absent = {key: {0} for key in KEYS}  # versions at which the key did not exist
        self.floor = dict.fromkeys(KEYS, 0)

    def write(self, key: str, *, deleted: bool, own: bool) -> int:
        self.version[key] += 1
        if deleted:
            self.absent[key].add(self.version[key])
        if own:
            self.floor[key] = self.version[key]
        return self.version[key]

    def settle(self) -> None:
        self.floor = dict(self.version)

    def check(self, key: str, value: str | None, where: str) -> None:
        floor = self.floor[key]
        if value is None:
            seen = [v for v in self.absent[key] if v >= floor]
            assert seen, f"{where}: {key} read as absent, older than version {floor}"
            return
        version = int(value)
        assert version >= floor, f"{where}: {key} read at version {version}, floor {floor}"
        self.floor[key] = version


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    actions=st.lists(
        st.tuples(st.sampled_from(ACTIONS), st.sampled_from(KEYS), st.sets(st.sampled_from(KEYS))),
        max_size=40,
    )
)
def test_no_read_is_older_than_the_last_invalidation_received(
    module_face: tuple[Face, redis.Redis], actions: list[tuple[str, str, set[str]]]
) -> None:
    face, raw = module_face
    resource = f"il{next(_examples)}"  # fresh keys for every example
    model = Model()
    for step, (action, key, many) in enumerate(actions):
        where = f"step {step} ({action} {key})"
        full = f"{resource}:{key}"
        if action == "get":
            model.check(key, face.get(resource, key, None), where)
        elif action == "get_many":
            names = sorted(many) or [key]
            found = face.get_many(resource, names)
            for name in names:
                model.check(name, found.get(name), where)
        elif action == "set":
            face.set(resource, key, str(model.write(key, deleted=False, own=True)))
        elif action == "delete":
            face.delete(resource, key)
            model.write(key, deleted=True, own=True)
        elif action == "foreign_set":
            raw.set(full, str(model.write(key, deleted=False, own=False)))
        elif action == "racing_set":
            version = model.write(key, deleted=False, own=False)
            writer = threading.Thread(target=raw.set, args=(full, str(version)))
            writer.start()
            value = face.get(resource, key, None)
            writer.join()
            model.check(key, value, where)  # either version: the floor is below both
        elif action == "foreign_delete":
            raw.delete(full)
            model.write(key, deleted=True, own=False)
        elif action == "flush":  # another client deletes every key of this example at once
            raw.delete(*[f"{resource}:{name}" for name in KEYS])
            for name in KEYS:
                model.write(name, deleted=True, own=False)
        else:
            settle(face, raw)
            model.settle()
    settle(face, raw)
    model.settle()
    for key in KEYS:
        model.check(key, face.get(resource, key, None), "after settling")
