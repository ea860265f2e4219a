"""The benchmark's baseline stock strategy (``stock_strategy = "sqlite"``): a plain SQLite
transactional decrement, the naive approach the original shop measured its Redis path against.

It has the interface of ``LiveStock`` so the goods service, the stock check and the write-back run
unchanged; only the figures live in two SQLite tables instead of Redis hashes, and every
reservation is a write job (check stock, check the buyer's count, decrement) in the shop's writer
transaction. That writer is the group-commit one, so this baseline is already kinder than one
transaction per order would be. Redis still carries each goods' rules and version token, because
the goods service reads the version from there to notice edits.

Not meant for production: the tables are created on first use, outside the versioned schema.
Their SQL stays in this file, not in ``store.py``: they are this baseline's own tables (SQLite
only), not the goods table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis

from miri.domain.goods.stock import (
    RELEASE_DONE,
    RELEASE_MISSING,
    Figures,
    LiveStock,
    Reservation,
    goods_key,
    new_version,
)
from miri.infra.database import marks
from miri.infra.sqlite import Database, connect

DDL = """
CREATE TABLE IF NOT EXISTS bench_sqlite_stock (
    goods_id INTEGER PRIMARY KEY,
    stock INTEGER NOT NULL,
    open TEXT NOT NULL,
    lim INTEGER NOT NULL,
    ver TEXT NOT NULL,
    changes INTEGER NOT NULL DEFAULT 0,
    synced INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS bench_sqlite_buyers (
    goods_id INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    held INTEGER NOT NULL,
    PRIMARY KEY (goods_id, user_id)
);
"""


class SqliteStock(LiveStock):
    """``LiveStock`` with SQLite as the store of stock and buyer counts."""

    def __init__(self, primary: aioredis.Redis, db: Database) -> None:
        super().__init__(primary)
        self._db = db
        conn = connect(db.path)
        try:
            conn.executescript(DDL)
        finally:
            conn.close()

    async def reserve(
        self, user_id: int, items: Sequence[tuple[int, int]], now: float
    ) -> Reservation:
        user = str(user_id)

        def job(conn: sqlite3.Connection) -> Reservation:
            versions = []
            for i, (goods_id, qty) in enumerate(items):
                row = conn.execute(
                    "SELECT stock, open, lim, ver FROM bench_sqlite_stock WHERE goods_id = ?",
                    (goods_id,),
                ).fetchone()
                if row is None:
                    return Reservation("MISSING", i, [])
                if row[1] and now < float(row[1]):
                    return Reservation("SALE_NOT_OPEN", i, [])
                if row[2] > 0:
                    held = conn.execute(
                        "SELECT held FROM bench_sqlite_buyers WHERE goods_id = ? AND user_id = ?",
                        (goods_id, user),
                    ).fetchone()
                    if (held[0] if held else 0) + qty > row[2]:
                        return Reservation("LIMIT_EXCEEDED", i, [])
                if row[0] < qty:
                    return Reservation("SOLD_OUT", i, [])
                versions.append(row[3])
            for goods_id, qty in items:
                conn.execute(
                    "UPDATE bench_sqlite_stock SET stock = stock - ?, changes = changes + 1"
                    " WHERE goods_id = ?",
                    (qty, goods_id),
                )
                conn.execute(
                    "INSERT INTO bench_sqlite_buyers (goods_id, user_id, held) VALUES (?, ?, ?)"
                    " ON CONFLICT (goods_id, user_id) DO UPDATE SET held = held + excluded.held",
                    (goods_id, user, qty),
                )
            return Reservation("OK", 0, versions)

        return await self._db.write(job)

    async def release(
        self,
        user_id: int,
        goods_id: int,
        qty: int,
        token: str | None = None,
        epoch: int | None = None,
    ) -> int:
        user = str(user_id)

        def job(conn: sqlite3.Connection) -> int:
            found = conn.execute(
                "UPDATE bench_sqlite_stock SET stock = stock + ?, changes = changes + 1"
                " WHERE goods_id = ?",
                (qty, goods_id),
            ).rowcount
            if not found:
                return RELEASE_MISSING
            conn.execute(
                "UPDATE bench_sqlite_buyers SET held = held - ? WHERE goods_id = ? AND user_id = ?",
                (qty, goods_id, user),
            )
            conn.execute(
                "DELETE FROM bench_sqlite_buyers WHERE goods_id = ? AND user_id = ? AND held <= 0",
                (goods_id, user),
            )
            return RELEASE_DONE

        return await self._db.write(job)

    async def restock(self, goods_id: int, qty: int) -> int | None:
        row = await self._db.write(
            lambda c: c.execute(
                "UPDATE bench_sqlite_stock SET stock = stock + ?, changes = changes + 1"
                " WHERE goods_id = ? RETURNING stock",
                (qty, goods_id),
            ).fetchone()
        )
        return None if row is None else int(row[0])

    async def set_rules(self, goods_id: int, open_at: str, limit: int) -> bool:
        ver = new_version()
        found = await self._db.write(
            lambda c: (
                c.execute(
                    "UPDATE bench_sqlite_stock SET open = ?, lim = ?, ver = ? WHERE goods_id = ?",
                    (open_at, limit, ver, goods_id),
                ).rowcount
            )
        )
        if found:
            await self.primary.hset(
                goods_key(goods_id), mapping={"open": open_at, "limit": limit, "ver": ver}
            )
        return bool(found)

    async def load(self, figures: Figures, *, force: bool) -> bool:
        f = figures
        ver = new_version()

        def job(conn: sqlite3.Connection) -> bool:
            exists = conn.execute(
                "SELECT 1 FROM bench_sqlite_stock WHERE goods_id = ?", (f.goods_id,)
            ).fetchone()
            if exists and not force:
                return False
            conn.execute(
                "INSERT INTO bench_sqlite_stock (goods_id, stock, open, lim, ver, changes)"
                " VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (goods_id) DO UPDATE SET"
                " stock = excluded.stock, open = excluded.open, lim = excluded.lim,"
                " ver = excluded.ver, changes = changes + 1",
                (f.goods_id, f.available, f.open, f.limit, ver),
            )
            conn.execute("DELETE FROM bench_sqlite_buyers WHERE goods_id = ?", (f.goods_id,))
            conn.executemany(
                "INSERT INTO bench_sqlite_buyers (goods_id, user_id, held) VALUES (?, ?, ?)",
                [(f.goods_id, user, count) for user, count in f.buyers.items()],
            )
            return True

        if not await self._db.write(job):
            return False
        # The goods service reads the version token from Redis to notice edits: keep it equal.
        await self.primary.hset(
            goods_key(f.goods_id), mapping={"open": f.open, "limit": f.limit, "ver": ver}
        )
        return True

    async def version(self, goods_id: int) -> str | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT ver FROM bench_sqlite_stock WHERE goods_id = ?", (goods_id,)
            ).fetchone()
        )
        return None if row is None else str(row[0])

    async def stocks(self, ids: Iterable[int], *, replica: bool = False) -> dict[int, int | None]:
        ids = list(ids)
        if not ids:
            return {}
        in_ids = marks(len(ids))
        rows = await self._db.read(
            lambda c: c.execute(
                f"SELECT goods_id, stock FROM bench_sqlite_stock WHERE goods_id IN ({in_ids})", ids
            ).fetchall()
        )
        found = {int(r[0]): int(r[1]) for r in rows}
        return {gid: found.get(gid) for gid in ids}

    async def state(self, ids: Sequence[int]) -> dict[int, tuple[list[str | None], dict[str, str]]]:
        def read(conn: sqlite3.Connection) -> dict[int, tuple[list[str | None], dict[str, str]]]:
            out: dict[int, tuple[list[str | None], dict[str, str]]] = {}
            for gid in ids:
                row = conn.execute(
                    "SELECT stock, open, lim FROM bench_sqlite_stock WHERE goods_id = ?", (gid,)
                ).fetchone()
                buyers = conn.execute(
                    "SELECT user_id, held FROM bench_sqlite_buyers WHERE goods_id = ?", (gid,)
                ).fetchall()
                fields: list[str | None] = (
                    [None, None, None] if row is None else [str(row[0]), row[1], str(row[2])]
                )
                out[gid] = (fields, {str(u): str(h) for u, h in buyers})
            return out

        return await self._db.read(read)

    async def forget(self, goods_id: int) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM bench_sqlite_stock WHERE goods_id = ?", (goods_id,))
            conn.execute("DELETE FROM bench_sqlite_buyers WHERE goods_id = ?", (goods_id,))

        await self._db.write(job)
        await super().forget(goods_id)

    async def dirty_snapshot(self) -> list[tuple[int, str, int]]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT goods_id, changes, stock FROM bench_sqlite_stock WHERE changes != synced"
            ).fetchall()
        )
        return [(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def clean(self, marks: Sequence[tuple[int, str]]) -> int:
        if not marks:
            return 0

        def job(conn: sqlite3.Connection) -> int:
            n = 0
            for goods_id, counter in marks:
                n += conn.execute(
                    "UPDATE bench_sqlite_stock SET synced = changes"
                    " WHERE goods_id = ? AND changes = ?",
                    (goods_id, int(counter)),
                ).rowcount
            return n

        return await self._db.write(job)

    async def dirty_count(self) -> int:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT COUNT(*) FROM bench_sqlite_stock WHERE changes != synced"
            ).fetchone()
        )
        return int(row[0])
