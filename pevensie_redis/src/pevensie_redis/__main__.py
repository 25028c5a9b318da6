"""Command line: ``python -m pevensie_redis demo``, ``server`` and ``drivers``.

``demo`` runs the demo, ``server`` a local server, ``drivers`` lists the drivers.

``demo [--config path.toml]`` reads ``PEVENSIE_CACHE_URL`` first, then the
``[cache]`` table of the config file, and otherwise starts a throwaway local
server (see :mod:`pevensie_redis.demo`). ``server [--port 6379] [--bind
127.0.0.1]`` runs the bundled Valkey in the foreground until Ctrl-C (see
:mod:`pevensie_redis.server`).
"""

from __future__ import annotations

import argparse
import sys

from pevensie_cache import PevensieCacheError, cache
from pevensie_cache.listing import format_drivers


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m pevensie_redis")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="set, get, TTL expiry, delete and key layout, live")
    demo.add_argument("--config", metavar="PATH", help="a TOML file with a [cache] table")
    commands.add_parser("drivers", help="list the installed cache drivers")
    server = commands.add_parser(
        "server", help="run a local Valkey in the foreground (Ctrl-C stops it), for trying out"
    )
    server.add_argument("--port", type=int, default=6379, help="port to listen on (6379)")
    server.add_argument("--bind", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    args = parser.parse_args(argv)

    if args.command == "drivers":
        print(format_drivers(cache.drivers()))
        return 0
    if args.command == "server":
        from pevensie_redis.server import run_server

        return run_server(args.port, args.bind)
    from pevensie_redis.demo import run_demo

    try:
        return run_demo(args.config)
    except PevensieCacheError as exc:
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
