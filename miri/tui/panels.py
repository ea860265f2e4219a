"""Turning a snapshot into what the panels and tables show (plain functions, no I/O)."""

from __future__ import annotations

import time
from datetime import datetime, tzinfo
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from miri.tui.data import GoodsRow, JobRow, ServerInfo, Snapshot

STATUS_STYLE = {
    "COMPLETED": "green",
    "PAYMENT_COMPLETED": "green",
    "DELIVERED": "green",
    "RETURN_COMPLETED": "cyan",
    "PAYMENT_PENDING": "yellow",
    "PAYMENT_SCREEN_ENTERED": "yellow",
    "PAYMENT_IN_PROGRESS": "yellow",
    "PENDING": "yellow",
    "IN_TRANSIT": "blue",
    "RETURN_IN_PROGRESS": "magenta",
    "CANCELED": "red",
    "PAYMENT_ABORTED": "red",
    "REFUNDED": "magenta",
}
PAYMENT_ORDER = (
    "PAYMENT_COMPLETED",
    "PAYMENT_IN_PROGRESS",
    "PAYMENT_SCREEN_ENTERED",
    "PAYMENT_ABORTED",
    "REFUNDED",
)


def status(value: str | None, prefix: str = "") -> Text:
    """A status in its colour; ``prefix`` (PAYMENT_, RETURN_) is left out to save width."""
    if value is None:
        return Text("-", style="dim")
    shown = value[len(prefix) :] if prefix and value.startswith(prefix) else value
    return Text(shown, style=STATUS_STYLE.get(value, ""))


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _grid() -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    return grid


def _dot(ok: bool | None) -> Text:
    if ok is None:
        return Text("●", style="dim")
    return Text("●", style="green" if ok else "red")


# -- top strip --------------------------------------------------------------------------------------
def server_panel(servers: list[ServerInfo] | None, data_dir: str) -> RenderableType:
    if servers is None:
        return Text("looking...", style="dim")
    if not servers:
        return Group(
            Text.assemble(_dot(None), " no server on this data dir"),
            Text("the dashboard works on the files directly", style="dim"),
            Text(data_dir, style="dim", overflow="ellipsis", no_wrap=True),
        )
    grid = _grid()
    now = time.time()
    for s in servers:
        grid.add_row(
            Text.assemble(_dot(s.health == "ok"), " serving"),
            Text(s.url, style="bold cyan"),
        )
        grid.add_row("", Text(f"pid {s.pid} · up {duration(now - s.started_at)} · {s.health}"))
    if len(servers) > 1:
        grid.add_row("", Text(f"{len(servers)} worker processes", style="dim"))
    return grid


def health_panel(snap: Snapshot | None, shop_error: str | None) -> RenderableType:
    if shop_error:
        return Text.assemble(_dot(False), " shop unavailable: ", Text(shop_error, style="red"))
    if snap is None:
        return Text("opening the shop...", style="dim")
    grid = _grid()
    health, redis, sqlite = snap.health, snap.redis, snap.sqlite
    redis_ok = health.get("redis") == "ok" if health else None
    db_ok = health.get("database") == "ok" if health else None
    if "redis" in snap.errors:
        detail = Text(snap.errors["redis"], style="red")
    else:
        detail = Text(
            f"{redis.get('mode')} {redis.get('version')} · {redis.get('keys')} keys · "
            f"{redis.get('memory')} · {redis.get('clients')} clients · "
            f"ping {redis.get('ping_ms')} ms"
        )
    grid.add_row(Text.assemble(_dot(redis_ok), " Redis"), detail)
    if "sqlite" in snap.errors:
        detail = Text(snap.errors["sqlite"], style="red")
    else:
        detail = Text(
            f"{size(sqlite.get('file'))} + WAL {size(sqlite.get('wal'))} · "
            f"schema v{sqlite.get('schema')}"
        )
    grid.add_row(Text.assemble(_dot(db_ok), " SQLite"), detail)
    breakers = health.get("breakers") or {}
    if breakers:
        parts = [
            Text(f"{name} {state}", style="green" if state == "closed" else "red")
            for name, state in sorted(breakers.items())
        ]
        grid.add_row("  Breakers", Text(" · ").join(parts))
    if health and health.get("status") != "ok":
        grid.add_row("", Text(f"redis: {health.get('redis')}, database: {health.get('database')}"))
    return grid


def bus_panel(snap: Snapshot | None) -> RenderableType:
    if snap is None:
        return Text("...", style="dim")
    if "bus" in snap.errors:
        return Text(snap.errors["bus"], style="red")
    bus = snap.bus
    dead = bus.get("deadLetters", 0)
    pending = bus.get("pending", 0)
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(justify="right")
    table.add_row("backlog", Text(f"{pending:,}", style="yellow" if pending else "green"), "")
    table.add_row("dead letters", Text(f"{dead:,}", style="bold red" if dead else "green"), "")
    table.add_row("delivered", f"{bus.get('delivered', 0):,}", "")
    for name, c in (bus.get("consumers") or {}).items():
        table.add_row(
            Text(f"  {name}", style="dim"),
            Text(f"{c['pending']} pending", style="yellow" if c["pending"] else "dim"),
            Text(f"{c['dead']} dead", style="red" if c["dead"] else "dim"),
        )
    parts: list[RenderableType] = [table]
    if dead:
        parts.append(Text("press d to replay them", style="dim"))
    return Group(*parts)


def payments_panel(snap: Snapshot | None) -> RenderableType:
    if snap is None:
        return Text("...", style="dim")
    if "payments" in snap.errors:
        return Text(snap.errors["payments"], style="red")
    outcomes = snap.payments
    total = sum(outcomes.values())
    if not total:
        return Text("no payments yet", style="dim")
    table = Table.grid(padding=(0, 1))
    table.add_column()
    table.add_column(justify="right")
    table.add_column(justify="right", style="dim")
    names = [n for n in PAYMENT_ORDER if n in outcomes] + sorted(
        n for n in outcomes if n not in PAYMENT_ORDER
    )
    for name in names:
        count = outcomes[name]
        table.add_row(status(name), f"{count:,}", f"{count / total:.0%}")
    return table


# -- tables -----------------------------------------------------------------------------------------
GOODS_COLUMNS = ("id", "name", "category", "price", "sale opens", "stock", "live", "sold", "buyers")
ORDER_COLUMNS = (
    "item",
    "order",
    "goods",
    "qty",
    "total",
    "status",
    "payment",
    "shipping",
    "return",
    "at",
)
JOB_COLUMNS = ("job", "next run", "in", "last result")
DEAD_COLUMNS = ("event", "consumer", "tries", "failed", "error")


def opens(row: GoodsRow, zone: tzinfo, now: datetime) -> Text:
    if row.open:
        return Text("open", style="bold green")
    assert row.opens is not None
    local = row.opens.astimezone(zone)
    return Text(f"{local:%m-%d %H:%M} (in {duration((row.opens - now).total_seconds())})")


def goods_cells(row: GoodsRow, zone: tzinfo, now: datetime) -> tuple[Any, ...]:
    live: Any = "?" if row.live is None else f"{row.live:,}"
    if row.live == 0 and row.stock_total:
        live = Text("sold out", style="red")
    return (
        str(row.goods_id),
        row.name,
        row.category,
        Text(f"{row.price:,}", justify="right"),
        opens(row, zone, now),
        Text(f"{row.stock_total:,}", justify="right"),
        live if isinstance(live, Text) else Text(live, justify="right"),
        Text(f"{row.sold:,}", justify="right"),
        Text(f"{row.buyers:,}", justify="right"),
    )


def order_cells(item: dict[str, Any]) -> tuple[Any, ...]:
    at = item.get("orderedAt") or ""
    try:
        when = datetime.fromisoformat(at).strftime("%H:%M:%S")
    except ValueError:
        when = at
    return (
        str(item["orderDetailId"]),
        str(item["orderId"]),
        item["goodsName"],
        Text(str(item["quantity"]), justify="right"),
        Text(f"{item['subTotalPrice']:,}", justify="right"),
        status(item["orderStatus"]),
        status(item["paymentStatus"], "PAYMENT_"),
        status(item["shippingStatus"]),
        status(item["returnStatus"], "RETURN_"),
        when,
    )


def _result(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def job_cells(job: JobRow, zone: tzinfo, now: datetime) -> tuple[Any, ...]:
    nxt = job.next_run
    return (
        Text(job.name, style="bold"),
        f"{nxt.astimezone(zone):%m-%d %H:%M:%S}" if nxt else "-",
        duration((nxt - now).total_seconds()) if nxt else "-",
        _result(job.last_result),
    )


def dead_cells(letter: dict[str, Any], zone: tzinfo) -> tuple[Any, ...]:
    error = (letter.get("lastError") or "").splitlines()
    failed = datetime.fromtimestamp(letter["failedAt"], zone) if letter.get("failedAt") else None
    return (
        Text(letter["type"], style="bold"),
        letter["consumer"],
        str(letter["attempts"]),
        f"{failed:%m-%d %H:%M:%S}" if failed else "-",
        Text(error[0] if error else "", style="red"),
    )
