"""What was bought from a seller, with the buyer and the address to ship to (reads only).

The one place that decrypts a delivery address and a buyer's contact for someone other than the
buyer: only for the seller of that item's goods, and for admins (``seller_id=None``). Everyone
else is told the item does not exist.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, tzinfo

from miri.domain.errors import NotFound
from miri.domain.paging import Page
from miri.domain.views.orders import ITEM_COLUMNS, ITEM_JOINS, OrderItemView, OrderViews
from miri.infra.crypto import FieldCipher
from miri.infra.database import Database

SALE_COLUMNS = f"""{ITEM_COLUMNS}, d.user_id, o.address_enc, u.name_enc, u.phone_enc, u.email_enc,
    g.seller_id, s.carrier, s.tracking_number, s.shipped_at, s.status_at"""
SALE_JOINS = f"""{ITEM_JOINS}
    JOIN orders o ON o.id = d.order_id
    JOIN users u ON u.id = d.user_id"""
EXPORT_BATCH = 500


@dataclass(frozen=True)
class Sale:
    """An order item as its seller sees it: what to send, to whom, where, and how it went."""

    item: OrderItemView
    seller_id: int
    buyer_id: int
    buyer_name: str
    email: str
    phone_number: str
    address: str
    carrier: str | None
    tracking_number: str | None
    shipped_at: datetime | None
    shipping_at: datetime  # when the shipping status last changed


class SalesViews:
    def __init__(self, *, db: Database, cipher: FieldCipher, zone: tzinfo) -> None:
        self._db = db
        self._cipher = cipher
        self._zone = zone
        self._items = OrderViews(db=db, zone=zone)

    def _sale(self, row: sqlite3.Row) -> Sale:
        dec = self._cipher.decrypt
        shipped = row["shipped_at"]
        return Sale(
            item=self._items.item_of(row),
            seller_id=row["seller_id"],
            buyer_id=row["user_id"],
            buyer_name=dec(row["name_enc"], "name"),
            email=dec(row["email_enc"], "email"),
            phone_number=dec(row["phone_enc"], "phone"),
            address=dec(row["address_enc"], "address"),
            carrier=row["carrier"],
            tracking_number=row["tracking_number"],
            shipped_at=datetime.fromtimestamp(shipped, self._zone) if shipped else None,
            shipping_at=datetime.fromtimestamp(row["status_at"], self._zone),
        )

    @staticmethod
    def _where(
        seller_id: int | None, status: str | None, shipping: str | None, goods_id: int | None
    ) -> tuple[str, list[object]]:
        where, args = [], []
        for column, value in (
            ("g.seller_id", seller_id),
            ("d.status", status),
            ("s.status", shipping),
            ("d.goods_id", goods_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        return (f"WHERE {' AND '.join(where)}" if where else ""), args

    async def page(
        self,
        seller_id: int | None,
        *,
        status: str | None = None,
        shipping: str | None = None,
        goods_id: int | None = None,
        page: int = 0,
        size: int = 10,
    ) -> Page[Sale]:
        """Items bought from ``seller_id`` (None: every seller's), newest first."""
        clause, args = self._where(seller_id, status, shipping, goods_id)

        def query(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], int]:
            total = conn.execute(
                "SELECT COUNT(*) FROM order_items d JOIN goods g ON g.id = d.goods_id"
                f" JOIN shipping s ON s.order_item_id = d.id {clause}",
                args,
            ).fetchone()[0]
            rows = conn.execute(
                f"SELECT {SALE_COLUMNS} {SALE_JOINS} {clause} ORDER BY d.id DESC LIMIT ? OFFSET ?",
                (*args, size, page * size),
            ).fetchall()
            return rows, total

        rows, total = await self._db.read(query)
        return Page([self._sale(r) for r in rows], page, size, total)

    async def every(
        self,
        seller_id: int | None,
        *,
        status: str | None = None,
        shipping: str | None = None,
        goods_id: int | None = None,
    ) -> AsyncIterator[Sale]:
        """Every matching item, oldest first (a packing list), read in batches by id."""
        clause, args = self._where(seller_id, status, shipping, goods_id)
        after = 0
        while True:
            cond = f"{clause} AND d.id > ?" if clause else "WHERE d.id > ?"
            rows = await self._db.read(
                lambda c, cond=cond, after=after: c.execute(
                    f"SELECT {SALE_COLUMNS} {SALE_JOINS} {cond} ORDER BY d.id LIMIT ?",
                    (*args, after, EXPORT_BATCH),
                ).fetchall()
            )
            for row in rows:
                yield self._sale(row)
            if len(rows) < EXPORT_BATCH:
                return
            after = rows[-1]["order_item_id"]

    async def get(self, seller_id: int | None, order_item_id: int) -> Sale:
        """One item for its seller (None: an admin); anyone else's is as absent as a missing one."""
        row = await self._db.read(
            lambda c: c.execute(
                f"SELECT {SALE_COLUMNS} {SALE_JOINS} WHERE d.id = ?", (order_item_id,)
            ).fetchone()
        )
        if row is None or (seller_id is not None and row["seller_id"] != seller_id):
            raise NotFound("no such order")
        return self._sale(row)
