"""``python -m pevensie_cache``: the ``pevensie-cache`` command line; see :mod:`.cli`."""

from __future__ import annotations

import sys

from pevensie_cache.cli import main

if __name__ == "__main__":
    sys.exit(main())
