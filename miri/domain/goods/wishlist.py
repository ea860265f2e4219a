"""The wishlist ("미리 담기"): goods put aside with a quantity before the sale opens.

One user never sees or touches another's entries: those answer 404, as if they did not exist.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from miri.domain.errors import NotFound, ValidationFailed
from miri.domain.goods import model
from miri.domain.goods.service import GoodsService
from miri.infra.clock import Clock
from miri.infra.sqlite import Database


@dataclass(frozen=True)
class WishlistEntry:
    wish_id: int
    user_id: int
    goods_id: int
    quantity: int

    def to_api(self) -> dict[str, int]:
        return {
            "wishListId": self.wish_id,
            "goodsId": self.goods_id,
            "goodsQuantity": self.quantity,
        }


def _quantity(value: int) -> int:
    try:
        return model.wish_quantity(value)
    except ValueError as exc:
        raise ValidationFailed(data={"goodsQuantity": str(exc)}) from None


class WishlistService:
    def __init__(self, *, db: Database, goods: GoodsService, clock: Clock) -> None:
        self._db = db
        self._goods = goods
        self._clock = clock

    async def add(self, user_id: int, goods_id: int, quantity: int) -> WishlistEntry:
        """Put goods aside; goods already on the list get the quantity added (one row, always)."""
        _quantity(quantity)
        now = self._clock.timestamp()

        def upsert(conn: sqlite3.Connection) -> WishlistEntry:
            if conn.execute("SELECT 1 FROM goods WHERE id = ?", (goods_id,)).fetchone() is None:
                raise NotFound("no such goods")
            # One statement on the single writer: two adds at once cannot make two rows.
            wish_id, total = conn.execute(
                "INSERT INTO wishlist (user_id, goods_id, quantity, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, goods_id) DO UPDATE"
                " SET quantity = wishlist.quantity + excluded.quantity, updated_at = excluded.updated_at"
                " RETURNING id, quantity",
                (user_id, goods_id, quantity, now, now),
            ).fetchone()
            if total > model.MAX_WISH_QUANTITY:
                raise ValidationFailed(
                    data={"goodsQuantity": f"the total would exceed {model.MAX_WISH_QUANTITY}"}
                )
            return WishlistEntry(wish_id, user_id, goods_id, total)

        return await self._db.write(upsert)

    async def change(self, user_id: int, wish_id: int, quantity: int) -> WishlistEntry:
        _quantity(quantity)
        now = self._clock.timestamp()

        def update(conn: sqlite3.Connection) -> WishlistEntry:
            row = conn.execute(
                "UPDATE wishlist SET quantity = ?, updated_at = ? WHERE id = ? AND user_id = ?"
                " RETURNING goods_id",
                (quantity, now, wish_id, user_id),
            ).fetchone()
            if row is None:
                raise NotFound("no such wishlist entry")
            return WishlistEntry(wish_id, user_id, row[0], quantity)

        return await self._db.write(update)

    async def remove(self, user_id: int, wish_id: int) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "DELETE FROM wishlist WHERE id = ? AND user_id = ?", (wish_id, user_id)
            )
            if cur.rowcount != 1:
                raise NotFound("no such wishlist entry")

        await self._db.write(delete)

    async def entries(self, user_id: int, wish_ids: Sequence[int]) -> list[WishlistEntry]:
        """The user's entries with these ids, in the order asked; 404 if any is not theirs."""
        ids = list(dict.fromkeys(wish_ids))
        if not ids:
            return []
        rows = await self._db.read(
            lambda c: c.execute(
                f"SELECT id, goods_id, quantity FROM wishlist WHERE user_id = ?"
                f" AND id IN ({','.join('?' * len(ids))})",
                (user_id, *ids),
            ).fetchall()
        )
        found = {
            r["id"]: WishlistEntry(r["id"], user_id, r["goods_id"], r["quantity"]) for r in rows
        }
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound("no such wishlist entry", {"wishListIds": missing})
        return [found[i] for i in ids]

    async def remove_entries(self, user_id: int, wish_ids: Sequence[int]) -> int:
        """Remove the user's entries with these ids (after they were ordered); how many went."""
        return await self._db.write(lambda c: self.remove_in(c, user_id, wish_ids, strict=False))

    @staticmethod
    def remove_in(
        conn: sqlite3.Connection, user_id: int, wish_ids: Sequence[int], *, strict: bool = True
    ) -> int:
        """The same, inside a caller's transaction (an order takes its entries in its commit);
        ``strict``: every entry must still be there, or NotFound undoes the caller's work."""
        ids = list(dict.fromkeys(wish_ids))
        if not ids:
            return 0
        removed = conn.execute(
            f"DELETE FROM wishlist WHERE user_id = ? AND id IN ({','.join('?' * len(ids))})",
            (user_id, *ids),
        ).rowcount
        if strict and removed != len(ids):
            # Another order took some of these entries first; this one must not go through.
            raise NotFound("no such wishlist entry", {"wishListIds": ids})
        return removed

    async def page(
        self, user_id: int, page: int = 0, size: int = 10
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of the user's entries, newest first, with live stock and whether it is on sale."""

        def read(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], int]:
            total = conn.execute(
                "SELECT COUNT(*) FROM wishlist WHERE user_id = ?", (user_id,)
            ).fetchone()[0]
            rows = conn.execute(
                "SELECT w.id, w.goods_id, w.quantity, g.name, g.price, g.reservation_start"
                " FROM wishlist w JOIN goods g ON g.id = w.goods_id WHERE w.user_id = ?"
                " ORDER BY w.id DESC LIMIT ? OFFSET ?",
                (user_id, size, page * size),
            ).fetchall()
            return rows, total

        rows, total = await self._db.read(read)
        stocks = await self._goods.live_stocks([r["goods_id"] for r in rows], replica=True)
        now = self._clock.timestamp()
        items = [
            {
                "wishListId": r["id"],
                "goodsId": r["goods_id"],
                "goodsName": r["name"],
                "goodsPrice": r["price"],
                "goodsQuantity": r["quantity"],
                "stockQuantity": stocks.get(r["goods_id"], 0),
                "saleOpen": r["reservation_start"] is None or now >= r["reservation_start"],
            }
            for r in rows
        ]
        return items, total
