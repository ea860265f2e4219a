"""``miri bench reads``: the read side of an opening, measured with wrk against the bare ceiling.

At an opening, buyers refresh the goods page and its live stock far more often than they order.
This bench registers one open sale goods (and a catalogue around it) in a fresh data dir, starts
``miri serve`` (``--workers N``) and the bare aiohttp endpoint (``miri.bench.bare``) as
subprocesses, and drives each path with the same wrk for the same time and connections:

- ``bare GET``: ``GET /health`` of the bare endpoint, the ceiling (measured first and last; the
  ratios are to the mean of the two, so a drift of the shared machine shows as their spread);
- ``live stock``: ``GET /api/goods/{id}/stock``;
- ``goods page``: ``GET /api/goods/{id}``;
- ``listing page``: ``GET /api/goods?page=0&size=10``;
- ``mix``: the three together, as an opening reads them (stock 5 : goods 3 : listing 2).

Each row gives requests/s, the share of bare GET, latency percentiles of all answers, status
counts, the server's CPU time per request (its processes and workers: the steadiest figure on a
shared machine) and the load generator's CPU.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from miri.bench import report, wrk
from miri.bench.flash_sale import ServerCpu, server_env, subprocess_server
from miri.bench.report import latency_of
from miri.bench.serving import serve_command
from miri.config import load_settings
from miri.infra.processes import free_port
from miri.shop import open_shop

MIX = (("stock", 5), ("goods", 3), ("listing", 2))


@dataclass
class ReadsOptions:
    seconds: float = 10.0
    concurrency: int = 256
    threads: int = 2
    workers: int | None = None
    goods: int = 30  # catalogue size (the sale goods among them)
    warmup: float = 2.0
    data_dir: Path | None = None
    keep_data: bool = False
    max_in_flight: str = "off"  # the server's in-flight bound: off measures what it answers

    def __post_init__(self) -> None:
        if self.seconds < 1:
            raise ValueError("seconds must be at least 1")
        if not 1 <= self.concurrency <= wrk.MAX_CONNECTIONS:
            raise ValueError(f"concurrency must be 1..{wrk.MAX_CONNECTIONS:,}")
        if self.goods < 1:
            raise ValueError("goods must be at least 1")


def paths(goods_id: int) -> dict[str, list[str]]:
    stock = f"/api/goods/{goods_id}/stock"
    goods = f"/api/goods/{goods_id}"
    listing = "/api/goods?page=0&size=10"
    one = {"stock": stock, "goods": goods, "listing": listing}
    # Interleaved, so every stretch of the run reads all three in proportion.
    mix = [p for i in range(max(w for _, w in MIX)) for n, w in MIX if i < w for p in [one[n]]]
    return {"live stock": [stock], "goods page": [goods], "listing page": [listing], "mix": mix}


async def _measure(
    name: str,
    base: str,
    path_list: list[str],
    opts: ReadsOptions,
    server: ServerCpu,
    workdir: Path,
    seconds: float | None = None,
) -> dict[str, Any]:
    paths_file = workdir / "paths.txt"
    paths_file.write_text("".join(p + "\n" for p in path_list), encoding="utf-8")
    before = server.seconds()
    run = await wrk.run(
        base + path_list[0],
        wrk.PATHS_SCRIPT,
        [str(paths_file)],
        connections=opts.concurrency,
        seconds=seconds or opts.seconds,
        threads=opts.threads,
    )
    after = server.seconds()
    answers = run.answers
    socket_errors = sum(run.socket_errors.get(k, 0) for k in wrk.SOCKET_ERRORS)
    status: dict[str, int] = {}
    for (code, _), n in sorted(run.counts.items()):
        status[str(code)] = status.get(str(code), 0) + n
    cpu = None if before is None or after is None else after - before
    return {
        "path": name,
        "paths": sorted(set(path_list)),
        "requests": answers,
        "duration_s": round(run.duration_s, 3),
        "requests_per_s": round(answers / run.duration_s, 1) if run.duration_s else 0.0,
        "latency_ms": latency_of(run.latency_us),
        "status_counts": status,
        "non_2xx": sum(n for (code, _), n in run.counts.items() if not 200 <= code < 300),
        "socket_errors": socket_errors,
        "server_cpu_share": round(cpu / run.duration_s, 3) if cpu and run.duration_s else None,
        "server_cpu_us_per_request": round(cpu / answers * 1e6, 1) if cpu and answers else None,
        "client_cpu_share": round(run.cpu_s / run.duration_s, 3) if run.duration_s else None,
    }


async def _set_up(settings: Any, opts: ReadsOptions) -> int:
    """An admin seller, ``opts.goods`` goods on sale now; returns the sale goods' id."""
    async with open_shop(settings) as shop:
        [(seller_id, _)] = await shop.users.add_bench_users(1, "reads", role="ADMIN")
        sale_id = 0
        for n in range(opts.goods):
            goods = await shop.goods.register(
                seller_id,
                name=f"Opening goods {n}"[:20],
                description="The goods everyone refreshes at the opening",
                price=1000 + n,
                stock=10_000,
                category=("FASHION", "BEAUTY", "ETC")[n % 3],
            )
            if n == 0:
                sale_id = int(goods.goods_id)
        return sale_id


async def bench_reads(opts: ReadsOptions, ui: Any = None) -> dict[str, Any]:
    """Run every path; returns what ``--json`` writes."""
    wrk.wrk_path()
    wrk.raise_open_files(opts.concurrency)
    say = ui.say if ui is not None else (lambda _text: None)
    temp = opts.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="miri-reads-")) if temp else Path(opts.data_dir)
    settings = load_settings(data_dir=data_dir, rate_limits=False)
    rows: list[dict[str, Any]] = []
    try:
        goods_id = await _set_up(settings, opts)
        workdir = data_dir / "wrk"
        workdir.mkdir(exist_ok=True)
        bare_port, shop_port = free_port(), free_port()
        bare_base, shop_base = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{shop_port}"
        workers = ["--workers", str(opts.workers)] if opts.workers else []
        async with (
            subprocess_server(
                [sys.executable, "-m", "miri.bench.bare", "--port", str(bare_port)],
                {},
                data_dir / "bench-bare.log",
            ) as bare_proc,
            subprocess_server(
                serve_command(data_dir, shop_port, *workers),
                server_env(settings, settings.stock_strategy, opts.max_in_flight),
                data_dir / "bench-server-reads.log",
            ) as shop_proc,
        ):
            bare_cpu, shop_cpu = ServerCpu(bare_proc), ServerCpu(shop_proc)
            by_name = paths(goods_id)
            if opts.warmup > 0:
                say(f"warming up the shop ({opts.warmup:.0f} s of the mix)")
                await _measure(
                    "warm-up", shop_base, by_name["mix"], opts, shop_cpu, workdir, opts.warmup
                )
            say(f"bare GET /health ({opts.seconds:.0f} s, {opts.concurrency} connections)")
            first = await _measure("bare GET", bare_base, ["/health"], opts, bare_cpu, workdir)
            for name, path_list in by_name.items():
                say(f"{name}: {', '.join(sorted(set(path_list)))}")
                rows.append(await _measure(name, shop_base, path_list, opts, shop_cpu, workdir))
            say("bare GET /health again (the machine may have drifted)")
            last = await _measure("bare GET", bare_base, ["/health"], opts, bare_cpu, workdir)
    finally:
        if temp and not opts.keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)
    bare_rate = (first["requests_per_s"] + last["requests_per_s"]) / 2
    for row in rows:
        row["bare_ratio"] = round(row["requests_per_s"] / bare_rate, 4) if bare_rate else None
    bare = {
        **first,
        "requests_per_s": round(bare_rate, 1),
        "bare_ratio": 1.0,
        "runs": [first, last],
    }
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    return {
        "goods_id": goods_id,
        "bare": bare,
        "rows": rows,
        "passed": all(r["non_2xx"] == 0 and r["socket_errors"] == 0 for r in rows),
        "load": _load(),
        "metadata": report.metadata(settings, options, {"mode": "embedded"}),
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def table(out: dict[str, Any]) -> Table:
    bare = out["bare"]
    runs = bare.get("runs") or [bare]
    spread = " / ".join(f"{r['requests_per_s']:,.0f}" for r in runs)
    t = Table(
        title=(
            f"reads at an opening, wrk, {out['metadata']['options']['concurrency']} connections"
            f" (bare GET first / last: {spread} req/s; load {out['load']})"
        ),
        header_style="bold cyan",
        title_justify="left",
    )
    cols = ("path", "req/s", "of bare", "p50 ms", "p99 ms", "max ms", "errors")
    for col in (*cols, "srv µs/req", "srv cores", "wrk cores"):
        t.add_column(col, justify="left" if col == "path" else "right")
    for row in [bare, *out["rows"]]:
        lat = row["latency_ms"]
        t.add_row(
            row["path"],
            f"{row['requests_per_s']:,.0f}",
            "-" if row.get("bare_ratio") is None else f"{row['bare_ratio'] * 100:.1f}%",
            _ms(lat.get("p50")),
            _ms(lat.get("p99")),
            _ms(lat.get("max")),
            f"{row['non_2xx'] + row['socket_errors']:,}",
            _num(row.get("server_cpu_us_per_request")),
            _num(row.get("server_cpu_share"), 2),
            _num(row.get("client_cpu_share"), 2),
        )
    return t


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"
