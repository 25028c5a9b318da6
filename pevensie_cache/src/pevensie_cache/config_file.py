"""Reading a cache configuration from a TOML file: its ``[cache]`` table.

The table is what ``cache.from_config`` takes: ``url = "redis://..."``, or
``driver = "redis"`` with the driver's options. The ``pevensie-cache``
command line (``--config FILE``) and the Redis package's demo both read it here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pevensie_cache.errors import ConfigError

__all__ = ["TABLE", "load_config_file"]

TABLE = "cache"
"""The name of the table read from the file."""


def load_config_file(path: str | Path) -> Mapping[str, Any]:
    """Return the ``[cache]`` table of a TOML file, or raise :class:`ConfigError`.

    On Python 3.10 this needs ``tomli`` (``tomllib`` came with 3.11).
    """
    try:
        tomllib: Any = importlib.import_module("tomllib")
    except ModuleNotFoundError:  # Python 3.10
        try:
            tomllib = importlib.import_module("tomli")
        except ModuleNotFoundError:
            raise ConfigError(
                "reading a TOML config file on Python 3.10 needs tomli (pip install tomli)"
            ) from None
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (TOML files are UTF-8): "
            f"byte {exc.start} cannot be read"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    table = document.get(TABLE)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path} has no [{TABLE}] table")
    return table
