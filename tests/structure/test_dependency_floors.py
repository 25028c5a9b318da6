"""Every lower bound the two distributions declare is the release a nox session installs.

A range in a pyproject.toml is a promise that its lowest release works; the promise
holds only while a session runs the tests on exactly that release. The pins are read
from noxfile.py's source (``ast``, no nox needed): ``LOWEST`` (nox -s lowest),
``FRAMEWORKS["lowest"]`` (nox -s integrations), and ``REDIS_PY_RELEASES[0]`` and
``HIREDIS_FLOOR`` (nox -s compat).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = ["pevensie_cache", "pevensie_redis"]
# Installed from this checkout by every session, never from an index.
OWN = {"pevensie-cache", "pevensie-redis"}


def noxfile_constants() -> dict[str, object]:
    """The module-level names of noxfile.py whose values are plain literals."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                try:
                    found[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    continue
    return found


def session_pins() -> dict[str, tuple[str, str]]:
    """Project name -> (the release a session pins, which session), from noxfile.py."""
    constants = noxfile_constants()
    pins: dict[str, tuple[str, str]] = {}

    def add(name: str, version: str, where: str) -> None:
        key = canonicalize_name(name)
        assert key not in pins, f"{name} is pinned twice in noxfile.py ({pins[key][1]}, {where})"
        pins[key] = (version, where)

    lowest = constants["LOWEST"]
    assert isinstance(lowest, dict)
    for name, version in lowest.items():
        add(name, version, "LOWEST")
    frameworks = constants["FRAMEWORKS"]
    assert isinstance(frameworks, dict)
    for pin in frameworks["lowest"]:
        name, _, version = pin.partition("==")
        add(name, version, 'FRAMEWORKS["lowest"]')
    releases = constants["REDIS_PY_RELEASES"]
    assert isinstance(releases, list)
    add("redis", releases[0], "REDIS_PY_RELEASES[0]")
    hiredis = constants["HIREDIS_FLOOR"]
    assert isinstance(hiredis, str)
    add("hiredis", hiredis, "HIREDIS_FLOOR")
    return pins


def declared_requirements() -> list[tuple[str, Requirement]]:
    """(where it is declared, requirement) for every dependency and extra of both distributions."""
    found: list[tuple[str, Requirement]] = []
    for dist in DISTRIBUTIONS:
        project = tomllib.loads((ROOT / dist / "pyproject.toml").read_text(encoding="utf-8"))
        project = project["project"]
        groups = {"dependencies": project.get("dependencies", [])}
        for extra, requirements in project.get("optional-dependencies", {}).items():
            groups[f"[{extra}]"] = requirements
        for group, requirements in groups.items():
            found.extend((f"{dist} {group}", Requirement(r)) for r in requirements)
    return found


def floor_of(requirement: Requirement) -> Version | None:
    floors = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return max(floors) if floors else None


DECLARED = [(where, r) for where, r in declared_requirements() if r.name not in OWN]


def test_both_distributions_declare_requirements() -> None:
    """The reader below finds what the pyprojects declare (a test that reads nothing passes)."""
    names = {canonicalize_name(r.name) for _, r in DECLARED}
    assert {"pluggy", "redis", "pytest", "django", "opentelemetry-api"} <= names


@pytest.mark.parametrize(("where", "requirement"), DECLARED, ids=[f"{w} {r}" for w, r in DECLARED])
def test_the_declared_floor_is_the_release_a_session_pins(
    where: str, requirement: Requirement
) -> None:
    floor = floor_of(requirement)
    assert floor is not None, f"{where}: {requirement} has no lower bound (>=) to prove"
    pins = session_pins()
    pinned = pins.get(canonicalize_name(requirement.name))
    assert pinned is not None, (
        f"{where}: {requirement}: no nox session pins its floor; add it to LOWEST in noxfile.py"
    )
    version, session_name = pinned
    assert Version(version) == floor, (
        f"{where} declares {requirement}, but noxfile.py's {session_name} pins "
        f"{requirement.name}=={version}: change both together"
    )
    assert requirement.specifier.contains(version, prereleases=True)


def test_every_pin_of_the_lowest_session_is_a_declared_floor() -> None:
    """No stale pin: each entry of LOWEST is a requirement of one of the distributions."""
    declared = {canonicalize_name(r.name) for _, r in DECLARED}
    lowest = noxfile_constants()["LOWEST"]
    assert isinstance(lowest, dict)
    stale = sorted(name for name in lowest if canonicalize_name(name) not in declared)
    assert stale == [], f"LOWEST pins what no pyproject declares: {stale}"
