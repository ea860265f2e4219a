"""``miri doctor``: check live stock in Redis against SQLite's truth, and repair it."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import typer

from miri.cli.common import DataDir, Json, RedisUrl, console, emit, run, settings_for, table
from miri.domain.goods import StockReport
from miri.shop import Shop


def _report(report: StockReport) -> dict[str, Any]:
    """The check as ``--json`` prints it, in the camelCase every other ``--json`` uses."""
    return {
        "ok": report.ok,
        "checked": report.checked,
        "repaired": report.repaired,
        "mismatches": [
            {"goodsId": m.goods_id, "what": m.what, "redis": m.redis, "truth": m.truth}
            for m in report.mismatches
        ],
    }


def doctor(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Rewrite Redis from SQLite where they differ, under a new stock epoch: safe "
            "while servers take orders (an order reserved before the repair and stored after it "
            "is refused, so no unit is handed out twice).",
        ),
    ] = False,
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Check that live stock = stock total - active ordered quantity, for every goods.

    Exits 1 when a mismatch is left (after --repair: when the repair did not fix it).

    Example: miri doctor --data-dir ./shop-data --json
    """
    settings = settings_for(data_dir, redis_url=redis_url)

    async def work(shop: Shop) -> tuple[StockReport, StockReport | None]:
        report = await shop.goods.check_stock(repair=False)
        if not repair:
            return report, None
        if not report.ok:
            # A plain rewrite would hand back units that an order in flight on a running server
            # holds before its row is committed; the rebuild's new epoch refuses that order.
            rebuilt = await shop.goods.upkeep.rebuild("miri doctor --repair")
            report = replace(report, repaired=rebuilt.repaired)
        return report, await shop.goods.check_stock(repair=False)

    report, after = run(work, settings)
    data = _report(report)
    if after is not None:
        data["afterRepair"] = _report(after)
    emit(
        data,
        as_json,
        lambda d: table(
            f"Stock check: {d['checked']} goods, {len(d['mismatches'])} mismatches",
            ["goods", "what", "redis", "sqlite truth"],
            [(m["goodsId"], m["what"], m["redis"], m["truth"]) for m in d["mismatches"]],
        ),
    )
    left = after if after is not None else report
    if not as_json:
        if report.ok:
            console.print("[green]stock is consistent[/]")
        elif after is not None and after.ok:
            console.print(f"[green]repaired {report.repaired} goods; stock is consistent[/]")
        else:
            console.print("[red]stock mismatches found[/] (miri doctor --repair rewrites Redis)")
    if not left.ok:
        raise typer.Exit(1)
