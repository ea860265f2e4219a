"""``miri bench``: benchmarks. ``flash-sale`` rehearses a sale and checks nothing was oversold."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from miri.cli.common import console, err_console, run_fast

app = typer.Typer(help="Benchmarks: rehearse a flash sale and measure it.", no_args_is_help=True)


@app.command("flash-sale")
def flash_sale(
    buyers: Annotated[int, typer.Option(help="Buyer accounts (made directly, no sign-up).")] = 5000,
    stock: Annotated[int, typer.Option(help="Units of the goods on sale.")] = 10000,
    concurrency: Annotated[
        int,
        typer.Option(
            help="Keep-alive connections (closed loop: workers), up to 5,000 (the open-files"
            " limit is raised for the bench and the servers it starts)."
        ),
    ] = 256,
    quantity: Annotated[int, typer.Option(help="Units per order.")] = 1,
    waiting_room: Annotated[
        bool,
        typer.Option(
            "--waiting-room",
            help="The sale behind a waiting room and the bare sale, side by side in one run.",
        ),
    ] = False,
    admit_rate: Annotated[
        int, typer.Option(help="--waiting-room: buyers admitted per second.")
    ] = 200,
    early_share: Annotated[
        float, typer.Option(help="--waiting-room: share of buyers arriving before the opening.")
    ] = 0.5,
    per_buyer_limit: Annotated[
        int | None, typer.Option(help="Cap per buyer on these goods.")
    ] = None,
    payment_abandon_rate: Annotated[
        float, typer.Option(help="Share of simulated buyers who leave at each payment step.")
    ] = 0.0,
    payment_seed: Annotated[int | None, typer.Option(help="Seed of the simulated payments.")] = 1,
    opens_in: Annotated[float, typer.Option(help="Seconds from registering to the opening.")] = 3.0,
    rate: Annotated[
        float | None,
        typer.Option(
            help="Open loop: orders per second at a fixed arrival rate (latency from "
            "the intended send time). Default: closed loop."
        ),
    ] = None,
    runs: Annotated[int, typer.Option(help="Repeat the sale; report median and spread.")] = 3,
    strategy: Annotated[str, typer.Option(help="Stock reservation: lua or sqlite.")] = "lua",
    compare: Annotated[
        bool, typer.Option(help="Run lua, sqlite and a bare aiohttp endpoint; give ratios.")
    ] = False,
    in_process: Annotated[
        bool, typer.Option("--in-process", help="Drive the services directly, without HTTP.")
    ] = False,
    url: Annotated[
        str | None, typer.Option(help="A running server (needs --admin-token and its --data-dir).")
    ] = None,
    admin_token: Annotated[
        str | None, typer.Option(envvar="MIRI_ADMIN_TOKEN", help="Admin token for --url.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data dir (default: a fresh temporary one).")
    ] = None,
    keep_data: Annotated[bool, typer.Option(help="Keep the temporary data dir.")] = False,
    max_seconds: Annotated[float, typer.Option(help="Bound on each run's load phase.")] = 120.0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write every figure here.")
    ] = None,
    plot: Annotated[bool, typer.Option(help="Plot the last run in the terminal.")] = False,
    progress: Annotated[bool, typer.Option(help="Live progress bar.")] = True,
    client: Annotated[
        str,
        typer.Option(
            help="HTTP client: aiohttp, raw (a minimal keep-alive client that leaves more "
            "of a small machine to the server), or wrk (the C load generator, apt-get install -y"
            " wrk: the truthful ceiling on a small machine)."
        ),
    ] = "aiohttp",
    server_workers: Annotated[
        int | None,
        typer.Option(min=1, max=16, help="`miri serve --workers N` for the server it starts."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="A PostgreSQL server (postgresql://...): the bench makes a fresh schema there,"
            " runs on it and drops it at the end (kept with --keep-data). Unset: the SQLite file."
        ),
    ] = None,
    hosts: Annotated[
        int,
        typer.Option(
            help="`miri serve` processes to start, each with its own data dir, on the one"
            " database and one Redis, the buyers spread over them (2 or more: --database-url)."
        ),
    ] = 1,
    redis_url: Annotated[
        str | None,
        typer.Option(
            help="The Redis the shop and its hosts share. Default: embedded (SQLite), a"
            " throwaway redis-server on loopback (with --database-url)."
        ),
    ] = None,
    max_in_flight: Annotated[
        str, typer.Option(help="The servers' in-flight bound (off, auto or a number).")
    ] = "off",
) -> None:
    """Rehearse a flash sale: buyers order until sold out; then check nothing was oversold or lost.

    Example: miri bench flash-sale --buyers 5000 --stock 10000 --concurrency 256 --json out.json

    Several hosts: miri bench flash-sale --database-url postgresql://postgres@127.0.0.1/test
    --hosts 2
    """
    if waiting_room:
        from miri.cli.bench_room import run_room_bench

        early = round(buyers * early_share)
        run_room_bench(
            early=early,
            late=buyers - early,
            stock=stock,
            admit_rate=admit_rate,
            opens_in=opens_in,
            server_workers=server_workers,
            data_dir=data_dir,
            keep_data=keep_data,
            max_seconds=max_seconds,
            json_path=json_path,
        )
        return
    from miri.bench import report
    from miri.bench.flash_sale import BenchOptions, Ui
    from miri.bench.flash_sale import flash_sale as run_bench

    try:
        opts = BenchOptions(
            buyers=buyers,
            stock=stock,
            concurrency=concurrency,
            quantity=quantity,
            per_buyer_limit=per_buyer_limit,
            payment_abandon_rate=payment_abandon_rate,
            payment_seed=payment_seed,
            opens_in=opens_in,
            rate=rate,
            runs=runs,
            strategy=strategy,
            compare=compare,
            in_process=in_process,
            url=url,
            admin_token=admin_token,
            data_dir=data_dir,
            keep_data=keep_data,
            max_seconds=max_seconds,
            client=client,
            server_workers=server_workers,
            database_url=database_url,
            hosts=hosts,
            redis_url=redis_url,
            max_in_flight=max_in_flight,
        )
    except ValueError as exc:
        err_console.print(f"[red]bad options:[/] {exc}")
        raise typer.Exit(2) from None
    logging.basicConfig(level=logging.WARNING)
    ui = Ui(console=console, progress=progress and console.is_terminal, plot=plot)
    try:
        # uvloop where it is installed: the load generator must not be the limit.
        out = run_fast(run_bench(opts, ui))
    except RuntimeError as exc:
        err_console.print(f"[red]bench failed:[/] {exc}")
        raise typer.Exit(1) from None
    for name, section in out["strategies"].items():
        title = f"flash sale ({name}, {section['target']}"
        eng = section.get("engines") or {}
        if eng.get("database") == "postgresql" or eng.get("hosts", 1) != 1:
            n = eng.get("hosts", 1)
            title += f", {eng.get('database')}, {n} host{'s' if n != 1 else ''}"
        title += ")"
        console.print(report.tables(title, section))
    if out["compare"]:
        console.print(report.compare_table(out["compare"]))
    if json_path is not None:
        json_path.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
        console.print(f"figures written to {json_path}")
    if not out["passed"]:
        err_console.print("[red]a correctness check failed[/]")
        raise typer.Exit(1)


@app.command("reads")
def reads(
    seconds: Annotated[float, typer.Option(help="Seconds of wrk per path.")] = 10.0,
    concurrency: Annotated[int, typer.Option(help="wrk connections (up to 5,000).")] = 256,
    threads: Annotated[int, typer.Option(help="wrk threads.")] = 2,
    workers: Annotated[
        int | None, typer.Option(min=1, max=16, help="`miri serve --workers N`.")
    ] = None,
    goods: Annotated[int, typer.Option(help="Goods in the catalogue (one is on sale).")] = 30,
    warmup: Annotated[float, typer.Option(help="Seconds of the mix before measuring.")] = 2.0,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data dir (default: a fresh temporary one).")
    ] = None,
    keep_data: Annotated[bool, typer.Option(help="Keep the temporary data dir.")] = False,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write every figure here.")
    ] = None,
    max_in_flight: Annotated[
        str, typer.Option(help="The server's in-flight bound (off, auto or a number).")
    ] = "off",
) -> None:
    """The read side of an opening (live stock, goods page, listing page, a mix), each driven by
    wrk and given as a share of a bare aiohttp GET measured by the same wrk in the same run, with
    the server's CPU per request.

    Example: miri bench reads --seconds 10 --concurrency 256 --json reads.json
    """
    from miri.bench.reads import ReadsOptions, bench_reads, table

    try:
        opts = ReadsOptions(
            seconds=seconds,
            concurrency=concurrency,
            threads=threads,
            workers=workers,
            goods=goods,
            warmup=warmup,
            data_dir=data_dir,
            keep_data=keep_data,
            max_in_flight=max_in_flight,
        )
    except ValueError as exc:
        err_console.print(f"[red]bad options:[/] {exc}")
        raise typer.Exit(2) from None
    logging.basicConfig(level=logging.WARNING)

    class _Say:
        def say(self, text: str) -> None:
            console.print(text)

    try:
        out = run_fast(bench_reads(opts, _Say()))
    except RuntimeError as exc:
        err_console.print(f"[red]bench failed:[/] {exc}")
        raise typer.Exit(1) from None
    console.print(table(out))
    if json_path is not None:
        json_path.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
        console.print(f"figures written to {json_path}")
    if not out["passed"]:
        err_console.print("[red]some reads were answered with errors (see non-2xx)[/]")
        raise typer.Exit(1)
