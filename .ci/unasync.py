"""Generate the sync twin of each async module, so sync and async share one body of logic.

The async module is the source; its sync twin is derived token by token:
``async def``/``async with``/``async for`` lose ``async``, ``await`` goes, and
the names in ``NAMES`` are replaced (in code, strings and comments alike), and
``Awaitable[X]`` becomes ``X``. A line ending in ``# unasync: remove`` is
dropped. The result is formatted with ruff and starts with a header naming its
source.

    python .ci/unasync.py           # write every sync twin
    python .ci/unasync.py --check   # exit 1 if a twin differs from what its source gives

``nox -s generate`` writes them; ``nox -s lint`` checks them.
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = "pevensie_cache/src/pevensie_cache"
REDIS = "pevensie_redis/src/pevensie_redis"

PAIRS = [
    (f"{CACHE}/facade_async.py", f"{CACHE}/facade.py"),
    (f"{CACHE}/resource_async.py", f"{CACHE}/resource.py"),
    (f"{CACHE}/instrumented_async.py", f"{CACHE}/instrumented.py"),
    (f"{CACHE}/testing/conformance_async.py", f"{CACHE}/testing/conformance.py"),
    (f"{REDIS}/driver_async.py", f"{REDIS}/driver.py"),
    (f"{REDIS}/cluster_async.py", f"{REDIS}/cluster.py"),
]
"""``(async source, sync twin)`` paths, relative to the repository root."""

NAMES = {
    "AsyncPevensieCache": "PevensieCache",
    "InstrumentedAsyncPevensieCache": "InstrumentedPevensieCache",
    "AsyncCacheDriver": "CacheDriver",
    "AsyncBatchCacheDriver": "BatchCacheDriver",
    "AsyncCacheConformance": "CacheConformance",
    "AsyncRedisDriver": "RedisDriver",
    "AsyncRedisSentinelDriver": "RedisSentinelDriver",
    "AsyncNearRedisDriver": "NearRedisDriver",
    "AsyncRedisClusterDriver": "RedisClusterDriver",
    "AsyncResource": "Resource",
    "AsyncCachedFunction": "CachedFunction",
    "AsyncStringCache": "StringCache",
    "AsyncIterator": "Iterator",
    "AsyncGenerator": "Generator",
    "AsyncIterable": "Iterable",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "StopAsyncIteration": "StopIteration",
    "facade_async": "facade",
    "resource_async": "resource",
    "instrumented_async": "instrumented",
    "primitives_async": "primitives",
    "conformance_async": "conformance",
    "driver_async": "driver",
    "channel_async": "channel",
    "listener_async": "listener",
    "cluster_io_async": "cluster_io",
    "cluster_async": "cluster",
    "pytest_asyncio": "pytest",
}
"""Names replaced wherever they stand as a whole word."""

REMOVE_MARK = "# unasync: remove"
_WORDS = re.compile(r"\b(" + "|".join(map(re.escape, NAMES)) + r")\b")


def unasync(source: str, origin: str) -> str:
    """Return the sync twin of ``source`` (the text of the async module ``origin``)."""
    kept = [line for line in source.splitlines(keepends=True) if not _marked(line)]
    text = "".join(kept)
    offsets = [0]
    for line in kept:
        offsets.append(offsets[-1] + len(line))

    def at(position: tuple[int, int]) -> int:
        return offsets[position[0] - 1] + position[1]

    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement) in absolute offsets
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        keyword = token.type == tokenize.NAME and (
            token.string == "await"
            or (
                token.string == "async"
                and following is not None
                and following.string in ("def", "with", "for")
            )
        )
        if keyword:
            # Drop the keyword and the blanks after it, up to the next token on its line.
            same_line = following is not None and following.start[0] == token.start[0]
            stop = at(following.start) if same_line and following else at(token.end)
            edits.append((at(token.start), stop, ""))
        elif token.string == "Awaitable" and following is not None and following.string == "[":
            # Awaitable[X] -> X: drop the name with its bracket, and the matching close.
            closing = _matching_bracket(tokens, index + 1)
            edits.append((at(token.start), at(following.end), ""))
            edits.append((at(closing.start), at(closing.end), ""))
        elif token.type in (tokenize.NAME, tokenize.STRING, tokenize.COMMENT):
            replaced = _WORDS.sub(lambda m: NAMES[m.group(1)], token.string)
            if replaced != token.string:
                edits.append((at(token.start), at(token.end), replaced))
    for start, stop, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[stop:]
    header = (
        f"# Generated from {Path(origin).name} by .ci/unasync.py: edit that file, "
        "then run `nox -s generate`.\n"
    )
    return header + text


def _matching_bracket(tokens: list[tokenize.TokenInfo], opening: int) -> tokenize.TokenInfo:
    depth = 0
    for token in tokens[opening:]:
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
            if depth == 0:
                return token
    raise ValueError("unbalanced brackets")


def _marked(line: str) -> bool:
    return line.rstrip().endswith(REMOVE_MARK)


def generate(check: bool) -> int:
    """Write (or, with ``check``, compare) every sync twin; return the exit status."""
    stale: list[str] = []
    for source_path, twin_path in PAIRS:
        source = (ROOT / source_path).read_text(encoding="utf-8")
        text = _format(unasync(source, source_path), ROOT / twin_path)
        twin = ROOT / twin_path
        current = twin.read_text(encoding="utf-8") if twin.exists() else None
        if current == text:
            continue
        if check:
            stale.append(twin_path)
        else:
            twin.write_text(text, encoding="utf-8")
            print(f"wrote {twin_path}")
    if stale:
        print("out of date (run `nox -s generate`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


def _format(text: str, path: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(path), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    fixed = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--fix-only",
            "--select",
            "I,F401",
            "--stdin-filename",
            str(path),
            "-",
        ],
        input=result.stdout,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    return fixed.stdout or result.stdout


def main() -> int:
    """Parse the command line and generate (or check)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    return generate(parser.parse_args().check)


if __name__ == "__main__":
    sys.exit(main())
