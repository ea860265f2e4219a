"""Order items as buyers and the operator see them: with goods names and payment statuses.

These reads join the orders module's tables with the goods and payments tables; they only read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, tzinfo

from miri.domain.errors import NotFound
from miri.domain.paging import Page
from miri.infra.database import Database, marks

ITEM_COLUMNS = """
    d.id AS order_item_id, d.order_id, d.goods_id, g.name AS goods_name, g.category,
    d.quantity, d.unit_price, d.status, s.status AS shipping_status, p.status AS payment_status,
    d.return_status, d.created_at
"""
ITEM_JOINS = """
    FROM order_items d
    JOIN goods g ON g.id = d.goods_id
    JOIN shipping s ON s.order_item_id = d.id
    LEFT JOIN payments p ON p.order_item_id = d.id
"""


@dataclass(frozen=True)
class OrderItemView:
    order_item_id: int
    order_id: int
    goods_id: int
    goods_name: str
    category: str
    quantity: int
    unit_price: int
    order_status: str
    shipping_status: str
    payment_status: str | None  # None until payments has opened the payment
    return_status: str | None
    ordered_at: datetime  # in the shop's time zone

    @property
    def sub_total_price(self) -> int:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class BuyersOrder:
    user_id: int
    items: list[OrderItemView]


@dataclass(frozen=True)
class GoodsSold:
    goods_id: int
    goods_name: str
    sold: int  # units in items neither canceled nor returned


@dataclass(frozen=True)
class Revenue:
    """Money in won: taken by payments, given back by refunds, and what the shop keeps."""

    paid: int
    refunded: int

    @property
    def net(self) -> int:
        return self.paid - self.refunded


@dataclass(frozen=True)
class GoodsRevenue:
    goods_id: int
    goods_name: str
    revenue: Revenue


# Money was taken: a completed walk, a provider's confirmed payment, or one refunded since.
_TAKEN = "p.status = 'PAYMENT_COMPLETED' OR p.paid_at IS NOT NULL OR p.refunded_at IS NOT NULL"
REVENUE_PER_GOODS = f"""
    SELECT d.goods_id, g.name,
        COALESCE(SUM(CASE WHEN {_TAKEN} THEN p.amount ELSE 0 END), 0),
        COALESCE(SUM(CASE WHEN p.refunded_at IS NOT NULL THEN p.amount ELSE 0 END), 0)
    FROM payments p
    JOIN order_items d ON d.id = p.order_item_id
    JOIN goods g ON g.id = d.goods_id
    GROUP BY d.goods_id, g.name
    ORDER BY d.goods_id
"""


@dataclass(frozen=True)
class OrderStats:
    """The admin's totals: counts per status of items, shipping, returns and payments; money."""

    orders: int
    orders_by_status: dict[str, int]
    shipping_by_status: dict[str, int]
    returns_by_status: dict[str, int]
    payment_outcomes: dict[str, int]
    sold_per_goods: list[GoodsSold]
    revenue_per_goods: list[GoodsRevenue]

    @property
    def revenue(self) -> Revenue:
        return Revenue(
            sum(g.revenue.paid for g in self.revenue_per_goods),
            sum(g.revenue.refunded for g in self.revenue_per_goods),
        )


class OrderViews:
    def __init__(self, *, db: Database, zone: tzinfo) -> None:
        self._db = db
        self._zone = zone

    def item_of(self, row: sqlite3.Row) -> OrderItemView:
        return OrderItemView(
            order_item_id=row["order_item_id"],
            order_id=row["order_id"],
            goods_id=row["goods_id"],
            goods_name=row["goods_name"],
            category=row["category"],
            quantity=row["quantity"],
            unit_price=row["unit_price"],
            order_status=row["status"],
            shipping_status=row["shipping_status"],
            payment_status=row["payment_status"],
            return_status=row["return_status"],
            ordered_at=datetime.fromtimestamp(row["created_at"], self._zone),
        )

    async def list(
        self,
        *,
        user_id: int | None = None,
        status: str | None = None,
        goods_id: int | None = None,
        page: int = 0,
        size: int = 10,
    ) -> Page[OrderItemView]:
        """Order items, newest first, goods and statuses joined in one query."""
        where, args = [], []
        for column, value in (
            ("d.user_id", user_id),
            ("d.status", status),
            ("d.goods_id", goods_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""

        def query(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], int]:
            total = conn.execute(f"SELECT COUNT(*) FROM order_items d {clause}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT {ITEM_COLUMNS} {ITEM_JOINS} {clause} ORDER BY d.id DESC LIMIT ? OFFSET ?",
                (*args, size, page * size),
            ).fetchall()
            return rows, total

        rows, total = await self._db.read(query)
        return Page([self.item_of(r) for r in rows], page, size, total)

    async def get(self, user_id: int | None, order_item_id: int) -> OrderItemView:
        """One item; another user's item is as absent as a missing one (None: the operator)."""
        row = await self._db.read(
            lambda c: c.execute(
                f"SELECT {ITEM_COLUMNS}, d.user_id {ITEM_JOINS} WHERE d.id = ?", (order_item_id,)
            ).fetchone()
        )
        if row is None or (user_id is not None and row["user_id"] != user_id):
            raise NotFound("no such order")
        return self.item_of(row)

    async def items(self, order_item_ids: Collection[int]) -> dict[int, OrderItemView]:
        """Each of these items that exists, by id, in one read (the operator's view)."""
        ids = list(order_item_ids)
        if not ids:
            return {}
        rows = await self._db.read(
            lambda c: c.execute(
                f"SELECT {ITEM_COLUMNS} {ITEM_JOINS} WHERE d.id IN ({marks(len(ids))})", ids
            ).fetchall()
        )
        return {row["order_item_id"]: self.item_of(row) for row in rows}

    async def order(self, user_id: int | None, order_id: int) -> BuyersOrder:
        """One order's buyer and items, oldest first; another user's order is as absent as a
        missing one (None: the operator)."""
        rows = await self._db.read(
            lambda c: c.execute(
                f"SELECT {ITEM_COLUMNS}, d.user_id {ITEM_JOINS} WHERE d.order_id = ? ORDER BY d.id",
                (order_id,),
            ).fetchall()
        )
        if not rows or (user_id is not None and rows[0]["user_id"] != user_id):
            raise NotFound("no such order")
        return BuyersOrder(rows[0]["user_id"], [self.item_of(r) for r in rows])

    async def stats(self) -> OrderStats:
        def query(conn: sqlite3.Connection) -> OrderStats:
            def counts(sql: str) -> dict[str, int]:
                return dict(conn.execute(sql).fetchall())

            sold = [
                GoodsSold(r[0], r[1], r[2])
                for r in conn.execute(
                    "SELECT g.id, g.name, COALESCE(SUM(a.quantity), 0) FROM goods g"
                    " LEFT JOIN active_order_items a ON a.goods_id = g.id"
                    " GROUP BY g.id ORDER BY g.id"
                ).fetchall()
            ]
            return OrderStats(
                orders=conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0],
                orders_by_status=counts("SELECT status, COUNT(*) FROM order_items GROUP BY status"),
                shipping_by_status=counts("SELECT status, COUNT(*) FROM shipping GROUP BY status"),
                returns_by_status=counts(
                    "SELECT return_status, COUNT(*) FROM order_items"
                    " WHERE return_status IS NOT NULL GROUP BY return_status"
                ),
                payment_outcomes=counts("SELECT status, COUNT(*) FROM payments GROUP BY status"),
                sold_per_goods=sold,
                revenue_per_goods=[
                    GoodsRevenue(r[0], r[1], Revenue(int(r[2]), int(r[3])))
                    for r in conn.execute(REVENUE_PER_GOODS).fetchall()
                ],
            )

        return await self._db.read(query)
