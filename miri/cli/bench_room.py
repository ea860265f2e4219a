"""``miri bench flash-sale --waiting-room``: runs ``miri.bench.waiting_room`` and prints its table."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from miri.cli.common import console, err_console, run_fast, table


def run_room_bench(
    *,
    early: int,
    late: int,
    stock: int,
    admit_rate: int,
    opens_in: float,
    server_workers: int | None,
    data_dir: Path | None,
    keep_data: bool,
    max_seconds: float,
    json_path: Path | None,
) -> None:
    from miri.bench.waiting_room import RoomBenchOptions, run, summary_rows

    try:
        opts = RoomBenchOptions(
            early=early,
            late=late,
            stock=stock,
            admit_rate=admit_rate,
            opens_in=opens_in,
            server_workers=server_workers,
            data_dir=data_dir,
            keep_data=keep_data,
            max_seconds=max_seconds,
        )
    except ValueError as exc:
        err_console.print(f"[red]bad options:[/] {exc}")
        raise typer.Exit(2) from None
    logging.basicConfig(level=logging.WARNING)
    with console.status("the sale behind a waiting room, then the bare sale ..."):
        try:
            out = run_fast(run(opts))
        except RuntimeError as exc:
            err_console.print(f"[red]bench failed:[/] {exc}")
            raise typer.Exit(1) from None
    load = out["load"]
    title = (
        f"flash sale, waiting room at {admit_rate}/s vs bare"
        f" (load {load['before'][0]:.2f} -> {load['after'][0]:.2f}, {load['cpus']} cores)"
    )
    console.print(table(title, ["figure", "waiting room", "bare"], summary_rows(out)))
    if json_path is not None:
        json_path.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
        console.print(f"figures written to {json_path}")
    if out["room"]["sale"]["oversold"] or out["bare"]["sale"]["oversold"]:
        err_console.print("[red]OVERSOLD[/]")
        raise typer.Exit(1)
