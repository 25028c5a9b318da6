"""Check which redis-py release, reply parser and command packer this environment really uses.

    python .ci/redis_py_parser.py 5.0.0 hiredis   # redis-py 5.0.0, hiredis's C parser and packer
    python .ci/redis_py_parser.py 5.0.0 python    # redis-py 5.0.0, no hiredis at all

``nox -s compat`` runs it in each of its environments before the tests, so a
"without hiredis" run cannot quietly use hiredis (nor a "with hiredis" run
quietly fall back to Python: redis-py 6.4 and newer ignore hiredis older than
3.2). Exits 1, saying what it found, when the environment is not the one named.
"""

from __future__ import annotations

import importlib.util
import sys


def main() -> int:
    """Check the environment against ``argv``: a redis-py release, ``hiredis`` or ``python``."""
    version, parser = sys.argv[1], sys.argv[2]
    import redis
    import redis.connection
    import redis.utils

    from pevensie_redis.protocol import commands as wire

    installed = importlib.util.find_spec("hiredis") is not None
    c_parser = bool(redis.utils.HIREDIS_AVAILABLE) and "Hiredis" in (
        redis.connection.DefaultParser.__name__
    )
    c_packer = wire.pack is not wire._pack_in_python
    found = f"redis-py {redis.__version__}"
    if installed:
        import hiredis

        found += f", hiredis {hiredis.__version__} installed"
    found += f"; C reply parser: {c_parser}; C command packer: {c_packer}"
    wanted = parser == "hiredis"
    if redis.__version__ != version or not (installed == c_parser == c_packer == wanted):
        print(f"expected redis-py {version} with parser {parser!r}, found {found}")
        return 1
    print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
