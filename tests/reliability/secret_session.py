"""A whole cache session with a password, every output on: run by test_secrets.py.

Reads the password-carrying URL from ``PEVENSIE_CACHE_URL`` and a wrong one
from ``SECRET_SESSION_WRONG_URL``. Logs everything at DEBUG (redis-py's loggers
included) to stderr, prints every repr and every error with its traceback,
and pauses for the parent test to kill the server (``KILL-NOW`` on stdout,
then one line on stdin) so the failing calls on a dead server are covered.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import Any

from pevensie_cache import PevensieCacheError, cache
from pevensie_redis import RedisConfig, RedisDriver

ENV_URL = "PEVENSIE_CACHE_URL"


def show(label: str, call: Callable[[], Any]) -> Any:
    """Run ``call``; print its result, or its error with the full traceback and chain."""
    try:
        result = call()
    except Exception as exc:
        print(f"{label}: {type(exc).__name__}: {exc}")
        print(f"{label}: repr {exc!r} args {exc.args!r}")
        logging.getLogger("secret_session").exception("%s failed", label)
        traceback.print_exc()
        return None
    print(f"{label}: {result!r}")
    return result


def main() -> int:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(message)s")
    for name in ("redis", "redis.connection", "pevensie_cache", "pevensie_redis"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    warnings.simplefilter("always")

    import os

    url = os.environ[ENV_URL]
    wrong_url = os.environ["SECRET_SESSION_WRONG_URL"]

    config = RedisConfig.from_url(url, timeout=1000)
    print("config repr:", repr(config))
    print("config str:", str(config))
    print("config display_url:", config.display_url())
    print("config fields:", [f.name for f in dataclasses.fields(config)])

    c = show("from_env", lambda: cache.from_env(timeout=1000))
    assert c is not None
    print("cache before connect:", repr(c), str(c))
    show("connect", c.connect)
    print("cache:", repr(c), str(c))
    print("driver:", repr(c.driver), str(c.driver))
    driver = c.driver
    assert isinstance(driver, RedisDriver)
    print("driver config:", repr(driver.config))
    print("pool:", repr(driver.connection_pool))

    show("set", lambda: c.set("user", "1", "Ada", ttl_seconds=60))
    show("get", lambda: c.get("user", "1"))
    show("get miss", lambda: c.get("user", "absent"))
    show("delete", lambda: c.delete("user", "1"))
    show("set_many", lambda: c.set_many("user", {"1": "a", "2": "b"}))
    show("set_many ttl", lambda: c.set_many("user", {"1": "a", "2": "b"}, ttl_seconds=60))
    show("get_many", lambda: c.get_many("user", ["1", "2", "3"]))
    show("delete_many", lambda: c.delete_many("user", ["1", "2"]))
    show("bad input", lambda: c.set("user", "", "x"))
    show("connect twice", c.connect)

    # Failing ones: wrong password (URL and fields), unknown option, bad URL.
    show("wrong password url", lambda: cache.from_url(wrong_url, timeout=1000).connect())
    wrong = dataclasses.replace(config, password=config.password + "-wrong")  # type: ignore[operator]
    show("wrong password config", lambda: cache.new(driver=RedisDriver(wrong)).connect())
    show("unknown option", lambda: cache.from_url(url + "&bogus=1"))
    show("bad port", lambda: cache.from_url(url.replace("127.0.0.1:", "127.0.0.1:x")))
    show("fields", lambda: cache.new(driver="redis", password=config.password, port=0))

    print("KILL-NOW", flush=True)
    sys.stdin.readline()
    for label, call in (
        ("get after kill", lambda: c.get("user", "1")),
        ("set after kill", lambda: c.set("user", "1", "x")),
        ("get_many after kill", lambda: c.get_many("user", ["1"])),
        ("connect after kill", lambda: cache.from_url(url, timeout=500).connect()),
    ):
        show(label, call)
    try:
        c.disconnect()
    except PevensieCacheError as exc:
        print("disconnect:", repr(exc))
    print("session done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
