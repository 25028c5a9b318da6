"""The test suites frameworks ship in their source distributions, fetched at test time.

``suite_dir("django", "5.2.20", "tests/cache")`` downloads the sdist of exactly
that release with pip (once: kept in ``$PEVENSIE_SDIST_CACHE``, default
``~/.cache/pevensie-sdists``), extracts the files under ``tests/cache`` and
returns the directory that holds them, so the suite matches the installed
framework.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

CACHE_ENV = "PEVENSIE_SDIST_CACHE"


def cache_root() -> Path:
    root = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "pevensie-sdists")
    return Path(root)


def installed(distribution: str) -> str:
    """Return the installed version of ``distribution``."""
    return version(distribution)


def suite_dir(distribution: str, release: str, subdir: str) -> Path:
    """Return the extracted ``subdir`` of ``distribution``'s sdist at ``release``."""
    target = cache_root() / f"{distribution}-{release}"
    done = target / ".complete"
    if not done.exists():
        archive = _download(distribution, release, cache_root() / "archives")
        _extract(archive, subdir, target)
        done.write_text(archive.name)
    return target


def _download(distribution: str, release: str, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    found = _archive(distribution, release, into)
    if found is None:
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
                *("--no-binary", ":all:", f"{distribution}=={release}", "--dest", str(into)),
            ],
            check=True,
        )
        found = _archive(distribution, release, into)
    if found is None:
        raise LookupError(f"pip downloaded no sdist of {distribution} {release} into {into}")
    return found


def _archive(distribution: str, release: str, into: Path) -> Path | None:
    def normal(name: str) -> str:
        return name.lower().replace("-", "_").replace(".", "_")

    wanted = normal(f"{distribution}-{release}.tar.gz")
    return next((path for path in into.glob("*.tar.gz") if normal(path.name) == wanted), None)


def _extract(archive: Path, subdir: str, target: Path) -> None:
    """Extract the members under ``<top>/<subdir>/`` of ``archive`` into ``target/<subdir>``."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = []
        for member in tar.getmembers():
            _, _, rest = member.name.partition("/")
            if rest == subdir or rest.startswith(subdir + "/"):
                member.name = rest
                members.append(member)
        if not members:
            raise LookupError(f"{archive.name} has no {subdir}/")
        tar.extractall(target, members=members, filter="data")
