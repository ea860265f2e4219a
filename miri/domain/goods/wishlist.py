"""The wishlist ("미리 담기"): goods put aside with a quantity before the sale opens.

One user never sees or touches another's entries: those answer 404, as if they did not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from miri.domain.errors import NotFound, ValidationFailed
from miri.domain.goods import model
from miri.domain.goods import wishlist_store as sql
from miri.domain.goods.catalogue import Catalogue
from miri.domain.goods.figures import StockFigures
from miri.infra.clock import Clock
from miri.infra.database import Database


@dataclass(frozen=True)
class WishlistEntry:
    wish_id: int
    user_id: int
    goods_id: int
    quantity: int


@dataclass(frozen=True)
class WishlistRow:
    """An entry as the list shows it: with the goods' name, price, live stock and sale state."""

    entry: WishlistEntry
    goods_name: str
    goods_price: int
    stock: int
    sale_open: bool


def _quantity(value: int) -> int:
    try:
        return model.wish_quantity(value)
    except ValueError as exc:
        raise ValidationFailed(data={"goodsQuantity": str(exc)}) from None


class WishlistService:
    def __init__(
        self, *, db: Database, catalogue: Catalogue, figures: StockFigures, clock: Clock
    ) -> None:
        self._db = db
        self._catalogue = catalogue
        self._figures = figures
        self._clock = clock

    async def add(self, user_id: int, goods_id: int, quantity: int) -> WishlistEntry:
        """Put goods aside; goods already on the list get the quantity added (one row, always)."""
        _quantity(quantity)
        now = self._clock.timestamp()

        def upsert(conn: Any) -> WishlistEntry:
            added = sql.add(conn, user_id, goods_id, quantity, now)
            if added is None:
                raise NotFound("no such goods")
            wish_id, total = added
            if total > model.MAX_WISH_QUANTITY:  # raising rolls the add back
                raise ValidationFailed(
                    data={"goodsQuantity": f"the total would exceed {model.MAX_WISH_QUANTITY}"}
                )
            return WishlistEntry(wish_id, user_id, goods_id, total)

        return await self._db.write(upsert)

    async def change(self, user_id: int, wish_id: int, quantity: int) -> WishlistEntry:
        _quantity(quantity)
        now = self._clock.timestamp()

        def update(conn: Any) -> WishlistEntry:
            goods_id = sql.set_quantity(conn, user_id, wish_id, quantity, now)
            if goods_id is None:
                raise NotFound("no such wishlist entry")
            return WishlistEntry(wish_id, user_id, goods_id, quantity)

        return await self._db.write(update)

    async def remove(self, user_id: int, wish_id: int) -> None:
        def delete(conn: Any) -> None:
            if not sql.delete_one(conn, user_id, wish_id):
                raise NotFound("no such wishlist entry")

        await self._db.write(delete)

    async def entries(self, user_id: int, wish_ids: Sequence[int]) -> list[WishlistEntry]:
        """The user's entries with these ids, in the order asked; 404 if any is not theirs."""
        ids = list(dict.fromkeys(wish_ids))
        if not ids:
            return []
        rows = await self._db.read(lambda c: sql.select_entries(c, user_id, ids))
        found = {
            r["id"]: WishlistEntry(r["id"], user_id, r["goods_id"], r["quantity"]) for r in rows
        }
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound("no such wishlist entry", {"wishListIds": missing})
        return [found[i] for i in ids]

    async def page(
        self, user_id: int, page: int = 0, size: int = 10
    ) -> tuple[list[WishlistRow], int]:
        """A page of the user's entries, newest first, with live stock and whether it is on sale."""
        rows, total = await self._db.read(lambda c: sql.select_page(c, user_id, page, size))
        ids = [r["goods_id"] for r in rows]
        goods = await self._catalogue.get_many(ids)
        stocks = await self._figures.stocks(ids, replica=True)
        now = self._clock.now()
        items = []
        for r in rows:
            g = goods.get(r["goods_id"])
            if g is None:  # goods are never deleted; a row without them is skipped, not shown
                continue
            entry = WishlistEntry(r["id"], user_id, r["goods_id"], r["quantity"])
            items.append(
                WishlistRow(entry, g.name, g.price, stocks.get(g.goods_id, 0), g.sale_open(now))
            )
        return items, total
