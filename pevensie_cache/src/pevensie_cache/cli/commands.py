"""The commands of ``pevensie-cache``, on click; what each prints is in its docstring.

Each command resolves its cache (:mod:`~pevensie_cache.cli.target`), does its
work, and returns an :class:`~pevensie_cache.cli.exit_codes.ExitCode`;
:func:`run` turns failures into their documented exit codes and messages.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from pevensie_cache import cache
from pevensie_cache.building import ENV_VAR
from pevensie_cache.cache import identify_driver
from pevensie_cache.cli.exit_codes import CliFailure, ExitCode, classify
from pevensie_cache.cli.output import Output
from pevensie_cache.cli.target import Redactor, Target, known_secrets, open_cache, resolve_target
from pevensie_cache.errors import PevensieCacheError, UnsupportedOperation
from pevensie_cache.facade import PevensieCache
from pevensie_cache.inspection import CacheInspector, ServerInfo
from pevensie_cache.listing import format_drivers
from pevensie_cache.validation import TTL_MAX, check_address, check_resource_type

__all__ = ["app", "run"]

CHECK_SAMPLES = 20
"""``get`` round trips ``check`` times for its latency figures."""


def run(as_json: bool, body: Callable[[Output], int]) -> int:
    """Run a command's ``body``; map its failures to their exit codes and messages.

    ``--json`` counts before the command name too (``pevensie-cache --json get ...``).
    Everything it prints is scrubbed of the secrets the command line knows of
    (:func:`~pevensie_cache.cli.app.invoke` found them before parsing).
    """
    out = Output(as_json or _json_before_the_command(), _redactor())
    try:
        return body(out)
    except CliFailure as failure:
        out.error(failure.kind, failure.message, failure.code)
        return failure.code
    except PevensieCacheError as exc:
        code = classify(exc)
        out.error(code.name.lower(), f"{type(exc).__name__}: {exc}", code)
        return code
    except KeyboardInterrupt:
        out.error("interrupted", "interrupted", ExitCode.INTERRUPTED)
        return ExitCode.INTERRUPTED


def _redactor() -> Redactor:
    context = click.get_current_context(silent=True)
    found = context.find_object(Redactor) if context is not None else None
    return found if found is not None else known_secrets(sys.argv[1:])


def _json_before_the_command() -> bool:
    context = click.get_current_context(silent=True)
    return bool(context is not None and context.find_root().params.get("as_json"))


if TYPE_CHECKING:  # click 8.2 and later type ParamType by its value; 8.1 does not subscript
    _IntParamType = click.ParamType[int]
else:
    _IntParamType = click.ParamType


class TtlSeconds(_IntParamType):
    """``--ttl``: whole seconds, 1 to ``TTL_MAX``; a fraction is refused with the rounding."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """Return the TTL as an ``int``, or fail with a message that says how to fix it."""
        if isinstance(value, int):
            seconds = value
        else:
            text = str(value).strip()
            try:
                seconds = int(text)
            except ValueError:
                try:
                    number = float(text)
                except ValueError:
                    self.fail(f"{value!r} is not a number of seconds", param, ctx)
                if not math.isfinite(number):
                    self.fail(
                        f"{text} is not a number of seconds; leave --ttl out for no expiry",
                        param,
                        ctx,
                    )
                if not number.is_integer():
                    self.fail(
                        f"{text} is not whole seconds; the cache counts whole seconds: "
                        f"round it (--ttl {max(1, math.ceil(number))} keeps it at least that long)",
                        param,
                        ctx,
                    )
                seconds = int(number)
        if seconds < 1:
            self.fail(f"{seconds} is below 1 second; leave --ttl out for no expiry", param, ctx)
        if seconds > TTL_MAX:
            self.fail(
                f"{value} is more than the longest TTL, "
                f"{TTL_MAX} seconds; leave --ttl out for no expiry",
                param,
                ctx,
            )
        return seconds


# -- shared options --------------------------------------------------------------------

_json = click.option("--json", "as_json", is_flag=True, help="Print one JSON document (scripts).")
_url = click.option(
    "-u", "--url", metavar="URL", help=f"Cache URL (default: the {ENV_VAR} environment variable)."
)
_config = click.option(
    "-c",
    "--config",
    "config_path",
    metavar="FILE",
    help="TOML file whose [cache] table configures the cache (url = ... or driver = ...).",
)
_url_argument = click.argument("url_argument", metavar="[URL]", required=False)


def _target(out: Output, url: str | None, config_path: str | None, *more: str | None) -> Target:
    given = [value for value in (url, *more) if value]
    if len(set(given)) > 1:
        raise CliFailure(ExitCode.USAGE, "give the URL once: as an argument or with --url")
    return resolve_target(given[0] if given else None, config_path, out.redactor)


def _inspector(c: PevensieCache, what: str) -> CacheInspector:
    try:
        return cache.inspector(c)
    except UnsupportedOperation as exc:
        raise CliFailure(ExitCode.UNSUPPORTED, f"{what}: {exc}", "unsupported") from None


def _checked(check: Callable[..., None], *args: object) -> None:
    try:
        check(*args)
    except PevensieCacheError as exc:
        raise CliFailure(ExitCode.USAGE, str(exc), "usage") from None


def _in_command(action: str, work: Callable[[], Any]) -> Any:
    """Run ``work``; a driver failure after connecting exits with its code, named ``action``."""
    try:
        return work()
    except CliFailure:
        raise
    except PevensieCacheError as exc:
        raise CliFailure(classify(exc), f"{action}: {type(exc).__name__}: {exc}") from None


# -- the command group -----------------------------------------------------------------


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=(
        "Exit codes: 0 ok, 1 miss (get, ttl), 2 usage, 3 configuration, 4 cannot connect, "
        "5 failed during the command, 6 unsupported by the driver, 7 not confirmed, "
        "130 interrupted."
    ),
)
@click.version_option(package_name="pevensie-cache", message="%(prog)s %(version)s")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document (scripts); also accepted after the command name.",
)
def app(as_json: bool) -> None:
    """Look inside a Pevensie cache: drivers, keys, TTLs, statistics, clear, benchmark.

    Commands that talk to a cache take its URL as URL or --url, or a --config
    file, or read the PEVENSIE_CACHE_URL environment variable (in that order).
    Passwords are never printed: URLs are shown masked.
    """


@app.command()
@_json
def drivers(as_json: bool) -> int:
    """List the installed drivers, and plugins that failed to load."""

    def body(out: Output) -> int:
        infos = cache.drivers()
        if out.json:
            out.emit_json({"ok": True, "drivers": [dataclasses.asdict(info) for info in infos]})
        elif out.rich_out:
            from rich.markup import escape

            for info in infos:
                source = f"{info.distribution or '(no distribution)'} {info.version or ''}".strip()
                status = "[green]loaded[/]" if info.loaded else "[bold red]NOT LOADED[/]"
                out.markup(f"[bold]{escape(info.name)}[/]  [dim]{escape(source)}[/]  {status}")
                if not info.loaded:
                    out.markup(f"    [red]{escape(info.error or '')}[/]")
                    continue
                if info.description:
                    out.markup(f"    {escape(info.description)}")
                faces = "native async" if info.native_async else "async in worker threads"
                schemes = " ".join(f"{scheme}://" for scheme in info.schemes)
                out.markup(f"    [cyan]{escape(schemes or 'no URL scheme')}[/]  [dim]{faces}[/]")
        else:
            out.line(format_drivers(infos))
        return ExitCode.OK

    return run(as_json, body)


@app.command()
@_url_argument
@_url
@_config
@_json
def check(url_argument: str | None, url: str | None, config_path: str | None, as_json: bool) -> int:
    """Connect, round-trip a probe key, and report the server and the latency."""

    def body(out: Output) -> int:
        target = _target(out, url, config_path, url_argument)
        opened: dict[str, float] = {}
        with open_cache(target, opened) as c:
            connect_s = opened["connect"]
            shown = target.shown(c)
            resource_type, key = "pevensie-check", f"probe-{time.time_ns()}"
            timings: dict[str, float] = {}

            def timed(name: str, work: Callable[[], Any]) -> Any:
                start = time.perf_counter()
                result = _in_command(f"check {name}", work)
                timings[name] = time.perf_counter() - start
                return result

            timed("set", lambda: c.set(resource_type, key, "ok", 10))
            value = timed("get", lambda: c.get(resource_type, key, None))
            samples = []
            for _ in range(CHECK_SAMPLES):
                start = time.perf_counter()
                _in_command("check get", lambda: c.get(resource_type, key, None))
                samples.append(time.perf_counter() - start)
            timed("delete", lambda: c.delete(resource_type, key))
            if value != "ok":
                raise CliFailure(
                    ExitCode.FAILED, f"{shown}: the probe read back {value!r}, not 'ok'"
                )
            driver_name, inspector = identify_driver(c)
            server = _server_line(inspector)
        latency = {"min": min(samples) * 1000, "median": statistics.median(samples) * 1000}
        if out.json:
            out.emit_json(
                {
                    "ok": True,
                    "target": shown,
                    "driver": driver_name,
                    "server": server,
                    "connect_ms": connect_s * 1000,
                    "round_trip_ms": {name: seconds * 1000 for name, seconds in timings.items()},
                    "latency_ms": {**latency, "samples": CHECK_SAMPLES},
                }
            )
            return ExitCode.OK
        out.fields(
            f"{shown}: ok",
            [
                ("driver", driver_name),
                ("server", server or "not available from this driver"),
                ("connect", _ms(connect_s)),
                ("round trip", ", ".join(f"{n} {_ms(s)}" for n, s in timings.items())),
                (
                    "latency",
                    f"min {latency['min']:.3f} ms, median {latency['median']:.3f} ms "
                    f"({CHECK_SAMPLES} gets)",
                ),
            ],
        )
        return ExitCode.OK

    return run(as_json, body)


@app.command()
@click.argument("resource_type")
@click.argument("key")
@_url
@_config
@_json
def get(
    resource_type: str, key: str, url: str | None, config_path: str | None, as_json: bool
) -> int:
    """Print the value of one key; exit 1 when it is absent."""

    def body(out: Output) -> int:
        _checked(check_address, resource_type, key)
        with open_cache(_target(out, url, config_path)) as c:
            value = _in_command("get", lambda: c.get(resource_type, key, None))
        found = {"resource_type": resource_type, "key": key, "hit": value is not None}
        if out.json:
            out.emit_json({"ok": True, **found, "value": value})
        elif value is None:
            out.note(f"miss: no value under resource type {resource_type!r}, key {key!r}")
        else:
            out.line(value)
        return ExitCode.OK if value is not None else ExitCode.MISS

    return run(as_json, body)


@app.command(name="set")
@click.argument("resource_type")
@click.argument("key")
@click.argument("value")
@click.option(
    "--ttl",
    "ttl_seconds",
    type=TtlSeconds(),
    metavar="SECONDS",
    help="Expire after this many whole seconds (default: never).",
)
@_url
@_config
@_json
def set_command(
    resource_type: str,
    key: str,
    value: str,
    ttl_seconds: int | None,
    url: str | None,
    config_path: str | None,
    as_json: bool,
) -> int:
    """Store VALUE under one key (VALUE - reads it from stdin, without its final newline)."""

    def body(out: Output) -> int:
        text = _without_final_newline(sys.stdin.read()) if value == "-" else value
        _checked(check_address, resource_type, key)
        with open_cache(_target(out, url, config_path)) as c:
            _in_command("set", lambda: c.set(resource_type, key, text, ttl_seconds))
        if out.json:
            out.emit_json(
                {"ok": True, "resource_type": resource_type, "key": key, "ttl_seconds": ttl_seconds}
            )
        else:
            expiry = f"expires in {ttl_seconds:,} s" if ttl_seconds else "no expiry"
            out.line(f"stored resource type {resource_type!r}, key {key!r} ({expiry})")
        return ExitCode.OK

    return run(as_json, body)


@app.command()
@click.argument("resource_type")
@click.argument("key")
@_url
@_config
@_json
def delete(
    resource_type: str, key: str, url: str | None, config_path: str | None, as_json: bool
) -> int:
    """Delete one key (an absent key is fine)."""

    def body(out: Output) -> int:
        _checked(check_address, resource_type, key)
        with open_cache(_target(out, url, config_path)) as c:
            _in_command("delete", lambda: c.delete(resource_type, key))
        if out.json:
            out.emit_json({"ok": True, "resource_type": resource_type, "key": key})
        else:
            out.line(f"deleted resource type {resource_type!r}, key {key!r} (if it was there)")
        return ExitCode.OK

    return run(as_json, body)


@app.command()
@click.argument("resource_type")
@click.argument("key")
@_url
@_config
@_json
def ttl(
    resource_type: str, key: str, url: str | None, config_path: str | None, as_json: bool
) -> int:
    """Print the seconds one key has left, or "none" without expiry; exit 1 when absent."""

    def body(out: Output) -> int:
        _checked(check_address, resource_type, key)
        with open_cache(_target(out, url, config_path)) as c:
            inspector = _inspector(c, "ttl")
            found = _in_command("ttl", lambda: inspector.ttl(resource_type, key))
        if out.json:
            out.emit_json(
                {
                    "ok": True,
                    "resource_type": resource_type,
                    "key": key,
                    "exists": found.exists,
                    "ttl_seconds": found.seconds,
                }
            )
        elif not found.exists:
            out.note(f"miss: no value under resource type {resource_type!r}, key {key!r}")
        else:
            out.line("none" if found.seconds is None else f"{found.seconds:.3f}")
        return ExitCode.OK if found.exists else ExitCode.MISS

    return run(as_json, body)


@app.command()
@click.argument("resource_type")
@click.option(
    "--limit", type=click.IntRange(min=1), metavar="N", help="Stop after N keys (default: all)."
)
@click.option(
    "--page-size",
    type=click.IntRange(min=1, max=100_000),
    default=1000,
    show_default=True,
    metavar="N",
    help="Keys the server looks at per SCAN page.",
)
@_url
@_config
@_json
def keys(
    resource_type: str,
    limit: int | None,
    page_size: int,
    url: str | None,
    config_path: str | None,
    as_json: bool,
) -> int:
    """List the keys of one resource type, one per line (SCAN pages, never KEYS)."""

    def body(out: Output) -> int:
        _checked(check_resource_type, resource_type)
        seen: set[str] = set()
        listed: list[str] = []
        with open_cache(_target(out, url, config_path)) as c:
            inspector = _inspector(c, "keys")

            def walk() -> None:
                for page in inspector.keys(resource_type, page_size):
                    for key in page:
                        if key in seen:
                            continue  # SCAN may return a key twice while the store changes
                        seen.add(key)
                        if out.json:
                            listed.append(key)
                        else:
                            out.line(key)
                        if limit is not None and len(seen) >= limit:
                            return

            _in_command("keys", walk)
        if out.json:
            out.emit_json(
                {"ok": True, "resource_type": resource_type, "count": len(seen), "keys": listed}
            )
        elif not seen:
            out.note(f"no keys of resource type {resource_type!r}")
        return ExitCode.OK

    return run(as_json, body)


@app.command()
@click.argument("resource_type")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@_url
@_config
@_json
def clear(
    resource_type: str, yes: bool, url: str | None, config_path: str | None, as_json: bool
) -> int:
    """Delete every key of one resource type, showing the running count, then the total."""

    def body(out: Output) -> int:
        _checked(check_resource_type, resource_type)
        target = _target(out, url, config_path)
        with open_cache(target) as c:
            shown = target.shown(c)
            if not yes:
                try:
                    confirmed = click.confirm(
                        out.redactor.scrub(
                            f"Delete every key of resource type {resource_type!r} at {shown}?"
                        ),
                        default=False,
                        err=True,
                    )
                except click.Abort:
                    confirmed = False
                if not sys.stdin.isatty():
                    out.note("")  # the answer came from a pipe: nothing echoed it
                if not confirmed:
                    raise CliFailure(
                        ExitCode.ABORTED,
                        "not confirmed: nothing was deleted (pass --yes to delete without "
                        "being asked, as scripts and pipes must)",
                    )
            with out.progress(f"clear {resource_type}", "keys deleted") as progress:
                total = _in_command(
                    "clear", lambda: c.clear(resource_type, on_progress=progress.update)
                )
                progress.update(total)
        if out.json:
            out.emit_json(
                {"ok": True, "resource_type": resource_type, "target": shown, "deleted": total}
            )
        else:
            out.line(f"deleted {total:,} keys of resource type {resource_type!r} at {shown}")
        return ExitCode.OK

    return run(as_json, body)


@app.command()
@_url_argument
@click.option(
    "--sample",
    type=click.IntRange(min=1, max=10_000_000),
    default=10_000,
    show_default=True,
    metavar="N",
    help="Keys looked at to count keys per resource type.",
)
@_url
@_config
@_json
def stats(
    url_argument: str | None, sample: int, url: str | None, config_path: str | None, as_json: bool
) -> int:
    """Show the server, its memory, keys per resource type (sampled) and the hit ratio."""

    def body(out: Output) -> int:
        target = _target(out, url, config_path, url_argument)
        with open_cache(target) as c:
            shown = target.shown(c)
            inspector = _inspector(c, "stats")
            info: ServerInfo = _in_command("stats", inspector.server_info)
            found = _in_command("stats", lambda: inspector.sample(sample))
        estimate = (found.total / found.sampled) if found.total and found.sampled else 1.0
        per_type = sorted(found.by_resource_type.items(), key=lambda item: (-item[1], item[0]))
        if out.json:
            out.emit_json(
                {
                    "ok": True,
                    "target": shown,
                    "server": {
                        **dataclasses.asdict(info),
                        "hit_ratio": info.hit_ratio,
                    },
                    "sample": {
                        "sampled": found.sampled,
                        "total": found.total,
                        "foreign": found.foreign,
                        "by_resource_type": dict(per_type),
                        "estimated_by_resource_type": {
                            name: round(count * estimate) for name, count in per_type
                        },
                    },
                }
            )
            return ExitCode.OK
        missing = "not available from this driver"
        ratio = info.hit_ratio
        out.fields(
            f"{shown}",
            [
                ("server", f"{info.server} {info.version or ''}".strip()),
                ("nodes", str(info.nodes)),
                ("memory used", missing if info.used_memory is None else _bytes(info.used_memory)),
                ("memory limit", missing if info.max_memory is None else _limit(info.max_memory)),
                ("keys", f"{info.keys:,}" if info.keys is not None else missing),
                (
                    "hit ratio",
                    f"{ratio:.1%} ({info.hits:,} hits, {info.misses:,} misses, whole server)"
                    if ratio is not None
                    else (missing if info.hits is None else "no lookups yet"),
                ),
            ],
        )
        out.line()
        rows = [[name, f"{count:,}", f"{round(count * estimate):,}"] for name, count in per_type]
        if found.foreign:
            foreign = found.foreign
            rows.append(["(not Pevensie keys)", f"{foreign:,}", f"{round(foreign * estimate):,}"])
        of_total = f" of {found.total:,}" if found.total is not None else ""
        out.table(
            f"Keys per resource type ({found.sampled:,}{of_total} keys sampled)",
            ["resource type", "sampled", "estimated"],
            rows,
            right=(1, 2),
        )
        return ExitCode.OK

    return run(as_json, body)


@app.command()
@_url_argument
@click.option(
    "--ops",
    type=click.IntRange(min=1, max=1_000_000),
    default=2000,
    show_default=True,
    metavar="N",
    help="Calls of set and get each (batches: a tenth as many).",
)
@click.option(
    "--batch",
    type=click.IntRange(min=2, max=10_000),
    default=100,
    show_default=True,
    metavar="N",
    help="Keys per set_many / get_many call.",
)
@click.option(
    "--value-size",
    type=click.IntRange(min=0, max=10_000_000),
    default=100,
    show_default=True,
    metavar="BYTES",
    help="Length of each value.",
)
@click.option(
    "--compare", is_flag=True, help="Also run the driver's client library itself (redis-py)."
)
@_url
@_config
@_json
def bench(
    url_argument: str | None,
    ops: int,
    batch: int,
    value_size: int,
    compare: bool,
    url: str | None,
    config_path: str | None,
    as_json: bool,
) -> int:
    """Time get/set and batches from here: ops/s and latency percentiles per operation."""
    from pevensie_cache.cli.bench import fresh_resource_type, run_bench, workloads

    def body(out: Output) -> int:
        target = _target(out, url, config_path, url_argument)
        with open_cache(target) as c:
            shown = target.shown(c)
            baseline = None
            if compare:
                baseline = _in_command("bench --compare", _inspector(c, "bench --compare").baseline)
                if baseline is None:
                    raise CliFailure(
                        ExitCode.UNSUPPORTED,
                        "bench --compare: this driver has no client library to compare with",
                        "unsupported",
                    )
            resource_type = fresh_resource_type()
            found = workloads(c, baseline, resource_type, batch, value_size, ops)
            total = sum(workload.calls for workload in found)
            try:
                with out.progress("bench", "calls", total=total) as progress:
                    results = _in_command("bench", lambda: run_bench(found, progress.advance))
            finally:
                _in_command("bench cleanup", lambda: c.clear(resource_type))
        if out.json:
            out.emit_json(
                {
                    "ok": True,
                    "target": shown,
                    "ops": ops,
                    "batch": batch,
                    "value_size": value_size,
                    "results": [result.as_dict() for result in results],
                }
            )
            return ExitCode.OK
        out.table(
            f"{shown}: {ops:,} calls of set and get, {max(ops // 10, 1):,} batches of {batch:,}, "
            f"{value_size:,}-byte values",
            ["client", "operation", "calls/s", "keys/s", "p50 µs", "p95 µs", "p99 µs"],
            [
                [
                    result.contender,
                    result.operation,
                    f"{result.calls_per_second:,.0f}",
                    f"{result.keys_per_second:,.0f}",
                    f"{result.p50_us:,.1f}",
                    f"{result.p95_us:,.1f}",
                    f"{result.p99_us:,.1f}",
                ]
                for result in results
            ],
            right=(2, 3, 4, 5, 6),
        )
        return ExitCode.OK

    return run(as_json, body)


# -- helpers ---------------------------------------------------------------------------


def _server_line(inspector: CacheInspector | None) -> str | None:
    if inspector is None:
        return None
    try:
        info = inspector.server_info()
    except PevensieCacheError:
        return None
    return f"{info.server} {info.version or ''}".strip()


def _without_final_newline(text: str) -> str:
    """Drop one final line ending, as the shell's ``$(...)`` does: ``echo x |`` stores ``x``."""
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.1f} {unit}" if unit != "B" else f"{count:,} B"
        size /= 1024
    return f"{count:,} B"  # pragma: no cover - the loop always returns


def _limit(count: int) -> str:
    return "none" if count == 0 else _bytes(count)
