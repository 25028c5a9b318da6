"""A reply of the wrong shape is a protocol error, and the connection it came on is dropped.

A real server never answers ``SET`` with an integer; something that does is
out of step with the driver (a reply meant for another command) or is not a
Redis server. The stand-in below is such a thing: a loopback socket that
speaks RESP2 and answers like Redis (``PING``, ``SET``/``GET`` on a dict,
``OK`` to the rest) except for the replies a test plants. It stands in for a
broken server, which no real server can be made into.
"""

from __future__ import annotations

import asyncio
import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pevensie_cache import AsyncPevensieCache, PevensieCache, cache
from pevensie_redis import RedisProtocolError
from pevensie_redis.protocol.resp import Resp2Reader


class OddServer(socketserver.ThreadingTCPServer):
    """Speaks RESP2 like Redis, but answers the next ``planted[command]`` reply instead."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.store: dict[bytes, bytes] = {}
        self.planted: dict[bytes, list[bytes]] = {}
        self.connections = 0
        self.odd_connection: int | None = None
        """The connection the planted reply went out on."""
        self.commands_after: list[bytes] = []
        """Commands that connection received after its planted reply."""
        self.odd_closed = threading.Event()
        """Set when the client closed that connection."""

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def answer(self, connection: int, args: list[bytes]) -> bytes:
        name = args[0].upper()
        with self.lock:
            if connection == self.odd_connection:
                self.commands_after.append(name)
            planted = self.planted.get(name)
            if planted:
                self.odd_connection = connection
                return planted.pop(0)
            if name == b"PING":
                return b"+PONG\r\n"
            if name == b"GET":
                value = self.store.get(args[1])
                return b"$-1\r\n" if value is None else b"$%d\r\n%b\r\n" % (len(value), value)
            if name == b"SET":
                if b"NX" in [a.upper() for a in args[3:]] and args[1] in self.store:
                    return b"$-1\r\n"
                self.store[args[1]] = args[2]
                return b"+OK\r\n"
            return b"+OK\r\n"


class _Handler(socketserver.BaseRequestHandler):
    server: OddServer

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
            number = self.server.connections
        reader = Resp2Reader()
        sock: socket.socket = self.request
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                reader.feed(data)
                command = reader.gets()
                while command is not False:
                    sock.sendall(self.server.answer(number, command))
                    command = reader.gets()
        except OSError:
            pass
        finally:
            if number == self.server.odd_connection:
                self.server.odd_closed.set()


@pytest.fixture
def odd_server() -> Iterator[OddServer]:
    server = OddServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _url(server: OddServer) -> str:
    return f"redis://127.0.0.1:{server.port}/0?timeout=2000&retries=0"


WRONG_FOR_SET = {
    "an integer": b":1\r\n",
    "an array": b"*1\r\n$2\r\nOK\r\n",
    "a bulk string": b"$5\r\nhello\r\n",
}
WRONG_FOR_GET = {
    "an integer": b":7\r\n",
    "an array": b"*2\r\n$1\r\na\r\n$1\r\nb\r\n",
}

CASES = [
    *[("set", b"SET", reply) for reply in WRONG_FOR_SET.values()],
    *[("add", b"SET", reply) for reply in (b":1\r\n", b"$5\r\nhello\r\n")],
    *[("get", b"GET", reply) for reply in WRONG_FOR_GET.values()],
]
IDS = [
    *[f"set-{name}" for name in WRONG_FOR_SET],
    "add-an integer",
    "add-a bulk string",
    *[f"get-{name}" for name in WRONG_FOR_GET],
]


def _call(c: Any, operation: str) -> Any:
    if operation == "set":
        return c.set("user", "1", "v")
    if operation == "add":
        return c.add("user", "1", "v")
    return c.get("user", "1", None)


def _the_odd_connection_was_dropped(server: OddServer, closed: bool) -> None:
    assert server.odd_connection is not None
    assert closed, "the connection with the odd reply is still open"
    assert server.commands_after == []


@pytest.mark.parametrize(("operation", "command", "reply"), CASES, ids=IDS)
def test_a_reply_of_the_wrong_shape_is_a_protocol_error_on_the_sync_face(
    odd_server: OddServer, operation: str, command: bytes, reply: bytes
) -> None:
    c: PevensieCache = cache.from_url(_url(odd_server)).connect()
    try:
        odd_server.planted[command] = [reply]
        with pytest.raises(RedisProtocolError):
            _call(c, operation)
        _the_odd_connection_was_dropped(odd_server, odd_server.odd_closed.wait(5))
        # The next call works, on another connection.
        c.set("user", "2", "fresh")
        assert c.get("user", "2") == "fresh"
    finally:
        c.disconnect()


@pytest.mark.parametrize(("operation", "command", "reply"), CASES, ids=IDS)
async def test_a_reply_of_the_wrong_shape_is_a_protocol_error_on_the_async_face(
    odd_server: OddServer, operation: str, command: bytes, reply: bytes
) -> None:
    c: AsyncPevensieCache = await cache.from_url_async(_url(odd_server)).connect()
    try:
        odd_server.planted[command] = [reply]
        with pytest.raises(RedisProtocolError):
            await _call(c, operation)
        closed = await asyncio.to_thread(odd_server.odd_closed.wait, 5)
        _the_odd_connection_was_dropped(odd_server, closed)
        await c.set("user", "2", "fresh")
        assert await c.get("user", "2") == "fresh"
    finally:
        await c.disconnect()


class OddClusterNode(OddServer):
    """An :class:`OddServer` that says it is the one node of a Redis Cluster (every slot)."""

    def answer(self, connection: int, args: list[bytes]) -> bytes:
        if [arg.upper() for arg in args[:2]] == [b"CLUSTER", b"SLOTS"]:
            node = b"*3\r\n$9\r\n127.0.0.1\r\n:%d\r\n$2\r\nid\r\n" % self.port
            return b"*1\r\n*3\r\n:0\r\n:16383\r\n" + node
        return super().answer(connection, args)


@pytest.fixture
def odd_cluster_node() -> Iterator[OddServer]:
    server = OddClusterNode()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.mark.parametrize(("operation", "command", "reply"), CASES, ids=IDS)
@pytest.mark.parametrize("face", ["sync", "async"])
async def test_a_cluster_node_s_reply_of_the_wrong_shape_is_a_protocol_error(
    odd_cluster_node: OddServer, face: str, operation: str, command: bytes, reply: bytes
) -> None:
    url = _url(odd_cluster_node) + "&cluster=true"
    c: Any = (
        cache.from_url(url).connect()
        if face == "sync"
        else await cache.from_url_async(url).connect()
    )

    async def run(result: Any) -> Any:
        return await result if face == "async" else result

    try:
        odd_cluster_node.planted[command] = [reply]
        with pytest.raises(RedisProtocolError):
            await run(_call(c, operation))
        closed = await asyncio.to_thread(odd_cluster_node.odd_closed.wait, 5)
        _the_odd_connection_was_dropped(odd_cluster_node, closed)
        await run(c.set("user", "2", "fresh"))
        assert await run(c.get("user", "2")) == "fresh"
    finally:
        await run(c.disconnect())
