"""The catalogue and the order path's stock calls: register, edit, restock, list, reserve, release.

The hot path (``reserve``) costs one Redis round trip: goods metadata is cached in-process, and
the Lua answer carries each goods' version token, so an edit made by any worker process is
noticed by every other one without asking Redis again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, tzinfo
from typing import Any

import psutil
from redis.exceptions import RedisError

from miri.domain.errors import (
    Forbidden,
    LimitExceeded,
    NotFound,
    SaleNotOpen,
    ShopError,
    SoldOut,
    Unavailable,
    ValidationFailed,
)
from miri.domain.goods import check, model
from miri.domain.goods.model import Goods
from miri.domain.goods.stock import REBUILD_LOCK, LiveStock, SingleFlight
from miri.infra import keys
from miri.infra.clock import Clock, from_ts
from miri.infra.sqlite import Database

log = logging.getLogger(__name__)
SellerName = Callable[[int], Awaitable[str | None]]
EDITABLE = ("name", "description", "price", "category", "reservation_start", "per_buyer_limit")
CACHE_MAX = 100_000
SERVING = keys.GOODS_SERVING
SERVING_TTL = 30
RELEASE_RETRY_FOR = 3000  # seconds; under the hour a release token is kept in Redis
SOLD_OUT_MARK = 0.5  # seconds a sold-out answer is given without asking Redis
_REFUSALS: dict[str, type[ShopError]] = {
    "SOLD_OUT": SoldOut,
    "SALE_NOT_OPEN": SaleNotOpen,
    "LIMIT_EXCEEDED": LimitExceeded,
}


def _goods(row: sqlite3.Row) -> Goods:
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


def _select(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, Goods]:
    found: dict[int, Goods] = {}
    for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
        chunk = ids[start : start + 500]
        rows = conn.execute(
            f"SELECT * FROM goods WHERE id IN ({','.join('?' * len(chunk))})", chunk
        ).fetchall()
        found.update((row["id"], _goods(row)) for row in rows)
    return found


def _check(errors: dict[str, str], name: str, rule: Callable[..., Any], *args: Any) -> Any:
    try:
        return rule(*args)
    except ValueError as exc:
        errors[name] = str(exc)
        return None


def _serving_elsewhere(key: str) -> bool:
    """Whether a serving mark may belong to a live process.

    A server killed with SIGKILL leaves its mark until the mark expires; on this host its
    process id tells that it is gone, so a restart right after a crash still repairs everything.
    """
    host, _, rest = key[len(SERVING) :].partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        return psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class GoodsService:
    def __init__(
        self,
        *,
        db: Database,
        live: LiveStock,
        clock: Clock,
        zone: tzinfo,
        seller_name: SellerName | None = None,
        on_fast_sold_out: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        # Goods seen at stock 0, until when (monotonic): the futile requests after a sell-out
        # are answered here without a Redis round trip. Short-lived, because stock another
        # process gives back is only seen through Redis; cleared at once on a local release.
        self._sold_out: dict[int, float] = {}
        self._on_fast_sold_out = on_fast_sold_out
        self.live = live
        self._clock = clock
        self.zone = zone
        self._seller_name = seller_name
        self._cache: dict[int, tuple[Goods, str | None]] = {}
        self._fetches = SingleFlight()
        self._restores = SingleFlight()
        self._serving_key: str | None = None
        self._retries: set[asyncio.Task] = set()  # releases waiting for Redis to answer

    # -- catalogue ----------------------------------------------------------------------------
    def _aware(self, when: datetime | None) -> datetime | None:
        if when is not None and when.tzinfo is None:
            return when.replace(tzinfo=self.zone)
        return when

    def _future(self, errors: dict[str, str], when: datetime | None) -> datetime | None:
        when = self._aware(when)
        if when is not None and when <= self._clock.now():
            errors["reservationStartTime"] = "reservationStartTime must be in the future"
        return when

    async def register(
        self,
        seller_id: int,
        *,
        name: str,
        description: str,
        price: int,
        stock: int,
        category: str,
        reservation_start: datetime | None = None,
        per_buyer_limit: int | None = None,
    ) -> Goods:
        """New goods; the caller becomes the seller."""
        errors: dict[str, str] = {}
        name = _check(errors, "goodsName", model.goods_name, name)
        description = _check(errors, "goodsDescription", model.description, description)
        _check(errors, "goodsPrice", model.price, price)
        _check(errors, "stockQuantity", model.stock_quantity, stock)
        _check(errors, "category", model.category, category)
        _check(errors, "perBuyerLimit", model.per_buyer_limit, per_buyer_limit)
        start = self._future(errors, reservation_start)
        if errors:
            raise ValidationFailed(data=errors)
        now = self._clock.timestamp()
        row = (seller_id, name, description, price, category)
        row += (start.timestamp() if start else None, per_buyer_limit, stock, stock, now, now)

        def insert(conn: sqlite3.Connection) -> int:
            if conn.execute("SELECT 1 FROM users WHERE id = ?", (seller_id,)).fetchone() is None:
                raise NotFound("no such seller")
            cur = conn.execute(
                "INSERT INTO goods (seller_id, name, description, price, category,"
                " reservation_start, per_buyer_limit, stock_total, stock_synced, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return int(cur.lastrowid)

        goods_id = await self._db.write(insert)
        await self._restore([goods_id])
        return await self.get(goods_id)

    async def update(self, actor_id: int, goods_id: int, changes: Mapping[str, Any]) -> Goods:
        """Edit goods; only their seller may (403 otherwise). Keys are those of ``EDITABLE``."""
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise ValueError(f"not editable: {sorted(unknown)}")
        errors: dict[str, str] = {}
        values = dict(changes)
        if not values:
            raise ValidationFailed("give at least one field to change", {"body": "no fields"})
        rules = {
            "name": ("goodsName", model.goods_name),
            "description": ("goodsDescription", lambda v: model.description(v, 10)),
            "price": ("goodsPrice", model.price),
            "category": ("category", model.category),
            "per_buyer_limit": ("perBuyerLimit", model.per_buyer_limit),
        }
        for key, (field, rule) in rules.items():
            if key in values:
                if values[key] is None and key != "per_buyer_limit":
                    errors[field] = f"{field} cannot be null"
                else:
                    values[key] = _check(errors, field, rule, values[key])
        if "reservation_start" in values:
            start = self._future(errors, values["reservation_start"])
            values["reservation_start"] = start.timestamp() if start else None
        if errors:
            raise ValidationFailed(data=errors)
        values["updated_at"] = self._clock.timestamp()
        sets = ", ".join(f"{key} = ?" for key in values)

        def write(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT seller_id FROM goods WHERE id = ?", (goods_id,)).fetchone()
            if row is None:
                raise NotFound("no such goods")
            if row["seller_id"] != actor_id:
                raise Forbidden("only the seller may edit these goods")
            conn.execute(f"UPDATE goods SET {sets} WHERE id = ?", (*values.values(), goods_id))

        await self._db.write(write)
        self._cache.pop(goods_id, None)
        goods = await self.get(goods_id)
        # A new version token in Redis tells every worker's cache, not only this one's.
        open_at = repr(goods.reservation_start.timestamp()) if goods.reservation_start else ""
        if not await self.live.set_rules(goods_id, open_at, goods.per_buyer_limit or 0):
            await self._restore([goods_id])
        return goods

    async def restock(self, actor_id: int, is_admin: bool, goods_id: int, quantity: int) -> int:
        """Add stock (seller or admin); returns the live stock after it."""
        errors: dict[str, str] = {}
        _check(errors, "quantity", model.restock_quantity, quantity)
        if errors:
            raise ValidationFailed(data=errors)
        now = self._clock.timestamp()

        def write(conn: sqlite3.Connection) -> None:
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

        # SQLite first: if Redis then fails, Redis shows too little (the check repairs it),
        # never more than exists.
        await self._db.write(write)
        self._sold_out.pop(goods_id, None)
        self._cache.pop(goods_id, None)
        stock = await self.live.restock(goods_id, quantity)
        if stock is None:  # Redis lost these goods: the rebuild already counts the restock
            return await self.live_stock(goods_id)
        return stock

    async def get(self, goods_id: int) -> Goods:
        found = await self.get_many([goods_id])
        if goods_id not in found:
            raise NotFound("no such goods")
        return found[goods_id]

    async def get_many(self, ids: Iterable[int]) -> dict[int, Goods]:
        """Goods by id, read from SQLite; ids that do not exist are left out."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        return await self._db.read(lambda c: _select(c, wanted))

    async def listing(
        self,
        page: int,
        size: int,
        *,
        category: str | None = None,
        q: str | None = None,
        seller_id: int | None = None,
    ) -> tuple[list[tuple[Goods, int]], int]:
        """A page of goods, newest first, each with its live stock (read from the replica)."""
        where, args = [], []
        if category:
            where.append("category = ?")
            args.append(category)
        if q:
            escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("name LIKE ? ESCAPE '\\'")
            args.append(f"%{escaped}%")
        if seller_id is not None:
            where.append("seller_id = ?")
            args.append(seller_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""

        def read(conn: sqlite3.Connection) -> tuple[list[Goods], int]:
            total = conn.execute(f"SELECT COUNT(*) FROM goods{clause}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT * FROM goods{clause} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*args, size, page * size),
            ).fetchall()
            return [_goods(r) for r in rows], total

        goods, total = await self._db.read(read)
        stocks = await self.live_stocks([g.goods_id for g in goods], replica=True)
        return [(g, stocks.get(g.goods_id, 0)) for g in goods], total

    async def detail(self, goods_id: int) -> dict[str, Any]:
        """The goods page of API.md: seller name, live stock and whether the sale is open."""
        goods = await self.get(goods_id)
        stock = (await self.live_stocks([goods_id], replica=True)).get(goods_id, 0)
        seller = None
        if self._seller_name is not None:
            try:
                seller = await self._seller_name(goods.seller_id)
            except NotFound:
                seller = None
        return goods.detail(stock, self.zone, self._clock.now(), seller)

    async def page(
        self, page: int = 0, size: int = 10, **filters: Any
    ) -> tuple[list[dict[str, Any]], int]:
        """A listing page as API rows."""
        rows, total = await self.listing(page, size, **filters)
        return [g.summary(stock, self.zone) for g, stock in rows], total

    # -- the order path -----------------------------------------------------------------------
    async def reserve(self, user_id: int, goods_id: int, quantity: int) -> Goods:
        """Take ``quantity`` out of live stock for ``user_id``, or raise why not."""
        return (await self.reserve_many(user_id, [(goods_id, quantity)]))[goods_id]

    async def reserve_many(
        self, user_id: int, items: Sequence[tuple[int, int]]
    ) -> dict[int, Goods]:
        """All items in one Lua call: every one is reserved, or none is."""
        wanted: dict[int, int] = {}
        for goods_id, quantity in items:
            if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
                raise ValidationFailed(data={"quantity": "quantity must be a positive integer"})
            wanted[goods_id] = wanted.get(goods_id, 0) + quantity
        if not wanted:
            raise ValidationFailed(data={"items": "nothing to reserve"})
        known = await self._known(list(wanted))
        self._refuse_if_marked(known, wanted)
        pairs = list(wanted.items())
        now = self._clock.timestamp()
        for _ in range(3):
            answer = await self.live.reserve(user_id, pairs, now)
            if answer.status != "MISSING":
                break
            await self._restore([pairs[answer.index][0]])
        else:
            raise Unavailable("the stock store keeps losing data; nothing was reserved")
        if answer.status != "OK":
            goods = known[pairs[answer.index][0]][0]
            if answer.left == 0:
                self._sold_out[goods.goods_id] = time.monotonic() + SOLD_OUT_MARK
            error = _REFUSALS[answer.status]
            raise error(f"{error.message}: {goods.name}", {"goodsId": goods.goods_id})
        stale = [
            gid
            for (gid, _), ver in zip(pairs, answer.versions, strict=True)
            if known[gid][1] != ver
        ]
        for gid in stale:
            # Edited by some worker since this one cached them. Edits write SQLite before
            # Redis, so a fresh read is at least as new as the version Redis answered with.
            self._cache.pop(gid, None)
            known[gid] = await self._fetches.run(gid, lambda gid=gid: self._fetch(gid))
        return {gid: known[gid][0] for gid in wanted}

    def _refuse_if_marked(
        self, known: dict[int, tuple[Goods, str | None]], wanted: dict[int, int]
    ) -> None:
        if not self._sold_out:
            return
        now = time.monotonic()
        for goods_id in wanted:
            until = self._sold_out.get(goods_id)
            if until is None:
                continue
            if until < now:
                del self._sold_out[goods_id]
                continue
            if self._on_fast_sold_out:
                self._on_fast_sold_out()
            goods = known[goods_id][0]
            raise SoldOut(f"{SoldOut.message}: {goods.name}", {"goodsId": goods_id})

    async def release(self, user_id: int, goods_id: int, quantity: int) -> None:
        """Give stock and the buyer's count back (cancel, abort, expiry, return).

        Callers guarantee once-only with their own SQLite flag, committed before this call; if
        Redis lost these goods, the next access rebuilds them from that committed truth.

        If Redis does not answer, the caller's commit still stands (SQLite is the truth), so
        this does not fail it: the release is sent again in the background until Redis is
        back, under a token that makes a repeat of a release that did land a no-op.
        """
        if quantity < 1:
            raise ValidationFailed(data={"quantity": "quantity must be a positive integer"})
        self._sold_out.pop(goods_id, None)
        token = uuid.uuid4().hex
        try:
            found = await self.live.release(user_id, goods_id, quantity, token)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("release for goods %s: Redis unavailable (%r); retrying", goods_id, exc)
            task = asyncio.get_running_loop().create_task(
                self._release_later(user_id, goods_id, quantity, token)
            )
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
            return
        if not found:
            log.info("release for goods %s: not in Redis; it is rebuilt from SQLite", goods_id)

    async def _release_later(self, user_id: int, goods_id: int, quantity: int, token: str) -> None:
        delay, deadline = 0.05, time.monotonic() + RELEASE_RETRY_FOR
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                await self.live.release(user_id, goods_id, quantity, token)
            except (RedisError, OSError, TimeoutError):
                continue
            self._sold_out.pop(goods_id, None)
            log.info("release for goods %s: done now that Redis answers", goods_id)
            return
        log.error(
            "release of %d for goods %s: Redis did not come back; `miri doctor --repair`"
            " (or the next start-up check) restores it from SQLite",
            quantity,
            goods_id,
        )

    async def close(self) -> None:
        """Stop retrying releases; the next start-up check restores what they would have."""
        if self._retries:
            log.warning("%d stock releases still wait for Redis at shutdown", len(self._retries))
        for task in list(self._retries):
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)

    async def live_stock(self, goods_id: int) -> int:
        stocks = await self.live_stocks([goods_id])
        if goods_id not in stocks:
            raise NotFound("no such goods")
        return stocks[goods_id]

    async def live_stocks(self, ids: Iterable[int], *, replica: bool = False) -> dict[int, int]:
        """Live stock per goods; goods that do not exist are left out."""
        ids = list(dict.fromkeys(ids))
        stocks = await self.live.stocks(ids, replica=replica)
        lost = [gid for gid, stock in stocks.items() if stock is None]
        if lost and replica:  # new goods may not have reached the replica yet
            stocks.update(await self.live.stocks(lost))
            lost = [gid for gid in lost if stocks[gid] is None]
        if lost:
            await self._restore(lost, missing_ok=True)
            stocks.update(await self.live.stocks(lost))
        return {gid: stock for gid, stock in stocks.items() if stock is not None}

    async def _known(self, ids: list[int]) -> dict[int, tuple[Goods, str | None]]:
        known = {gid: self._cache[gid] for gid in ids if gid in self._cache}
        for gid in ids:
            if gid not in known:
                known[gid] = await self._fetches.run(gid, lambda gid=gid: self._fetch(gid))
        return known

    async def _fetch(self, goods_id: int) -> tuple[Goods, str | None]:
        # The version is read before the row: a row newer than its version only costs a
        # reload later, never a stale price.
        ver = await self.live.version(goods_id)
        rows = await self.get_many([goods_id])
        if goods_id not in rows:
            raise NotFound("no such goods", {"goodsId": goods_id})
        self._remember(goods_id, rows[goods_id], ver)
        return rows[goods_id], ver

    def _remember(self, goods_id: int, goods: Goods, ver: str | None) -> None:
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[goods_id] = (goods, ver)

    async def _restore(self, ids: list[int], *, missing_ok: bool = False) -> None:
        """Rebuild goods that Redis does not have from SQLite (first writer wins)."""
        for gid in ids:
            found = await self._restores.run(gid, lambda gid=gid: self._restore_one(gid))
            if not found and not missing_ok:
                raise NotFound("no such goods", {"goodsId": gid})

    async def _restore_one(self, goods_id: int) -> bool:
        figures = (await check.truth(self._db, [goods_id])).get(goods_id)
        if figures is None:
            return False
        if figures.available < 0:
            log.error("goods %s: SQLite counts more sold than stocked", goods_id)
            figures = check.Figures(goods_id, 0, figures.buyers, figures.open, figures.limit)
        await self.live.load(figures, force=False)
        return True

    # -- stock truth and write-back -----------------------------------------------------------
    async def check_stock(self, repair: bool = False) -> check.StockReport:
        """Compare live stock with SQLite's truth; ``repair`` rewrites Redis where it differs.

        A repair while other processes take orders may hand back stock that an order not yet
        committed holds; the server's start-up check avoids that (``startup_check``).
        """
        return await check.check_stock(self._db, self.live, repair=repair)

    async def startup_check(self) -> check.StockReport:
        """Before serving: rebuild Redis from SQLite.

        Everything is rewritten when no other process is serving (nobody can hold a reservation
        whose order is not committed yet); otherwise only goods Redis lost are restored and
        other differences are reported. Start-ups are serialised by a lock in Redis.
        """
        redis = self.live.primary
        token = uuid.uuid4().hex
        while not await redis.set(REBUILD_LOCK, token, nx=True, ex=60):
            await asyncio.sleep(0.05)
        try:
            others = [key async for key in redis.scan_iter(match=f"{SERVING}*", count=1000)]
            others = [key for key in others if _serving_elsewhere(key)]
            report = await check.check_stock(
                self._db, self.live, repair=True, only_missing=bool(others)
            )
            self._serving_key = f"{SERVING}{socket.gethostname()}:{os.getpid()}:{token}"
            await redis.set(self._serving_key, "1", ex=SERVING_TTL)
        finally:
            if await redis.get(REBUILD_LOCK) == token:
                await redis.delete(REBUILD_LOCK)
        self._cache.clear()
        return report

    async def sync_stock(self) -> int:
        """Write live stock of changed goods back to ``goods.stock_synced``; how many were."""
        return await check.sync_stock(self._db, self.live, self._clock.timestamp())

    async def run_background(self, interval: float) -> None:
        """The server's periodic write-back, and the heartbeat that says it is serving."""
        beat = min(interval, SERVING_TTL / 3)
        due = 0.0
        while True:
            await asyncio.sleep(beat)
            due += beat
            try:
                if self._serving_key:
                    await self.live.primary.set(self._serving_key, "1", ex=SERVING_TTL)
                if due >= interval:
                    due = 0.0
                    await self.sync_stock()
            except Exception:  # noqa: BLE001 - the next tick tries again; nothing was cleared
                log.exception("stock write-back failed")

    async def stop_background(self) -> None:
        """Last write-back on shutdown, and stop saying this process serves."""
        try:
            await self.sync_stock()
            if self._serving_key:
                await self.live.primary.delete(self._serving_key)
        except Exception:  # noqa: BLE001 - best effort at shutdown
            log.exception("final stock write-back failed")
