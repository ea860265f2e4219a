"""The goods table's SQL, all of it: the catalogue's rows, the stock truth, the write-back.

Written once against the ``Database`` interface: the statements run as they are on SQLite and,
through the qmark translation of ``miri.infra.postgres``, on PostgreSQL. The truth reads the
``active_order_items`` view that orders publishes for exactly this use; no other module's table is
read here. (The benchmark's baseline, ``sqlite_stock.py``, keeps its own two tables.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from miri.domain.errors import Forbidden, NotFound, Unavailable, ValidationFailed
from miri.domain.goods import model
from miri.domain.goods.model import Goods
from miri.domain.goods.stock import Figures
from miri.infra.clock import from_ts
from miri.infra.database import Database, marks, share_lock

CHUNK = 500  # ids per IN (...): under SQLite's bound-parameter limit


@dataclass(frozen=True)
class NewGoods:
    """A row to insert: the fields a seller gives, validated by the catalogue."""

    seller_id: int
    name: str
    description: str
    price: int
    category: str
    reservation_start: float | None
    per_buyer_limit: int | None
    stock: int


@dataclass(frozen=True)
class Filters:
    """What a listing narrows to; None: not narrowed."""

    category: str | None = None
    q: str | None = None  # part of the name
    seller_id: int | None = None


def _goods(row: Any) -> Goods:
    return Goods(
        goods_id=row["id"],
        seller_id=row["seller_id"],
        name=row["name"],
        description=row["description"],
        price=row["price"],
        category=row["category"],
        reservation_start=from_ts(row["reservation_start"]),
        per_buyer_limit=row["per_buyer_limit"],
        stock_total=row["stock_total"],
    )


def _where(filters: Filters) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if filters.category:
        where.append("category = ?")
        args.append(filters.category)
    if filters.q:
        escaped = filters.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("name LIKE ? ESCAPE '\\'")
        args.append(f"%{escaped}%")
    if filters.seller_id is not None:
        where.append("seller_id = ?")
        args.append(filters.seller_id)
    return (f" WHERE {' AND '.join(where)}" if where else ""), args


class GoodsStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- the catalogue ------------------------------------------------------------------------
    async def insert(self, new: NewGoods, now: float) -> int:
        row = (new.seller_id, new.name, new.description, new.price, new.category)
        row += (new.reservation_start, new.per_buyer_limit, new.stock, new.stock, now, now)
        return await self._db.write(
            lambda c: int(
                c.execute(
                    "INSERT INTO goods (seller_id, name, description, price, category,"
                    " reservation_start, per_buyer_limit, stock_total, stock_synced, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                ).lastrowid
            )
        )

    async def get_many(self, ids: Sequence[int]) -> dict[int, Goods]:
        def read(conn: Any) -> dict[int, Goods]:
            found: dict[int, Goods] = {}
            for start in range(0, len(ids), CHUNK):
                chunk = list(ids[start : start + CHUNK])
                rows = conn.execute(
                    f"SELECT * FROM goods WHERE id IN ({marks(len(chunk))})", chunk
                ).fetchall()
                found.update((row["id"], _goods(row)) for row in rows)
            return found

        return await self._db.read(read)

    async def edit(self, actor_id: int, goods_id: int, values: Mapping[str, Any]) -> None:
        """Set ``values`` (column -> value) on goods the actor sells; 404 / 403 otherwise."""
        sets = ", ".join(f"{column} = ?" for column in values)

        def write(conn: Any) -> None:
            row = conn.execute("SELECT seller_id FROM goods WHERE id = ?", (goods_id,)).fetchone()
            if row is None:
                raise NotFound("no such goods")
            if row["seller_id"] != actor_id:
                raise Forbidden("only the seller may edit these goods")
            conn.execute(f"UPDATE goods SET {sets} WHERE id = ?", (*values.values(), goods_id))

        await self._db.write(write)

    async def add_stock(
        self, actor_id: int, is_admin: bool, goods_id: int, quantity: int, now: float
    ) -> None:
        def write(conn: Any) -> None:
            row = conn.execute(
                "SELECT seller_id, stock_total FROM goods WHERE id = ?", (goods_id,)
            ).fetchone()
            if row is None:
                raise NotFound("no such goods")
            if row["seller_id"] != actor_id and not is_admin:
                raise Forbidden("only the seller or an administrator may restock")
            if row["stock_total"] + quantity > model.MAX_STOCK:
                raise ValidationFailed(
                    data={"quantity": f"total stock would exceed {model.MAX_STOCK}"}
                )
            conn.execute(
                "UPDATE goods SET stock_total = stock_total + ?, updated_at = ? WHERE id = ?",
                (quantity, now, goods_id),
            )

        await self._db.write(write)

    async def page(self, page: int, size: int, filters: Filters) -> tuple[list[Goods], int]:
        """A page of goods, newest first, and how many match in all."""
        clause, args = _where(filters)

        def read(conn: Any) -> tuple[list[Goods], int]:
            total = conn.execute(f"SELECT COUNT(*) FROM goods{clause}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT * FROM goods{clause} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*args, size, page * size),
            ).fetchall()
            return [_goods(r) for r in rows], total

        return await self._db.read(read)

    @staticmethod
    def exists_in(conn: Any, goods_id: int) -> bool:
        """Inside a caller's transaction (the wishlist checks the goods it puts aside)."""
        return conn.execute("SELECT 1 FROM goods WHERE id = ?", (goods_id,)).fetchone() is not None

    # -- stock truth and write-back -----------------------------------------------------------
    async def truth(self, ids: Sequence[int] | None = None) -> dict[int, Figures]:
        """What Redis should hold, per goods (all goods when ``ids`` is None).

        available = stock_total - the quantity of every active order item, and each buyer holds
        the sum of their active items.
        """
        if ids is not None and not ids:
            return {}
        return await self._db.read(lambda c: _figures(c, ids))

    async def epoch(self) -> int:
        return await self._db.read(lambda c: read_epoch(c, lock=False))

    async def new_epoch(self) -> tuple[int, dict[int, Figures]]:
        """Bump the stock epoch and read the truth of every goods, in one transaction."""
        return await self._db.write(lambda c: (_bump_epoch(c), _figures(c, None, own=False)))

    async def write_synced(self, snapshot: Sequence[tuple[int, str, int]], now: float) -> int:
        """Live stock per goods into ``goods.stock_synced``; how many rows were written."""
        rows = [(stock, now, gid) for gid, _, stock in snapshot]
        return await self._db.write(
            lambda c: (
                c.executemany(
                    "UPDATE goods SET stock_synced = ?, synced_at = ? WHERE id = ?", rows
                ).rowcount
            )
        )


# -- the stock epoch: which rebuild of live stock an order or a release belongs to -------------
class StockEpochChanged(Unavailable):
    """Live stock was rebuilt after these units were reserved: the rebuild already gave them
    back, so the order must not be stored (and nothing is released)."""


def read_epoch(conn: Any, *, lock: bool = True) -> int:
    """The stock epoch, read in the caller's transaction and kept as read until it ends.

    An order and a release read it where they commit: a rebuild (which bumps it, then reads the
    truth, in one transaction) either sees their rows or makes them see its new epoch.
    """
    row = conn.execute(
        "SELECT value FROM shop_meta WHERE name = 'stock_epoch'"
        + (share_lock(conn) if lock else "")
    ).fetchone()
    return 0 if row is None else int(row["value"])


def check_epoch(conn: Any, reserved_in: int | None) -> None:
    """Refuse to store an order whose units were reserved before the last rebuild."""
    if reserved_in is not None and read_epoch(conn) != reserved_in:
        raise StockEpochChanged("live stock was just rebuilt; nothing was ordered, try again")


def _bump_epoch(conn: Any) -> int:
    conn.execute(
        "INSERT INTO shop_meta (name, value) VALUES ('stock_epoch', '0')"
        " ON CONFLICT (name) DO NOTHING"
    )
    current = read_epoch(conn)
    conn.execute("UPDATE shop_meta SET value = ? WHERE name = 'stock_epoch'", (str(current + 1),))
    return current + 1


def _figures(conn: Any, ids: Sequence[int] | None, *, own: bool = True) -> dict[int, Figures]:
    """``own``: a read transaction of its own; else the caller's (a write) holds both reads."""
    in_ids = marks(len(ids)) if ids is not None else ""
    args = tuple(ids) if ids is not None else ()
    only_goods = f" WHERE id IN ({in_ids})" if ids is not None else ""
    only_items = f" WHERE goods_id IN ({in_ids})" if ids is not None else ""
    # One read transaction, so the goods rows and the order items are one snapshot.
    if own:
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
        if own:
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
