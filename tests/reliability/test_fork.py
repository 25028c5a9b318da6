"""After ``os.fork()`` the child opens connections of its own: no socket is shared."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import pytest
from reliability_support import connect_cache, named_clients, unique_client_name

from pevensie_cache import PevensieCache
from pevensie_redis import RedisConnectionError, RedisDriver
from pevensie_redis.testing import RedisServer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def connection_identity(c: PevensieCache) -> dict[str, Any]:
    """Return the server-side client id and local address of a pooled connection of ``c``."""
    driver = c.driver
    assert isinstance(driver, RedisDriver)
    pool = driver.connection_pool
    assert pool is not None
    connection = pool.get_connection()
    try:
        connection.send_command("CLIENT", "ID")
        client_id = int(connection.read_response())
        sock = connection.pipe.socket
        host, port = sock.getsockname()[:2]
        return {"id": client_id, "laddr": f"{host}:{port}", "fd": sock.fileno()}
    finally:
        pool.release(connection)


def run_child(c: PevensieCache, write_end: int) -> None:
    """The child's whole life: use the inherited cache, report, exit without cleanup."""
    status = 1
    try:
        c.set("fork", "child", "written by the child")
        report = {
            "read": c.get("fork", "child"),
            "parent_value": c.get("fork", "parent"),
            "connection": connection_identity(c),
        }
        os.write(write_end, json.dumps(report).encode())
        status = 0
    except BaseException as exc:
        os.write(write_end, json.dumps({"error": repr(exc)}).encode())
    finally:
        os.close(write_end)
        os._exit(status)


def test_a_forked_child_uses_its_own_connections_and_the_parent_keeps_working(
    private_server: RedisServer,
) -> None:
    name = unique_client_name("fork")
    c = connect_cache(private_server, client_name=name, timeout=2000)
    try:
        c.set("fork", "parent", "written by the parent")
        parent_before = connection_identity(c)

        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(read_end)
            run_child(c, write_end)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            raw_report = pipe.read()
        _, wait_status = os.waitpid(pid, 0)
        report = json.loads(raw_report)
        assert "error" not in report, report
        assert os.waitstatus_to_exitcode(wait_status) == 0

        assert report["read"] == "written by the child"
        assert report["parent_value"] == "written by the parent"
        child = report["connection"]
        assert child["id"] != parent_before["id"]  # a different client on the server
        assert child["laddr"] != parent_before["laddr"]  # a different socket

        # The parent's connection is untouched by the child: same client, still working.
        assert c.get("fork", "child") == "written by the child"
        parent_after = connection_identity(c)
        assert parent_after["id"] == parent_before["id"]
        assert parent_after["laddr"] == parent_before["laddr"]
        with private_server.client() as raw:
            addresses = {entry["addr"] for entry in named_clients(raw, name)}
            assert parent_before["laddr"] in addresses
            # The child exited: its connection goes, the parent's stays.
            deadline = time.monotonic() + 5
            while child["laddr"] in addresses and time.monotonic() < deadline:
                time.sleep(0.05)
                addresses = {entry["addr"] for entry in named_clients(raw, name)}
            assert child["laddr"] not in addresses
            assert parent_before["laddr"] in addresses
    finally:
        c.disconnect()


def test_a_connection_lent_across_a_fork_is_never_used_by_the_child(
    private_server: RedisServer,
) -> None:
    """The forking thread holds a lent connection (``connection_pool.get_connection()``).

    Its socket is the parent's: in the child, a command on it is refused
    (``RedisConnectionError``), where it went out on the parent's connection
    and took its reply from there, and giving it back does not make it one of
    the child's connections.
    """
    c = connect_cache(private_server, timeout=2000)
    try:
        driver = c.driver
        assert isinstance(driver, RedisDriver)
        pool = driver.connection_pool
        assert pool is not None
        lent = pool.get_connection()
        lent.send_command("CLIENT", "ID")
        parent_id = int(lent.read_response())

        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(read_end)
            status = 1
            try:
                try:
                    lent.send_command("CLIENT", "ID")
                    on_lent: object = int(lent.read_response())
                except RedisConnectionError as exc:
                    on_lent = f"refused: {exc}"
                pool.release(lent)
                report = {"on_lent": on_lent, "pooled": connection_identity(c)["id"]}
                os.write(write_end, json.dumps(report).encode())
                status = 0
            except BaseException as exc:
                os.write(write_end, json.dumps({"error": repr(exc)}).encode())
            finally:
                os.close(write_end)
                os._exit(status)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            raw_report = pipe.read()
        _, wait_status = os.waitpid(pid, 0)
        report = json.loads(raw_report)
        assert "error" not in report, report
        assert os.waitstatus_to_exitcode(wait_status) == 0
        assert report["on_lent"] != parent_id, "the child used the parent's lent connection"
        assert str(report["on_lent"]).startswith("refused: "), report
        assert report["pooled"] != parent_id, "the child took the parent's connection back"
        # The parent's lent connection is untouched.
        lent.send_command("CLIENT", "ID")
        assert int(lent.read_response()) == parent_id
        pool.release(lent)
    finally:
        c.disconnect()
