"""Turning measurements into markdown: the run's header, the tables, and the targets.

The table builders are shared by every benchmark script: each takes the
results (workload -> contender -> entry, see :mod:`rounds`), the workloads as
``(name, unit, label)`` triples, the contenders in column order, and the
baseline a ratio is taken against (one name, or one per workload).
:func:`markdown` and :func:`evaluate_targets` are the single-server report of
``run.py`` (issue 4).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from contenders import WORKLOADS
from rounds import Results

__all__ = [
    "CPU_NOTE",
    "RAW",
    "TARGETS_NOTE",
    "Workload",
    "checkout",
    "comparison_table",
    "cpu_ratio",
    "cpu_table",
    "detail_table",
    "evaluate_targets",
    "header",
    "load_average",
    "machine",
    "markdown",
    "paired_ratio",
    "ratio",
    "summarise",
    "target_row",
    "targets_table",
    "versions",
    "wide_table",
]

RAW = "raw redis-py"
OURS = "pevensie redis"
MEMORY = "pevensie memory"
SIMPLE = "cachelib SimpleCache"
PEERS = ["cachelib RedisCache", "dogpile.cache redis"]
ROOT = Path(__file__).resolve().parent.parent

Workload = tuple[str, str, str]
"""(name, unit, label)."""
Baseline = str | Mapping[str, str]
"""The contender ratios are taken against: one for every workload, or one per workload."""


# -- the run's header ----------------------------------------------------------------------


def versions(dists: Iterable[str], server: str) -> dict[str, str]:
    """The installed version of each distribution, and the server's."""
    found: dict[str, str] = {}
    for dist in dists:
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "not installed"
    found["server"] = server
    return found


def checkout() -> str:
    """The git commit benchmarked, marked ``+changes`` when the work tree differs from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "pevensie_cache", "pevensie_redis"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + (" +changes in pevensie_cache/ or pevensie_redis/" if changed else "")


def machine() -> dict[str, Any]:
    """CPU count and model, Python and platform."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
    }


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as the report prints them."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def header(
    title: str,
    host: Mapping[str, Any],
    found: Mapping[str, str],
    commit: str,
    server: str,
    pinning: Sequence[str],
    details: Sequence[str],
    load: str,
) -> list[str]:
    """The lines that open a report: what ran where, then the script's own ``details``."""
    return [
        title,
        "",
        f"- machine: {host['nproc']} CPUs, {host['cpu_model']}; {host['python']};"
        f" {host['platform']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in found.items()),
        f"- checkout: {commit}",
        f"- server: {server}",
        f"- CPU pinning: {'; '.join(pinning)}",
        *(f"- {line}" for line in details),
        f"- load average at start: {load} (1, 5, 15 min)",
    ]


# -- numbers -------------------------------------------------------------------------------


def summarise(results: Results) -> None:
    """Add median and min to every entry that has samples."""
    for per_contender in results.values():
        for entry in per_contender.values():
            samples = entry.get("samples") or []
            if samples:
                entry["median"] = statistics.median(samples)
                entry["min"] = min(samples)
            client = entry.get("client_us") or []
            server = entry.get("server_us") or []
            if client:
                entry["client_us_median"] = statistics.median(client)
            if client and len(server) == len(client):
                entry["server_us_median"] = statistics.median(server)
                totals = [c + s for c, s in zip(client, server, strict=True)]
                entry["cpu_us_median"] = statistics.median(totals)


def _median(results: Results, workload: str, contender: str) -> float | None:
    value = results.get(workload, {}).get(contender, {}).get("median")
    return float(value) if value is not None else None


def ratio(results: Results, workload: str, top: str, bottom: str) -> float | None:
    """Median throughput of ``top`` over that of ``bottom`` (``None`` if either is missing)."""
    a = _median(results, workload, top)
    b = _median(results, workload, bottom)
    return a / b if a is not None and b else None


def cpu_ratio(results: Results, workload: str, top: str, bottom: str) -> float | None:
    """How many times cheaper ``top`` is than ``bottom`` in CPU time per operation."""
    a = results.get(workload, {}).get(top, {}).get("cpu_us_median")
    b = results.get(workload, {}).get(bottom, {}).get("cpu_us_median")
    return b / a if a and b else None


def paired_ratio(results: Results, workload: str, top: str, bottom: str) -> float | None:
    """The median over the rounds of ``top``'s rate / ``bottom``'s rate in the same round.

    Within a round the two ran one after the other, so drift between rounds
    cancels out; for differences far smaller than the noise (a resource
    against the direct call) it is steadier than the ratio of the medians.
    """
    a = results.get(workload, {}).get(top, {}).get("samples") or []
    b = results.get(workload, {}).get(bottom, {}).get("samples") or []
    if not a or len(a) != len(b):
        return None
    return float(statistics.median([x / y for x, y in zip(a, b, strict=True) if y]))


def _base(baseline: Baseline, workload: str) -> str:
    return baseline if isinstance(baseline, str) else baseline[workload]


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _cell(entry: dict[str, Any] | None) -> str | None:
    """The text for a cell without a number: '-', 'n/a (...)' or 'error (...)'."""
    if entry is None or entry.get("unsupported"):
        return "-"
    if entry.get("unavailable"):
        return f"n/a ({entry['unavailable']})"
    if entry.get("error") and "median" not in entry:
        return f"error ({entry['error']})"
    return None


# -- tables --------------------------------------------------------------------------------


def wide_table(
    results: Results, workloads: Sequence[Workload], contenders: Sequence[str], baseline: str
) -> list[str]:
    """One row per workload, one column per contender: median, with the ratio to ``baseline``."""
    lines = [
        "| workload | unit | " + " | ".join(contenders) + " |",
        "|---|---|" + "---:|" * len(contenders),
    ]
    for workload, unit, label in workloads:
        cells: list[str] = []
        for name in contenders:
            entry = results.get(workload, {}).get(name)
            text = _cell(entry)
            if text is None:
                r = ratio(results, workload, name, baseline)
                text = _rate(_median(results, workload, name))
                if name != baseline and r is not None:
                    text += f" ({_x(r)})"
            cells.append(text)
        lines.append(f"| {label} | {unit} | " + " | ".join(cells) + " |")
    return lines


def detail_table(
    results: Results,
    workloads: Sequence[Workload],
    contenders: Sequence[str],
    baseline: Baseline,
    *,
    vs_title: str = "",
    also: Mapping[str, str] | None = None,
) -> list[str]:
    """One row per (workload, contender) that ran: median, min, ratio to the baseline.

    ``vs_title`` heads the ratio column (default: ``vs <baseline>``); ``also``
    maps a contender to a second one it is compared with, in an extra column.
    """
    title = vs_title or (f"vs {baseline}" if isinstance(baseline, str) else "vs baseline")
    extra = also is not None
    lines = [
        "| workload | contender | median | min | "
        + title
        + (" | vs " + ", ".join(sorted(set(also.values()))) if also else "")
        + " |",
        "|---|---|---:|---:|---:|" + ("---:|" if extra else ""),
    ]
    for workload, unit, label in workloads:
        base = _base(baseline, workload)
        for name in contenders:
            entry = results.get(workload, {}).get(name)
            if entry is None:
                continue
            text = _cell(entry)
            if text is not None:
                lines.append(f"| {label} | {name} | {text} | | |" + (" |" if extra else ""))
                continue
            row = (
                f"| {label} | {name} | {_rate(entry.get('median'))} {unit} | "
                f"{_rate(entry.get('min'))} | {_x(ratio(results, workload, name, base))} |"
            )
            if also is not None:
                other = also.get(name)
                vs = ratio(results, workload, name, other) if other is not None else None
                row += f" {_x(vs)} |"
            lines.append(row)
    return lines


def cpu_table(
    results: Results, workloads: Sequence[Workload], contenders: Sequence[str], baseline: Baseline
) -> list[str]:
    """CPU microseconds per unit, client and server, and the ratio to the baseline's total."""
    title = f"vs {baseline}" if isinstance(baseline, str) else "vs baseline"
    lines = [
        f"| workload | contender | client µs | server µs | total µs | {title} |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for workload, _unit, label in workloads:
        base = _base(baseline, workload)
        base_total = results.get(workload, {}).get(base, {}).get("cpu_us_median")
        for name in contenders:
            entry = results.get(workload, {}).get(name) or {}
            total = entry.get("cpu_us_median")
            if total is None:
                continue
            r = base_total / total if base_total and total else None
            lines.append(
                f"| {label} | {name} | {entry['client_us_median']:.2f} | "
                f"{entry['server_us_median']:.2f} | {total:.2f} | {_x(r)} |"
            )
    return lines


def target_row(
    target: str,
    measured: float | None,
    goal: float,
    *,
    strict: bool = False,
    at_most: bool = False,
    cpu: float | None = None,
) -> dict[str, Any]:
    """One target's row: PASS, MISS, 'MISS (CPU: PASS)' or n/a. Never raises on a miss.

    ``measured >= goal`` passes (``> goal`` when ``strict``; ``<= goal`` when
    ``at_most``); a wall-clock miss that CPU time meets says so.
    """
    if measured is None:
        status = "n/a"
    elif at_most:
        status = "PASS" if measured <= goal else "MISS"
    elif strict:
        status = "PASS" if measured > goal else "MISS"
    else:
        status = "PASS" if measured >= goal else "MISS"
    relation = "<=" if at_most else (">" if strict else ">=")
    met_on_cpu = cpu is not None and (
        cpu <= goal if at_most else (cpu > goal if strict else cpu >= goal)
    )
    if status == "MISS" and met_on_cpu:
        status = "MISS (CPU: PASS)"
    return {
        "target": target,
        "measured": measured,
        "cpu_measured": cpu,
        "goal": f"{relation} {goal:.2f}x",
        "status": status,
    }


def targets_table(rows: Sequence[Mapping[str, Any]], paired: bool = False) -> list[str]:
    """The targets as a table: measured ratio, the same ratio in CPU time, goal, status.

    ``paired`` adds the rows' ``paired`` ratio (see :func:`paired_ratio`).
    """
    extra = " per round |" if paired else ""
    lines = [
        "| target | measured |" + extra + " CPU | goal | status |",
        "|---|---:|" + ("---:|" if paired else "") + "---:|---:|---|",
    ]
    for row in rows:
        cell = f" {_x(row.get('paired'))} |" if paired else ""
        lines.append(
            f"| {row['target']} | {_x(row['measured'])} |{cell} {_x(row.get('cpu_measured'))} | "
            f"{row['goal']} | {row['status']} |"
        )
    return lines


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Head-to-head ratios without a goal: wall clock and CPU time."""
    lines = ["| comparison | measured | CPU |", "|---|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['target']} | {_x(row['measured'])} | {_x(row.get('cpu_measured'))} |")
    return lines


TARGETS_NOTE = (
    "Status compares median wall-clock throughput; the CPU column gives the same"
    " ratio in CPU time per operation (client + server), which other load on the CPU"
    " does not skew. 'MISS (CPU: PASS)': missed on wall clock, met on CPU time."
)

CPU_NOTE = (
    "Client and server share one CPU, so their CPU time adds up to the wall time"
    " of an uncontended run; unlike wall time it does not count what other"
    " processes take from that CPU."
)


# -- the single-server report (run.py, issue 4) --------------------------------------------


def evaluate_targets(results: Results, coldstart: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Compare the medians against the goals of issue 4; never raises on a miss."""
    rows: list[dict[str, Any]] = []
    labels = {name: label for name, _unit, label in WORKLOADS}

    def add(target: str, workload: str, top: str, bottom: str, goal: float, strict: bool) -> None:
        rows.append(
            target_row(
                target,
                ratio(results, workload, top, bottom),
                goal,
                strict=strict,
                cpu=cpu_ratio(results, workload, top, bottom),
            )
        )

    for workload in ("get_hit", "get_miss", "set", "delete"):
        add(f"{labels[workload]}: pevensie redis vs raw redis-py", workload, OURS, RAW, 1.3, False)
    add("get_many 100: pevensie redis vs raw MGET (keys/s)", "get_many", OURS, RAW, 1.0, False)
    add(
        "set_many 100, TTL: pevensie redis vs raw pipeline SET EX (keys/s)",
        "set_many",
        OURS,
        RAW,
        4.0,
        False,
    )
    for peer in PEERS:
        for workload, _unit, label in WORKLOADS:
            entry = results.get(workload, {}).get(peer)
            if entry is None or entry.get("unsupported") or entry.get("unavailable"):
                continue
            add(f"{label}: pevensie redis vs {peer}", workload, OURS, peer, 1.0, True)
    for workload in ("get_hit", "get_miss", "set"):
        add(f"{labels[workload]}: pevensie memory vs {SIMPLE}", workload, MEMORY, SIMPLE, 1.0, True)
    cold = coldstart.get("ratio") if coldstart else None
    rows.append(
        target_row("cold start: cache.new(driver='redis') vs import redis", cold, 1.3, at_most=True)
    )
    return rows


def markdown(
    results: Results,
    contenders: list[str],
    targets: list[dict[str, Any]],
    coldstart: dict[str, Any] | None,
) -> str:
    """The whole single-server report as markdown."""
    lines: list[str] = ["### Median throughput (ratio to raw redis-py in brackets)", ""]
    lines += wide_table(results, WORKLOADS, contenders, RAW)
    lines += ["", "### Every contender: median and min of the rounds", ""]
    lines += detail_table(results, WORKLOADS, contenders, RAW, also={MEMORY: SIMPLE})
    lines += ["", "### CPU cost per operation (key, for batches), median of the rounds", ""]
    lines += [CPU_NOTE + " Ratio: raw redis-py's total / this total.", ""]
    lines += cpu_table(results, WORKLOADS, contenders, RAW)
    if coldstart is not None:
        lines.append("")
        lines.append(f"### Cold start (whole process, {coldstart['runs']} alternating runs each)")
        lines.append("")
        lines.append("| program | median | min |")
        lines.append("|---|---:|---:|")
        for name, entry in coldstart["programs"].items():
            if "error" in entry:
                lines.append(f"| `{name}` | n/a ({entry['error'][:80]}) | |")
            else:
                lines.append(
                    f"| `{name}` | {entry['median_ms']:.1f} ms | {entry['min_ms']:.1f} ms |"
                )
        lines.append("")
        lines.append(f"Ratio to `import redis`: {_x(coldstart.get('ratio'))}")
    lines += ["", "### Targets (issue 4; reported, never asserted)", "", TARGETS_NOTE, ""]
    lines += targets_table(targets)
    return "\n".join(lines)
