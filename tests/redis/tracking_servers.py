"""Small RESP servers on loopback that answer like servers the tests cannot run.

Garnet and Google Memorystore have no ``CLIENT TRACKING``; Dragonfly tracks
keys only per connection, without ``BCAST`` or ``REDIRECT``. None of them runs
here, so :class:`TrackingServer` answers the few commands a near cache sends
before it gives up (``PING``, ``CLIENT ID``, ``CLIENT SETINFO``, ``CLIENT
TRACKING``, ``SUBSCRIBE``) the way such a server would, and refuses the
tracking options its ``refuses`` names. Everything else is an unknown command.
It stands in only for what those servers refuse; every other near-cache test
runs against a real server.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pevensie_redis.protocol.resp import Resp2Reader

UNKNOWN_SUBCOMMAND = b"-ERR unknown subcommand 'TRACKING'. Try CLIENT HELP.\r\n"


class TrackingServer:
    """A loopback server refusing ``refuses``: ``TRACKING`` (all of it), ``BCAST``, ``REDIRECT``."""

    def __init__(self, refuses: str) -> None:
        self.refuses = refuses
        self.commands: list[list[bytes]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for connection in list(self._connections):
            connection.close()
        for thread in [self._accepting, *self._threads]:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(connection)
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        reader = Resp2Reader()
        with connection:
            while True:
                try:
                    data = connection.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                reader.feed(data)
                while (command := reader.gets()) is not False:
                    self.commands.append(command)
                    connection.sendall(self._answer(command))

    def _answer(self, command: list[bytes]) -> bytes:
        words = [part.upper() for part in command]
        if words[:1] == [b"PING"]:
            return b"+PONG\r\n"
        if words[:2] == [b"CLIENT", b"ID"]:
            return b":7\r\n"
        if words[:2] in ([b"CLIENT", b"SETINFO"], [b"CLIENT", b"SETNAME"]):
            return b"+OK\r\n"
        if words[:2] == [b"CLIENT", b"TRACKING"]:
            return self._tracking(words[2:])
        if words[:1] == [b"SUBSCRIBE"]:
            channel = command[1]
            return b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%b\r\n:1\r\n" % (len(channel), channel)
        return b"-ERR unknown command '%b'\r\n" % command[0]

    def _tracking(self, options: list[bytes]) -> bytes:
        if self.refuses == "TRACKING":
            return UNKNOWN_SUBCOMMAND
        if self.refuses.encode() in options:
            return b"-ERR syntax error\r\n"
        return b"+OK\r\n"


@contextmanager
def tracking_server(refuses: str) -> Iterator[TrackingServer]:
    server = TrackingServer(refuses)
    try:
        yield server
    finally:
        server.close()
