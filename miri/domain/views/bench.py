"""The benchmark's checks: what ``miri bench flash-sale`` reads after a sale, across modules.

Read-only queries over the goods and order items tables for one goods, in the bench's own terms;
SQLite is the truth the bench holds the answers and the live stock against.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from miri.infra.database import Database


@dataclass(frozen=True)
class SaleFigures:
    """One goods after its sale, as SQLite has it."""

    stock_total: int  # initial stock plus restocks
    active: int  # units whose stock is still taken (``active_order_items``)
    top_holder: tuple[int, int] | None  # (user id, units) of the buyer holding the most
    over_limit: int  # buyers holding more than the per-buyer limit
    order_item_ids: frozenset[int]  # every order item of the goods, whatever its status
    by_status: dict[str, int]  # order items per status


async def sale_figures(db: Database, goods_id: int, per_buyer_limit: int | None) -> SaleFigures:
    """The figures the bench checks for ``goods_id`` (a limit of None counts every holder)."""

    def read(conn: sqlite3.Connection) -> SaleFigures:
        [stock_total] = conn.execute(
            "SELECT stock_total FROM goods WHERE id = ?", (goods_id,)
        ).fetchone()
        active = conn.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM active_order_items WHERE goods_id = ?",
            (goods_id,),
        ).fetchone()[0]
        top = conn.execute(
            "SELECT user_id, SUM(quantity) AS held FROM active_order_items WHERE goods_id = ?"
            " GROUP BY user_id ORDER BY held DESC LIMIT 1",
            (goods_id,),
        ).fetchone()
        over = conn.execute(
            "SELECT COUNT(*) FROM (SELECT user_id FROM active_order_items WHERE goods_id = ?"
            " GROUP BY user_id HAVING SUM(quantity) > ?) AS over_limit",
            (goods_id, per_buyer_limit or 0),
        ).fetchone()[0]
        ids = conn.execute("SELECT id FROM order_items WHERE goods_id = ?", (goods_id,)).fetchall()
        by_status = conn.execute(
            "SELECT status, COUNT(*) FROM order_items WHERE goods_id = ? GROUP BY status",
            (goods_id,),
        ).fetchall()
        return SaleFigures(
            stock_total=stock_total,
            active=active,
            top_holder=(top[0], top[1]) if top else None,
            over_limit=over,
            order_item_ids=frozenset(row[0] for row in ids),
            by_status={row[0]: row[1] for row in by_status},
        )

    return await db.read(read)


async def written_back_stock(db: Database, goods_id: int) -> int:
    """The live stock figure the last write-back stored for ``goods_id`` (``stock_synced``)."""
    return await db.read(
        lambda conn: conn.execute(
            "SELECT stock_synced FROM goods WHERE id = ?", (goods_id,)
        ).fetchone()[0]
    )
