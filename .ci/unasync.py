"""Generate the sync twin of each async module, so sync and async share one body of logic.

The async module is the source; its sync twin is derived token by token:
``async def``/``async with``/``async for`` lose ``async``, ``await`` goes, and
the names in ``NAMES`` are replaced (in code, strings and comments alike), and
``Awaitable[X]`` becomes ``X``. A line ending in ``# unasync: remove`` is
dropped. The result is formatted with ruff and starts with a header naming its
source and saying not to edit it.

Docstrings must be true of the face they are read on:

- the module docstring's opening paragraphs, up to the one that names
  ``.ci/unasync.py`` (where the source says what it is the source of), are the
  source's own; the twin opens with its ``INTROS`` entry instead, and the rest
  of the docstring follows with the names replaced;
- no other string or comment may name both an async name and its sync one
  (``channel_async`` and ``channel``): replaced, it would name one thing twice.

The generator stops with an error when its configuration no longer fits the
sources: a name of ``NAMES`` that no source uses, a source without the intro
paragraph, a twin without an ``INTROS`` entry, or a string naming both faces.

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
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = "pevensie_cache/src/pevensie_cache"
REDIS = "pevensie_redis/src/pevensie_redis"

PAIRS = [
    (f"{CACHE}/facade_async.py", f"{CACHE}/facade.py"),
    (f"{CACHE}/resource_async.py", f"{CACHE}/resource.py"),
    (f"{CACHE}/instrumented_async.py", f"{CACHE}/instrumented.py"),
    (f"{CACHE}/layers_async.py", f"{CACHE}/layers.py"),
    (f"{CACHE}/locks_async.py", f"{CACHE}/locks.py"),
    (f"{CACHE}/freshness_async.py", f"{CACHE}/freshness.py"),
    (f"{CACHE}/lease_async.py", f"{CACHE}/lease.py"),
    (f"{CACHE}/testing/conformance_async.py", f"{CACHE}/testing/conformance.py"),
    (f"{REDIS}/driver_async.py", f"{REDIS}/driver.py"),
    (f"{REDIS}/cluster_io_async.py", f"{REDIS}/cluster_io.py"),
    (f"{REDIS}/cluster_async.py", f"{REDIS}/cluster.py"),
    (f"{REDIS}/replicas_async.py", f"{REDIS}/replicas.py"),
    (f"{REDIS}/channel_async.py", f"{REDIS}/channel.py"),
    (f"{REDIS}/listener_async.py", f"{REDIS}/listener.py"),
    (f"{REDIS}/cluster_near_async.py", f"{REDIS}/cluster_near.py"),
    (f"{REDIS}/sentinel_async.py", f"{REDIS}/sentinel.py"),
    (f"{REDIS}/direct_async.py", f"{REDIS}/direct.py"),
    (f"{REDIS}/lock_releases_async.py", f"{REDIS}/lock_releases.py"),
]
"""``(async source, sync twin)`` paths, relative to the repository root."""

INTROS = {
    f"{CACHE}/facade.py": """\
The cache object of the sync face: :class:`PevensieCache`.

Generated from ``facade_async.py`` (:class:`AsyncPevensieCache`, the async
face) by ``.ci/unasync.py``: the same logic without ``await``, for threads.""",
    f"{CACHE}/resource.py": """\
Resources and memoised functions of the sync face: values of any type through a codec.

``cache.resource("user", codec="json")`` binds one resource type and a codec
(:class:`Resource`); ``@cache.cached("report")`` memoises a function
(:class:`CachedFunction`). Both sit on a cache's string operations.

Generated from ``resource_async.py`` (the async face) by ``.ci/unasync.py``.""",
    f"{CACHE}/instrumented.py": """\
The instrumented sync cache: every operation timed and counted, then the cache's own code.

Generated from ``instrumented_async.py`` (the async face) by ``.ci/unasync.py``.""",
    f"{CACHE}/layers.py": """\
What may sit between the sync facade and its driver: a namespace, and fail-open.

Generated from ``layers_async.py`` (the async face) by ``.ci/unasync.py``.""",
    f"{CACHE}/locks.py": """\
Locks of the sync face: ``with c.lock("report", "monthly"):`` holds a lease lock.

Generated from ``locks_async.py`` (:class:`AsyncCacheLock`, the async face) by
``.ci/unasync.py``.""",
    f"{CACHE}/freshness.py": """\
Freshness controls and tags for cache-aside, sync face.

Generated from ``freshness_async.py`` (the async face) by ``.ci/unasync.py``:
background refreshes run in a small pool of threads.""",
    f"{CACHE}/lease.py": """\
Loading under a lease lock, sync face: one loader across processes, waiters woken on release.

Generated from ``lease_async.py`` (the async face) by ``.ci/unasync.py``.""",
    f"{CACHE}/testing/conformance.py": """\
The conformance suite of the sync face: the behaviour every driver must have.

Generated from ``conformance_async.py`` (the async suite) by ``.ci/unasync.py``:
one set of case definitions for both faces. Subclass :class:`CacheConformance`
and override the ``cache_under_test`` fixture (and ``stored_keys`` when the
store can list its keys); see :mod:`pevensie_cache.testing`.""",
    f"{REDIS}/driver.py": """\
The Redis driver for one server (or a primary found through Sentinel), sync face.

Generated from ``driver_async.py`` (the async face) by ``.ci/unasync.py``: the
same logic, over the sync channel (:mod:`~pevensie_redis.channel`).""",
    f"{REDIS}/cluster.py": """\
The Redis Cluster mode of the driver (``RedisConfig(cluster=True)``), sync face.

Generated from ``cluster_async.py`` (the async face) by ``.ci/unasync.py``: the
same logic, over the sync Cluster I/O (:mod:`~pevensie_redis.cluster_io`).""",
    f"{REDIS}/cluster_io.py": """\
The Cluster router, sync face: the slot map, a channel per node, the redirects followed.

Generated from ``cluster_io_async.py`` (the async face) by ``.ci/unasync.py``:
the same logic over the sync channels (:mod:`~pevensie_redis.channel`); a
refresh a ``MOVED`` starts runs in a thread of its own
(:mod:`~pevensie_redis.runtime`), and a batch's nodes are sent their commands
one after the other.""",
    f"{REDIS}/replicas.py": """\
Reads from replicas (``read_from_replicas``), sync face: a layer over a locator naming them.

Generated from ``replicas_async.py`` (the async face) by ``.ci/unasync.py``.""",
    f"{REDIS}/channel.py": """\
The driver's I/O, sync face: commands to one server over a few pipes that threads share.

Generated from ``channel_async.py`` (the async face) by ``.ci/unasync.py``: the
same logic over the sync pipes (:class:`~pevensie_redis.pipe.Pipe`, a socket
many threads share), with background work (opening a pipe, asking the
sentinels) in short-lived threads (:mod:`~pevensie_redis.runtime`).""",
    f"{REDIS}/listener.py": """\
The near cache's invalidation channel, sync face: a dedicated pipe watched by a daemon thread.

Generated from ``listener_async.py`` (the async face, where a task listens) by
``.ci/unasync.py``.""",
    f"{REDIS}/cluster_near.py": """\
The near cache over a Redis Cluster, sync face: one invalidation listener per primary.

Generated from ``cluster_near_async.py`` (the async face, where tasks listen) by
``.ci/unasync.py``: each listener, and the topology watch, is a daemon thread.""",
    f"{REDIS}/sentinel.py": """\
The Sentinel mode's locator, sync face: where the primary (and the replicas) of a service are.

Generated from ``sentinel_async.py`` (the async face) by ``.ci/unasync.py``.""",
    f"{REDIS}/direct.py": """\
The single-server mode's locator, sync face: always the server the configuration names.

Generated from ``direct_async.py`` (the async face) by ``.ci/unasync.py``.""",
    f"{REDIS}/lock_releases.py": """\
Lease waiters woken by the holder's release, sync face: one subscriber pipe per driver.

Generated from ``lock_releases_async.py`` (the async face, where a task
subscribes) by ``.ci/unasync.py``: the subscriber is a daemon thread.""",
}
"""The opening paragraphs of each twin's module docstring (see the module docstring)."""

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
    "AsyncNearRedisClusterDriver": "NearRedisClusterDriver",
    "AsyncReplicaReads": "ReplicaReads",
    "AsyncResource": "Resource",
    "AsyncCachedFunction": "CachedFunction",
    "AsyncCacheLock": "CacheLock",
    "AsyncStringCache": "StringCache",
    "AsyncFreshness": "Freshness",
    "AsyncFreshHost": "FreshHost",
    "AsyncLeaseHost": "LeaseHost",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "check_tls_async": "check_tls",
    "facade_async": "facade",
    "resource_async": "resource",
    "layers_async": "layers",
    "locks_async": "locks",
    "freshness_async": "freshness",
    "lease_async": "lease",
    "primitives_async": "primitives",
    "channel_async": "channel",
    "listener_async": "listener",
    "lock_releases_async": "lock_releases",
    "cluster_io_async": "cluster_io",
    "cluster_near_async": "cluster_near",
    "replicas_async": "replicas",
    "runtime_async": "runtime",
    "pipe_async": "pipe",
    "sentinel_async": "sentinel",
    "direct_async": "direct",
    "pytest_asyncio": "pytest",
}
"""Names replaced wherever they stand as a whole word."""

REMOVE_MARK = "# unasync: remove"
_WORDS = re.compile(r"\b(" + "|".join(map(re.escape, NAMES)) + r")\b")


class StaleConfig(Exception):
    """The configuration no longer fits the sources (see the module docstring)."""


def unasync(source: str, origin: str, intro: str, used: set[str] | None = None) -> str:
    """Return the sync twin of ``source`` (the text of the async module ``origin``).

    ``intro`` opens the twin's module docstring; the names of ``NAMES`` that
    were replaced are added to ``used``. Raises :class:`StaleConfig`.
    """
    kept = [line for line in source.splitlines(keepends=True) if not _marked(line)]
    text = "".join(kept)
    offsets = [0]
    for line in kept:
        offsets.append(offsets[-1] + len(line))

    def at(position: tuple[int, int]) -> int:
        return offsets[position[0] - 1] + position[1]

    def replace_names(string: str) -> str:
        both = [name for name in _WORDS.findall(string) if _has_word(string, NAMES[name])]
        if both:
            raise StaleConfig(
                f"{origin}: a string or comment names both {both[0]!r} and {NAMES[both[0]]!r}, "
                "which the twin would read as one name twice; rephrase it"
            )
        if used is not None:
            used.update(_WORDS.findall(string))
        return _WORDS.sub(lambda m: NAMES[m.group(1)], string)

    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement) in absolute offsets
    docstring = next((t for t in tokens if t.type not in _PREAMBLE), None)
    if docstring is None or docstring.type != tokenize.STRING:
        raise StaleConfig(f"{origin}: no module docstring to give the twin its intro")
    edits.append(
        (
            at(docstring.start),
            at(docstring.end),
            _twin_docstring(docstring.string, origin, intro, replace_names),
        )
    )
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
        if token is docstring:
            continue
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
            replaced = replace_names(token.string)
            if replaced != token.string:
                edits.append((at(token.start), at(token.end), replaced))
    for start, stop, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[stop:]
    header = (
        f"# Code generated by .ci/unasync.py from {Path(origin).name}; DO NOT EDIT.\n"
        f"# Edit {origin}, then run `nox -s generate`.\n"
    )
    return header + text


_PREAMBLE = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENCODING)


def _twin_docstring(
    literal: str, origin: str, intro: str, replace_names: Callable[[str], str]
) -> str:
    """Return the twin's module docstring: ``intro``, then the source's after its own intro."""
    quote = literal[:3]
    if quote not in ('"""', "'''") or literal[-3:] != quote:
        raise StaleConfig(f"{origin}: the module docstring is not a triple-quoted string")
    paragraphs = literal[3:-3].split("\n\n")
    ends = [n for n, paragraph in enumerate(paragraphs) if ".ci/unasync.py" in paragraph]
    if not ends:
        raise StaleConfig(
            f"{origin}: no paragraph of its module docstring names .ci/unasync.py "
            "(the source's own intro, which the twin's INTROS entry replaces)"
        )
    rest = "\n\n".join(paragraphs[ends[0] + 1 :]).strip("\n")
    body = intro.strip("\n") + ("\n\n" + replace_names(rest) if rest else "")
    return f"{quote}{body}\n{quote}"


def _has_word(text: str, word: str) -> bool:
    return re.search(r"\b" + re.escape(word) + r"\b", text) is not None


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
    used: set[str] = set()
    try:
        missing = [twin for _, twin in PAIRS if twin not in INTROS]
        if missing:
            raise StaleConfig("no INTROS entry for " + ", ".join(missing))
        texts = {}
        for source_path, twin_path in PAIRS:
            source = (ROOT / source_path).read_text(encoding="utf-8")
            twin_text = unasync(source, source_path, INTROS[twin_path], used)
            texts[twin_path] = _format(twin_text, ROOT / twin_path)
        unused = sorted(set(NAMES) - used)
        if unused:
            raise StaleConfig("names in NAMES that no source uses: " + ", ".join(unused))
        extra = sorted(set(INTROS) - {twin for _, twin in PAIRS})
        if extra:
            raise StaleConfig("INTROS entries for no twin: " + ", ".join(extra))
    except StaleConfig as exc:
        print(f"unasync: stale configuration: {exc}", file=sys.stderr)
        return 2
    for twin_path, text in texts.items():
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
