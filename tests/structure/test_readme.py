"""The README says what the code does: its set-up commands, option tables, versions and links.

Each test reads README.md (or a document the docs site builds from it) and checks
it against the one place the fact is declared: the noxfile, the options'
declarations, the distributions' metadata.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pevensie_cache.building import CACHE_OPTIONS
from pevensie_cache.memory import OPTIONS as MEMORY_OPTIONS
from pevensie_cache.options import OptionSet
from pevensie_redis.config import OPTIONS as REDIS_OPTIONS
from pevensie_redis.config import default_config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIGURATION = (ROOT / "docs" / "guide" / "configuration.md").read_text(encoding="utf-8")
GLEAM = (ROOT / "docs" / "guide" / "gleam.md").read_text(encoding="utf-8")
README_MAX_LINES = 400
SETUP_COMMANDS = [
    "python -m pip install nox && nox -s demo",
    "python -m pip install nox && nox -s tests",
]


def section(text: str, heading: str) -> str:
    """Return the body of the ``## heading`` section (up to the next ``## ``)."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"the README has a '## {heading}' section"
    return match.group(1)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def nox_sessions() -> set[str]:
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any("nox.session" in ast.unparse(d) for d in node.decorator_list)
    }


def test_the_readme_keeps_exactly_its_two_set_up_commands() -> None:
    body = section(README, "Set-up commands")
    blocks = re.findall(r"```bash\n(.*?)```", body, re.S)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    assert [c for c in commands if c] == SETUP_COMMANDS
    assert {"demo", "tests"} <= nox_sessions()


def option_rows(table_name: str) -> dict[str, list[str]]:
    match = re.search(
        rf"<!-- begin: {table_name} -->\n(.*?)<!-- end: {table_name} -->",
        CONFIGURATION,
        re.S,
    )
    assert match, f"docs/guide/configuration.md marks its {table_name} table"
    rows = {}
    for line in match.group(1).splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        rows[cells[0].strip("`")] = cells
    return rows


@pytest.mark.parametrize(
    ("table_name", "options"),
    [
        ("memory-options", MEMORY_OPTIONS),
        ("redis-options", REDIS_OPTIONS),
        ("cache-options", CACHE_OPTIONS),
    ],
)
def test_the_configuration_reference_lists_every_option_and_nothing_else(
    table_name: str, options: OptionSet
) -> None:
    rows = option_rows(table_name)
    assert list(rows) == [spec.name for spec in options]
    for spec in options:
        doc = rows[spec.name][4]
        assert doc == spec.doc, f"{spec.name}: the reference's text differs from its declaration"
        if spec.query:
            assert f"`?{spec.name}=`" in rows[spec.name][2], f"{spec.name}: its URL form"


def test_the_redis_defaults_in_the_reference_are_the_real_ones() -> None:
    defaults = default_config()
    for name, cells in option_rows("redis-options").items():
        written = cells[3].split("`")[1]
        assert written == repr(getattr(defaults, name)), name


def test_the_compatibility_box_names_the_tested_and_declared_versions() -> None:
    box = section(README, "Compatibility")
    redis_meta = (ROOT / "pevensie_redis" / "pyproject.toml").read_text(encoding="utf-8")
    cache_meta = (ROOT / "pevensie_cache" / "pyproject.toml").read_text(encoding="utf-8")
    redis_range = re.search(r'"redis(>=[^"]+)"', redis_meta).group(1)
    assert f"`redis{redis_range}`" in box
    for meta in (redis_meta, cache_meta):
        python = re.search(r'^requires-python = "([^"]+)"', meta, re.M).group(1)
        assert f'`requires-python = "{python}"`' in box
    noxfile = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    releases = ast.literal_eval(re.search(r"REDIS_PY_RELEASES = (\[.*?\])", noxfile).group(1))
    assert ", ".join(releases) in box
    uvloop_floor = re.search(r'UVLOOP_FLOOR = "([^"]+)"', noxfile).group(1)
    assert f"uvloop {uvloop_floor.removesuffix('.0')} or newer" in box
    assert "the newest uvloop" in box
    assert f"uvloop {uvloop_floor}: " in box


def test_every_contents_link_reaches_a_heading() -> None:
    anchors = {slug(h) for h in re.findall(r"^#{2,3} (.+)$", README, re.M)}
    contents = section(README, "Contents")
    targets = re.findall(r"\]\(#([^)]+)\)", contents)
    assert targets
    assert [t for t in targets if t not in anchors] == []


def test_every_local_link_reaches_a_file_or_heading() -> None:
    anchors = {slug(h) for h in re.findall(r"^#{2,6} (.+)$", README, re.M)}
    for target in re.findall(r"\]\(([^)\s]+)\)", README):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        if path:
            assert (ROOT / path).exists(), target
        else:
            assert anchor in anchors, target


def test_gleam_syntax_appears_only_in_coming_from_gleam() -> None:
    assert "..default_config()" in GLEAM
    assert "..default_config()" not in README
    assert not re.search(r"\w+: \"[^\"]*\"\)", README), "a Gleam-style labelled argument"


def test_the_readme_is_what_a_user_needs_and_short() -> None:
    lines = README.count("\n")
    assert lines <= README_MAX_LINES, f"the README has {lines} lines; the rest goes to docs/"
    headings = re.findall(r"^## (.+)$", README, re.M)
    for needed in ("Install", "A local server", "Quick start", "Async quick start", "Recipes"):
        assert needed in headings
    assert headings.index("Quick start") < headings.index("Set-up commands")


def test_the_json_values_recipe_runs_and_stores_what_it_says() -> None:
    from pevensie_cache import cache

    body = re.search(r"^### JSON values\n(.*?)^### ", README, re.M | re.S)
    assert body, "the README has a JSON values recipe"
    code = re.search(r"```python\n(.*?)```", body.group(1), re.S)
    assert code
    c = cache.new().connect()
    namespace = {"c": c}
    exec(code.group(1), namespace)  # the recipe, as written, on the memory driver
    assert namespace["users"].get("42") == {"name": "Ada", "langs": ["en", "fr"]}
    assert '{"name":"Ada","langs":["en","fr"]}: JSON text' in code.group(1)
    assert c.get("user", "42") == '{"name":"Ada","langs":["en","fr"]}'
