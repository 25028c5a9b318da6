"""Where a single GET's time goes: from a bare socket up to the facade, layer by layer.

``python benchmarks/hotpath.py [--ops N] [--rounds R]`` starts its own pinned
valkey-server (as ``run.py`` does) and measures, in interleaved rounds, the CPU
time per GET (client + server) of:

- a bare socket with the hiredis reader: the floor any client pays;
- a redis-py connection held by the caller: ``send_packed_command`` + ``read_response``;
- our pool's checkout and return alone (no command);
- our Redis driver's ``get``, then the facade's ``get``;
- raw redis-py ``Redis.get`` on the same pool class and parser.

The differences between rows are the cost of each layer. Asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import socket
import statistics
import time
from collections.abc import Callable

import hiredis
import redis
from contenders import VALUE, pool_shape_of
from server import ValkeyServer, pin_pid, pin_to_one_cpu

from pevensie_cache import cache


def measure(
    cases: dict[str, Callable[[], object]],
    server: ValkeyServer,
    ops: int,
    rounds: int,
) -> dict[str, tuple[float, float]]:
    """Median (client, server) CPU microseconds per call of every case."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for r in range(rounds):
        names = list(cases)
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            call = cases[name]
            gc.collect()
            gc.disable()
            try:
                server_before = server.cpu_ns() or 0
                client_before = time.process_time_ns()
                for _ in range(ops):
                    call()
                client_ns = time.process_time_ns() - client_before
                server_ns = (server.cpu_ns() or 0) - server_before
            finally:
                gc.enable()
            samples[name].append((client_ns / 1000 / ops, server_ns / 1000 / ops))
    return {
        name: (statistics.median(c for c, _ in xs), statistics.median(s for _, s in xs))
        for name, xs in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000, help="GETs per sample")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds")
    args = parser.parse_args()
    pin = pin_to_one_cpu()
    with ValkeyServer() as server:
        if pin.cpu is not None:
            pin_pid(server.pid, pin.cpu)
        ours = cache.from_url(server.url).connect()
        ours.set("bench", "k1", VALUE, ttl_seconds=300)
        driver = ours.driver
        pool = getattr(driver, "connection_pool", None)
        shape = pool_shape_of(driver)
        if pool is None or shape is None:
            raise SystemExit("the Redis driver exposes no redis-py connection pool")
        raw = redis.Redis(connection_pool=shape.make_pool(server.port, decode_responses=True))
        raw.set("raw:k1", VALUE, ex=300)
        packed = b"*2\r\n$3\r\nGET\r\n$8\r\nbench:k1\r\n"
        held = pool.get_connection()
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = hiredis.Reader()

        def bare() -> object:
            sock.sendall(packed)
            reply = reader.gets()
            while reply is False:
                reader.feed(sock.recv(65536))
                reply = reader.gets()
            return reply

        def held_connection() -> object:
            held.send_packed_command((packed,))
            return held.read_response()

        def checkout() -> None:
            pool.release(pool.get_connection())

        cases: dict[str, Callable[[], object]] = {
            "bare socket + hiredis": bare,
            "held redis-py connection": held_connection,
            "pool checkout + return": checkout,
            "driver.get": lambda: driver.get("bench", "k1"),
            "facade get": lambda: ours.get("bench", "k1"),
            "raw redis-py Redis.get": lambda: raw.get("raw:k1"),
        }
        try:
            results = measure(cases, server, args.ops, args.rounds)
        finally:
            pool.release(held)
            sock.close()
            raw.close()
            ours.disconnect()
    print(f"CPU: {pin.note}; {args.rounds} rounds of {args.ops} calls; median µs per call")
    print()
    print("| layer | client µs | server µs | total µs |")
    print("|---|---:|---:|---:|")
    for name, (client, server_us) in results.items():
        print(f"| {name} | {client:.2f} | {server_us:.2f} | {client + server_us:.2f} |")


if __name__ == "__main__":
    main()
