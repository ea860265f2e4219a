"""The stock check (Redis against the database's truth, ``GoodsStore.truth``) and the write-back
of live figures. Redis is rebuilt from that truth whenever it lost data.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from miri.domain.goods.stock import Figures, LiveStock

if TYPE_CHECKING:
    from miri.domain.goods.store import GoodsStore

log = logging.getLogger(__name__)
CHUNK = 500  # goods per Redis pipeline in the check


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
    store: GoodsStore,
    live: LiveStock,
    *,
    repair: bool,
    only_missing: bool = False,
    truth: dict[int, Figures] | None = None,
) -> StockReport:
    """Compare Redis with SQLite for every goods; ``repair`` rewrites what differs.

    A full repair while orders are in flight would hand back stock that a reservation holds
    before its order row is committed, unless it runs under a new stock epoch (``truth`` read
    with the bump, see ``upkeep.StockUpkeep.rebuild``), which refuses those orders.
    """
    figures = truth if truth is not None else await store.truth()
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


async def sync_stock(store: GoodsStore, live: LiveStock, now: float) -> int:
    """Copy live stock of dirty goods into ``goods.stock_synced``; returns how many were written.

    The dirty mark carries a change counter. It is read with the stock in one script, and after
    the database commit a mark is cleared only if its counter has not moved: a change that landed
    meanwhile keeps the goods dirty for the next run, and a failed write clears nothing.
    """
    snapshot = await live.dirty_snapshot()
    if not snapshot:
        return 0
    written = await store.write_synced(snapshot, now)
    await live.clean([(gid, counter) for gid, counter, _ in snapshot])
    return written
