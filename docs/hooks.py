"""MkDocs hooks: pages include the repository's Markdown files, with their links rewritten.

The README, RELIABILITY.md, BENCHMARKS.md, CHANGELOG.md and CONTRIBUTING.md stay the
one source of what they say; a page of the site includes them with a marker line:

- ``<!-- include: RELIABILITY.md -->``: the whole file, without its ``# title``;
- ``<!-- include: BENCHMARKS.md#Near cache (issue 12) -->``: the section under that
  heading (``##`` or ``###``), without the heading, its subheadings raised by one
  level (a long file spread over several pages, each under 200 KB).

Links in the included text are rewritten for the site: ``RELIABILITY.md`` to the page
that includes it, a heading of a file included by section to the page holding that
section, ``docs/guide/...`` to that page of the site, and any other repository path
to the repository on GitHub.

The docstrings are written for ``help()`` and doctest (reST-flavoured): a Markdown
preprocessor added here turns their doctest examples into ``pycon`` code blocks and
their Sphinx roles (``:class:`~pevensie_cache.PevensieCache```) into code, so the API
reference renders them as code rather than as nested quotes.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from markdown import Markdown
from markdown.extensions import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority

REPOSITORY = "https://github.com/Pevensie/pevensie-py"
ROOT = Path(__file__).resolve().parent.parent
INCLUDE = re.compile(r"^<!-- include: ([A-Z]+\.md)(?:#(.+?))? -->$", re.M)
HEADING = re.compile(r"^(#{1,6}) (.+)$")
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
PROMPT = re.compile(r"^(\s*)>>> ")
ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`~?([^`]+)`")

# (repository file, anchor) -> (docs page, anchor on that page or ""), filled by on_files,
# for the files pages include by section (README.md, BENCHMARKS.md).
_SECTION_ANCHORS: dict[tuple[str, str], tuple[str, str]] = {}
# Repository file -> the docs page including it whole.
_WHOLE_FILES: dict[str, str] = {}


def slug(heading: str) -> str:
    """Return the anchor GitHub and MkDocs give a heading (lower case, punctuation dropped)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _lines_outside_fences(lines: list[str]) -> list[bool]:
    inside = False
    flags = []
    for line in lines:
        if FENCE.match(line):
            inside = not inside
            flags.append(False)
            continue
        flags.append(not inside)
    return flags


def readme_section(text: str, title: str, *, raise_levels: bool = True) -> tuple[str, list[str]]:
    """Return the body of the section headed ``title`` and the headings inside it.

    Its subheadings are raised by one level, unless ``raise_levels`` is false (a page
    that writes the section's own heading above the marker keeps them as they are).
    """
    lines = text.splitlines()
    prose = _lines_outside_fences(lines)
    start = level = None
    for i, line in enumerate(lines):
        match = HEADING.match(line) if prose[i] else None
        if match and match.group(2).strip() == title:
            start, level = i + 1, len(match.group(1))
            break
    if start is None or level is None:
        raise ValueError(f"README.md has no heading {title!r}")
    body: list[str] = []
    headings: list[str] = []
    for i in range(start, len(lines)):
        match = HEADING.match(lines[i]) if prose[i] else None
        if match and len(match.group(1)) <= level:
            break
        if match:
            headings.append(match.group(2))
            if raise_levels:
                lines[i] = match.group(1)[1:] + " " + match.group(2)
        body.append(lines[i])
    return "\n".join(body).strip() + "\n", headings


def whole_file(text: str) -> str:
    """Return a Markdown file without its first-level title."""
    return re.sub(r"\A# .*\n", "", text, count=1)


def _first_section(text: str) -> str | None:
    """Return the title of a file's first ``##`` section."""
    for line in text.splitlines():
        if line.startswith("## "):
            return line[3:].strip()
    return None


def on_files(files: Any, config: Any) -> Any:
    """Learn which page includes which file or README section, for the links."""
    _SECTION_ANCHORS.clear()
    _WHOLE_FILES.clear()
    for file in files.documentation_pages():
        source = Path(file.abs_src_path).read_text(encoding="utf-8")
        for name, title in INCLUDE.findall(source):
            if not title:
                _WHOLE_FILES[name] = file.src_uri
                continue
            text = (ROOT / name).read_text(encoding="utf-8")
            _SECTION_ANCHORS[(name, slug(title))] = (file.src_uri, "")
            if title == _first_section(text):
                _WHOLE_FILES.setdefault(name, file.src_uri)  # the file's own link: its start
            for heading in readme_section(text, title)[1]:
                _SECTION_ANCHORS[(name, slug(heading))] = (file.src_uri, slug(heading))
    return files


def _rewrite_link(target: str, source: str, page: str) -> str:
    if target.startswith(("http://", "https://", "mailto:")):
        return target
    path, _, anchor = target.partition("#")
    if not path:
        path = source
    if (path, anchor) in _SECTION_ANCHORS:
        page_to, page_anchor = _SECTION_ANCHORS[(path, anchor)]
    elif path == "README.md" and not anchor:
        page_to, page_anchor = "index.md", ""
    elif path in _WHOLE_FILES:
        page_to, page_anchor = _WHOLE_FILES[path], anchor
    elif path.startswith("docs/") and path.endswith(".md"):
        page_to, page_anchor = path.removeprefix("docs/"), anchor  # a page of this site
    else:
        return f"{REPOSITORY}/blob/main/{path}" + (f"#{anchor}" if anchor else "")
    relative = posixpath.relpath(page_to, posixpath.dirname(page) or ".")
    return relative + (f"#{page_anchor}" if page_anchor else "")


def _rewrite_links(text: str, source: str, page: str) -> str:
    lines = text.splitlines()
    prose = _lines_outside_fences(lines)
    for i, line in enumerate(lines):
        if prose[i]:
            lines[i] = LINK.sub(
                lambda m: "](" + _rewrite_link(m.group(1), source, page) + ")", line
            )
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each include marker with the file or section it names."""

    def include(match: re.Match[str]) -> str:
        name, title = match.group(1), match.group(2)
        text = (ROOT / name).read_text(encoding="utf-8")
        before = markdown[: match.start()].rstrip().rpartition("\n")[2]
        if title:
            body = readme_section(text, title, raise_levels=not HEADING.match(before))[0]
        else:
            body = whole_file(text)
        return _rewrite_links(body, name, page.file.src_uri)

    return INCLUDE.sub(include, markdown)


PAGE_LIMIT = 200 * 1024
"""Bytes a built page may have at most: a reader's browser and a search index stay fast."""

CODE_WIDTH = 88
"""Characters a line of a code block may have at most: readable without scrolling at
1280 px wide, both sidebars shown."""

PRE = re.compile(r"<pre[^>]*>(.*?)</pre>", re.S)
TAG = re.compile(r"<[^>]+>")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Fail the build on a code line wider than :data:`CODE_WIDTH`."""
    import html as html_module

    for block in PRE.findall(html):
        for line in html_module.unescape(TAG.sub("", block)).splitlines():
            if len(line) > CODE_WIDTH:
                raise PluginError(
                    f"{page.file.src_uri}: a code line of {len(line)} characters (at most "
                    f"{CODE_WIDTH}, to be readable at 1280 px): {line.strip()[:60]}..."
                )
    return html


def on_post_page(output: str, page: Any, config: Any) -> str:
    """Fail the build on a page above :data:`PAGE_LIMIT` bytes."""
    size = len(output.encode("utf-8"))
    if size > PAGE_LIMIT:
        raise PluginError(
            f"{page.file.src_uri}: {size // 1024} KB, above the {PAGE_LIMIT // 1024} KB a page "
            "may have: split it"
        )
    return output


class _DocstringMarkup(Preprocessor):
    """Doctest examples become ``pycon`` blocks; Sphinx roles become code spans."""

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        prose = _lines_outside_fences(lines)
        i = 0
        while i < len(lines):
            match = PROMPT.match(lines[i]) if prose[i] else None
            if not match:
                line = lines[i]
                out.append(ROLE.sub(lambda m: f"`{m.group(1)}`", line) if prose[i] else line)
                i += 1
                continue
            indent = match.group(1)
            block = []
            while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
                block.append(lines[i][len(indent) :])
                i += 1
            out += ["", f"{indent}```pycon", *(indent + b for b in block), f"{indent}```", ""]
        return out


class DocstringMarkup(Extension):
    """The Markdown extension holding :class:`_DocstringMarkup`."""

    def extendMarkdown(self, md: Markdown) -> None:  # noqa: N802 - Markdown's name
        """Run before the block parser sees ``>`` as a quote."""
        md.preprocessors.register(_DocstringMarkup(md), "pevensie_docstrings", 29)


@event_priority(100)  # before mkdocstrings reads the extensions
def on_config(config: Any) -> Any:
    """Add :class:`DocstringMarkup` to the Markdown extensions of pages and docstrings."""
    config.markdown_extensions.append(DocstringMarkup())
    return config
