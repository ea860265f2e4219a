"""Stock truth from SQLite, the stock check and rebuild, and the write-back of live figures.

Truth: available = stock_total - the quantity of every active order item (the
``active_order_items`` view that orders publishes), and each buyer holds the sum of their active
items. Redis is rebuilt from that whenever it lost data.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from miri.domain.goods.stock import Figures, LiveStock
from miri.infra.sqlite import Database

log = logging.getLogger(__name__)
CHUNK = 500  # goods per Redis pipeline in the check


def _figures(conn: sqlite3.Connection, ids: Sequence[int] | None) -> dict[int, Figures]:
    marks = ",".join("?" * len(ids)) if ids is not None else ""
    args = tuple(ids) if ids is not None else ()
    only_goods = f" WHERE id IN ({marks})" if ids is not None else ""
    only_items = f" WHERE goods_id IN ({marks})" if ids is not None else ""
    # One read transaction, so the goods rows and the order items are one snapshot.
    conn.execute("BEGIN")
    try:
        goods = conn.execute(
            "SELECT id, stock_total, reservation_start, per_buyer_limit FROM goods" + only_goods,
            args,
        ).fetchall()
        held = conn.execute(
            "SELECT goods_id, user_id, SUM(quantity) FROM active_order_items"
            + only_items
            + " GROUP BY goods_id, user_id",
            args,
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    buyers: dict[int, dict[str, int]] = {}
    for goods_id, user_id, quantity in held:
        if quantity:
            buyers.setdefault(goods_id, {})[str(user_id)] = int(quantity)
    out = {}
    for row in goods:
        gid = row["id"]
        taken = sum(buyers.get(gid, {}).values())
        start = row["reservation_start"]
        out[gid] = Figures(
            goods_id=gid,
            available=row["stock_total"] - taken,
            buyers=buyers.get(gid, {}),
            open="" if start is None else repr(float(start)),
            limit=row["per_buyer_limit"] or 0,
        )
    return out


async def truth(db: Database, ids: Sequence[int] | None = None) -> dict[int, Figures]:
    """What Redis should hold, per goods (all goods when ``ids`` is None)."""
    if ids is not None and not ids:
        return {}
    return await db.read(lambda c: _figures(c, ids))


@dataclass(frozen=True)
class StockMismatch:
    goods_id: int
    what: str  # missing, stock, buyers, rules, oversold, unknown
    redis: Any
    truth: Any


@dataclass
class StockReport:
    checked: int = 0
    mismatches: list[StockMismatch] = field(default_factory=list)
    repaired: int = 0

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "repaired": self.repaired,
            "mismatches": [asdict(m) for m in self.mismatches],
        }


def _compare(f: Figures, fields: list[str | None], buyers: dict[str, str]) -> list[StockMismatch]:
    stock, open_at, limit = fields
    gid = f.goods_id
    if f.available < 0:
        # SQLite itself says more was sold than stocked: report it; Redis can only show 0.
        return [StockMismatch(gid, "oversold", stock, f.available)]
    if stock is None:
        return [StockMismatch(gid, "missing", None, f.available)]
    found = []
    if int(stock) != f.available:
        found.append(StockMismatch(gid, "stock", int(stock), f.available))
    held = {user: int(n) for user, n in buyers.items() if int(n) != 0}
    if held != f.buyers:
        found.append(StockMismatch(gid, "buyers", held, f.buyers))
    if (open_at or "") != f.open or int(limit or 0) != f.limit:
        found.append(
            StockMismatch(gid, "rules", [open_at or "", int(limit or 0)], [f.open, f.limit])
        )
    return found


async def check_stock(
    db: Database, live: LiveStock, *, repair: bool, only_missing: bool = False
) -> StockReport:
    """Compare Redis with SQLite for every goods; ``repair`` rewrites what differs.

    A full repair while orders are in flight would hand back stock that a reservation holds
    before its order row is committed, so the server repairs everything only when Redis is new
    to it (see ``GoodsService.startup_check``) and otherwise restores only what is missing.
    """
    figures = await truth(db)
    report = StockReport(checked=len(figures))
    ids = sorted(figures)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        state = await live.state(chunk)
        for gid in chunk:
            fields, buyers = state[gid]
            found = _compare(figures[gid], fields, buyers)
            report.mismatches += found
            if not (repair and found):
                continue
            if only_missing and found[0].what != "missing":
                continue
            f = figures[gid]
            if f.available < 0:
                f = Figures(gid, 0, f.buyers, f.open, f.limit)
            await live.load(f, force=True)
            report.repaired += 1
    for gid in sorted(await live.goods_ids() - set(figures)):
        report.mismatches.append(StockMismatch(gid, "unknown", "in Redis", "not in SQLite"))
        if repair and not only_missing:
            await live.forget(gid)
            report.repaired += 1
    if report.mismatches:
        log.warning(
            "stock check: %d mismatches, %d repaired", len(report.mismatches), report.repaired
        )
    return report


async def sync_stock(db: Database, live: LiveStock, now: float) -> int:
    """Copy live stock of dirty goods into ``goods.stock_synced``; returns how many were written.

    The dirty mark carries a change counter. It is read with the stock in one script, and after
    the SQLite commit a mark is cleared only if its counter has not moved: a change that landed
    meanwhile keeps the goods dirty for the next run, and a failed write clears nothing.
    """
    snapshot = await live.dirty_snapshot()
    if not snapshot:
        return 0
    written = await write_synced(db, snapshot, now)
    await live.clean([(gid, counter) for gid, counter, _ in snapshot])
    return written


async def write_synced(db: Database, snapshot: list[tuple[int, str, int]], now: float) -> int:
    rows = [(stock, now, gid) for gid, _, stock in snapshot]

    def write(conn: sqlite3.Connection) -> int:
        cur = conn.executemany(
            "UPDATE goods SET stock_synced = ?, synced_at = ? WHERE id = ?", rows
        )
        return cur.rowcount

    return await db.write(write)
