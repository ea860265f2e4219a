"""Orders: the hot path, cancel and return, payment outcomes, expiry.

Every path that gives stock back (cancel, payment abort, expiry, return) first flips the item's
``stock_released`` flag from 0 to 1 in a guarded UPDATE; only the transaction that flipped it
releases the stock in Redis, so a race between two of them releases exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from miri.domain import errors
from miri.domain.errors import (
    IdempotencyConflict,
    InvalidState,
    NotFound,
    ShopError,
)
from miri.domain.events import OrderItemCanceled, OrderPlaced, PaymentAborted, PaymentCompleted
from miri.infra import keys
from miri.infra.clock import Clock
from miri.infra.crypto import FieldCipher
from miri.infra.metrics import ShopMetrics
from miri.infra.sqlite import Database

log = logging.getLogger(__name__)
CONSUMER = "orders"
IDEMPOTENCY_WINDOW = 24 * 3600
RETURN_WINDOW = 24 * 3600
IN_FLIGHT_LOCK = 30  # seconds a request may hold its Idempotency-Key
IN_FLIGHT_WAIT = 10.0  # seconds a concurrent request with that key waits for the answer
DAY = 24 * 3600
# Refusals worth replaying for a retried Idempotency-Key: the first answer stands.
_REPLAYABLE = {
    e.code: e for e in (errors.SoldOut, errors.SaleNotOpen, errors.LimitExceeded, NotFound)
}

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
class Idempotency:
    key: str
    request_hash: str


@dataclass(frozen=True)
class _Placing:
    """One order being placed: who, what, where to, and its Idempotency-Key if any."""

    user_id: int
    items: list[tuple[int, int]]
    address: str
    idempotency: Idempotency | None
    wishlist_ids: list[int] | None = None


class _KeyTaken(Exception):
    """Another request with the same Idempotency-Key committed first."""


@dataclass(frozen=True)
class _Released:
    goods_id: int
    user_id: int
    quantity: int


def _owned_item(conn: sqlite3.Connection, user_id: int | None, detail_id: int) -> sqlite3.Row:
    """An item with its shipping; another user's item is as absent as a missing one."""
    row = conn.execute(
        "SELECT d.user_id, d.order_id, d.status, d.return_status, s.status AS shipping,"
        " s.status_at FROM order_items d JOIN shipping s ON s.order_item_id = d.id"
        " WHERE d.id = ?",
        (detail_id,),
    ).fetchone()
    if row is None or (user_id is not None and row["user_id"] != user_id):
        raise NotFound("no such order")
    return row


class OrderService:
    def __init__(
        self,
        *,
        db: Database,
        redis: Any,
        bus: Any,
        goods: Any,
        wishlist: Any,
        cipher: FieldCipher,
        clock: Clock,
        metrics: ShopMetrics,
        timezone: str,
        payment_timeout: int,
    ) -> None:
        self._db = db
        self._redis = redis
        self._bus = bus
        self._goods = goods
        self._wishlist = wishlist
        self._cipher = cipher
        self._clock = clock
        self._metrics = metrics
        self._zone = ZoneInfo(timezone)
        self._payment_timeout = payment_timeout
        bus.subscribe(CONSUMER, PaymentCompleted, self.on_payment_completed)
        bus.subscribe(CONSUMER, PaymentAborted, self.on_payment_aborted)

    # -- placing ------------------------------------------------------------------------------
    async def place(
        self,
        user_id: int,
        goods_id: int,
        quantity: int,
        address: str,
        idempotency: Idempotency | None = None,
    ) -> dict[str, Any]:
        """Reserve in Redis, then store order, item, shipping and ``OrderPlaced`` in one commit."""
        return await self._place(_Placing(user_id, [(goods_id, quantity)], address, idempotency))

    async def place_from_wishlist(
        self,
        user_id: int,
        wishlist_ids: list[int],
        address: str,
        idempotency: Idempotency | None = None,
    ) -> dict[str, Any]:
        """All entries or none; the ordered entries leave the wishlist in the same commit."""
        ids = list(dict.fromkeys(wishlist_ids))
        entries = await self._wishlist.entries(user_id, ids)
        items = [(e.goods_id, e.quantity) for e in entries]
        return await self._place(_Placing(user_id, items, address, idempotency, ids))

    async def _place(self, order: _Placing) -> dict[str, Any]:
        idempotency, user_id = order.idempotency, order.user_id
        if idempotency is None:
            return await self._shielded(order)
        replay = await self._replay(user_id, idempotency)
        if replay is not None:
            return replay
        # One request per key at a time: the others wait for its answer and replay it, so
        # concurrent retries never reserve stock they would have to give back.
        lock = keys.idempotency_lock(user_id, idempotency.key)
        deadline = time.monotonic() + IN_FLIGHT_WAIT
        while not await self._redis.set(lock, "1", nx=True, ex=IN_FLIGHT_LOCK):
            if time.monotonic() > deadline:
                raise IdempotencyConflict(
                    "a request with this Idempotency-Key is still in progress"
                )
            await asyncio.sleep(0.02)
            replay = await self._replay(user_id, idempotency)
            if replay is not None:
                return replay
        try:
            replay = await self._replay(user_id, idempotency)
            if replay is not None:
                return replay
            return await self._shielded(order)
        finally:
            await self._redis.delete(lock)

    async def _shielded(self, order: _Placing) -> dict[str, Any]:
        """Reserve-then-store runs to its end even if the caller is cancelled: stopping between
        the reservation and the commit (or the release) would leave stock taken by no order."""
        return await asyncio.shield(self._place_now(order))

    async def _place_now(self, order: _Placing) -> dict[str, Any]:
        user_id, items, idempotency = order.user_id, order.items, order.idempotency
        try:
            if len(items) == 1:
                goods_id, quantity = items[0]
                catalogue = {goods_id: await self._goods.reserve(user_id, goods_id, quantity)}
            else:
                catalogue = await self._goods.reserve_many(user_id, items)
        except ShopError as exc:
            if isinstance(exc, errors.SoldOut):
                self._metrics.sold_out.inc()
            if idempotency is not None and exc.code in _REPLAYABLE:
                await self._remember_refusal(user_id, idempotency, exc)
            raise
        now = self._clock.timestamp()
        address_enc = self._cipher.encrypt(order.address, "address")

        def store(conn: sqlite3.Connection) -> dict[str, Any]:
            total = sum(catalogue[g].price * q for g, q in items)
            order_id = conn.execute(
                "INSERT INTO orders (user_id, total_price, address_enc, created_at)"
                " VALUES (?, ?, ?, ?)",
                (user_id, total, address_enc, now),
            ).lastrowid
            lines = []
            for goods_id, quantity in items:
                price = catalogue[goods_id].price
                detail_id = conn.execute(
                    "INSERT INTO order_items (order_id, user_id, goods_id, quantity, unit_price,"
                    " status, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, 'PAYMENT_PENDING', ?, ?)",
                    (order_id, user_id, goods_id, quantity, price, now, now),
                ).lastrowid
                conn.execute(
                    "INSERT INTO shipping (order_item_id, status, status_at)"
                    " VALUES (?, 'PENDING', ?)",
                    (detail_id, now),
                )
                lines.append(
                    {
                        "orderDetailId": detail_id,
                        "goodsId": goods_id,
                        "quantity": quantity,
                        "unitPrice": price,
                        "status": "PAYMENT_PENDING",
                    }
                )
            if order.wishlist_ids:
                self._wishlist.remove_in(conn, user_id, order.wishlist_ids)
            body = {"orderId": order_id, "items": lines, "totalPrice": total}
            if idempotency is not None:
                self._claim_key(conn, user_id, idempotency, 201, body, now)
            self._bus.record(
                conn,
                OrderPlaced(
                    order_id=order_id,
                    user_id=user_id,
                    items=[{k: v for k, v in line.items() if k != "status"} for line in lines],
                ),
            )
            return body

        try:
            body = await self._db.write(store)
        except BaseException as exc:
            # Nothing was stored, so nothing may stay reserved.
            for goods_id, quantity in items:
                await self._goods.release(user_id, goods_id, quantity)
            if isinstance(exc, _KeyTaken) and idempotency is not None:
                replay = await self._replay(user_id, idempotency)
                if replay is not None:
                    return replay
            raise
        self._bus.notify()
        self._metrics.orders_placed.inc()
        self._metrics.order_items.inc(len(items))
        return body

    # -- idempotency --------------------------------------------------------------------------
    def _claim_key(
        self,
        conn: sqlite3.Connection,
        user_id: int,
        idem: Idempotency,
        status: int,
        body: dict[str, Any],
        now: float,
    ) -> None:
        claimed = conn.execute(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, status, body, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, key) DO UPDATE SET"
            " request_hash = excluded.request_hash, status = excluded.status,"
            " body = excluded.body, created_at = excluded.created_at"
            " WHERE idempotency_keys.created_at <= ?",
            (
                user_id,
                idem.key,
                idem.request_hash,
                status,
                orjson.dumps(body).decode(),
                now,
                now - IDEMPOTENCY_WINDOW,
            ),
        ).rowcount
        if claimed != 1:
            raise _KeyTaken()

    async def _remember_refusal(self, user_id: int, idem: Idempotency, exc: ShopError) -> None:
        now = self._clock.timestamp()
        body = {"error": exc.code, "msg": exc.message, "data": exc.data}
        try:
            await self._db.write(lambda c: self._claim_key(c, user_id, idem, 0, body, now))
        except _KeyTaken:
            pass  # a concurrent request with this key answered first; its answer stands

    async def _replay(self, user_id: int, idem: Idempotency) -> dict[str, Any] | None:
        """The first answer for this key, or None if the key is new (or older than 24 hours)."""
        horizon = self._clock.timestamp() - IDEMPOTENCY_WINDOW
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT request_hash, status, body FROM idempotency_keys"
                " WHERE user_id = ? AND key = ? AND created_at > ?",
                (user_id, idem.key, horizon),
            ).fetchone()
        )
        if row is None:
            return None
        if row["request_hash"] != idem.request_hash:
            raise IdempotencyConflict()
        body = orjson.loads(row["body"])
        if row["status"] != 201:
            error = _REPLAYABLE.get(body["error"], ShopError)
            raise error(body["msg"], body.get("data"))
        return body

    # -- reading ------------------------------------------------------------------------------
    def _item(self, row: sqlite3.Row) -> dict[str, Any]:
        return {
            "orderDetailId": row["order_item_id"],
            "orderId": row["order_id"],
            "goodsId": row["goods_id"],
            "goodsName": row["goods_name"],
            "category": row["category"],
            "quantity": row["quantity"],
            "unitPrice": row["unit_price"],
            "subTotalPrice": row["unit_price"] * row["quantity"],
            "orderStatus": row["status"],
            "shippingStatus": row["shipping_status"],
            "paymentStatus": row["payment_status"],
            "returnStatus": row["return_status"],
            "orderedAt": datetime.fromtimestamp(row["created_at"], self._zone).isoformat(
                timespec="seconds"
            ),
        }

    async def list(
        self,
        *,
        user_id: int | None = None,
        status: str | None = None,
        goods_id: int | None = None,
        page: int = 0,
        size: int = 10,
    ) -> tuple[list[dict[str, Any]], int]:
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
            total = conn.execute(f"SELECT COUNT(*) FROM order_items d {clause}", args).fetchone()[
                0
            ]
            rows = conn.execute(
                f"SELECT {ITEM_COLUMNS} {ITEM_JOINS} {clause} ORDER BY d.id DESC LIMIT ? OFFSET ?",
                (*args, size, page * size),
            ).fetchall()
            return rows, total

        rows, total = await self._db.read(query)
        return [self._item(r) for r in rows], total

    async def get(self, user_id: int | None, order_item_id: int) -> dict[str, Any]:
        """One item; another user's item is as absent as a missing one."""
        row = await self._db.read(
            lambda c: c.execute(
                f"SELECT {ITEM_COLUMNS}, d.user_id {ITEM_JOINS} WHERE d.id = ?", (order_item_id,)
            ).fetchone()
        )
        if row is None or (user_id is not None and row["user_id"] != user_id):
            raise NotFound("no such order")
        return self._item(row)

    # -- giving stock back --------------------------------------------------------------------
    def _release_item(
        self, conn: sqlite3.Connection, detail_id: int, now: float, *, require_status: str | None
    ) -> _Released | None:
        """Flip the item to CANCELED with its stock released, once; None if it was not ours to flip."""
        guard = "AND status = ?" if require_status else "AND status != 'CANCELED'"
        args: tuple[Any, ...] = (now, detail_id) + ((require_status,) if require_status else ())
        row = conn.execute(
            "UPDATE order_items SET status = 'CANCELED', stock_released = 1, updated_at = ?"
            f" WHERE id = ? AND stock_released = 0 {guard}"
            " RETURNING goods_id, user_id, quantity, order_id",
            args,
        ).fetchone()
        if row is None:
            return None
        conn.execute(
            "UPDATE shipping SET status = 'CANCELED', status_at = ? WHERE order_item_id = ?",
            (now, detail_id),
        )
        return _Released(row["goods_id"], row["user_id"], row["quantity"])

    async def _give_back(self, released: list[_Released]) -> None:
        for r in released:
            await self._goods.release(r.user_id, r.goods_id, r.quantity)

    async def cancel(self, user_id: int | None, order_item_id: int) -> dict[str, Any]:
        """Only while shipping is PENDING; stock goes back and the payment is refunded."""
        now = self._clock.timestamp()

        def cancel(conn: sqlite3.Connection) -> _Released:
            row = _owned_item(conn, user_id, order_item_id)
            if row["status"] == "CANCELED" or row["shipping"] != "PENDING":
                raise InvalidState(
                    f"only an item not yet shipped can be canceled (shipping is {row['shipping']},"
                    f" order is {row['status']})"
                )
            released = self._release_item(conn, order_item_id, now, require_status=None)
            if released is None:
                raise InvalidState("this item was canceled already")
            self._bus.record(
                conn,
                OrderItemCanceled(
                    order_item_id=order_item_id,
                    order_id=row["order_id"],
                    user_id=row["user_id"],
                    reason="buyer",
                ),
            )
            return released

        released = await self._db.write(cancel)
        self._bus.notify()
        await self._give_back([released])
        return await self.get(user_id, order_item_id)

    async def request_return(
        self, user_id: int | None, order_item_id: int, reason: str
    ) -> dict[str, Any]:
        """Only a DELIVERED item, at most a day after delivery."""
        now = self._clock.timestamp()

        def ask(conn: sqlite3.Connection) -> None:
            row = _owned_item(conn, user_id, order_item_id)
            if row["shipping"] != "DELIVERED" or row["status"] != "COMPLETED":
                raise InvalidState("only a delivered item can be returned")
            if row["return_status"] is not None:
                raise InvalidState("a return was already asked for")
            if now - row["status_at"] > RETURN_WINDOW:
                raise InvalidState("returns are possible for one day after delivery")
            conn.execute(
                "UPDATE order_items SET return_status = 'RETURN_IN_PROGRESS', return_reason = ?,"
                " return_requested_at = ?, updated_at = ? WHERE id = ? AND return_status IS NULL",
                (reason, now, now, order_item_id),
            )

        await self._db.write(ask)
        return await self.get(user_id, order_item_id)

    # -- payment outcomes ---------------------------------------------------------------------
    async def on_payment_completed(self, event: PaymentCompleted) -> None:
        now = self._clock.timestamp()

        def complete(conn: sqlite3.Connection) -> None:
            if not self._bus.first_time(conn, CONSUMER + ":completed", event.event_id):
                return
            done = conn.execute(
                "UPDATE order_items SET status = 'COMPLETED', updated_at = ?"
                " WHERE id = ? AND status = 'PAYMENT_PENDING'",
                (now, event.order_item_id),
            ).rowcount
            if not done:
                # Paid for an item that expired or was canceled meanwhile: give the money back.
                self._bus.record(
                    conn,
                    OrderItemCanceled(
                        order_item_id=event.order_item_id,
                        order_id=event.order_id,
                        user_id=event.user_id,
                        reason="late-payment",
                    ),
                )

        await self._db.write(complete)
        self._bus.notify()

    async def on_payment_aborted(self, event: PaymentAborted) -> None:
        now = self._clock.timestamp()

        def abort(conn: sqlite3.Connection) -> _Released | None:
            if not self._bus.first_time(conn, CONSUMER + ":aborted", event.event_id):
                return None
            return self._release_item(
                conn, event.order_item_id, now, require_status="PAYMENT_PENDING"
            )

        released = await self._db.write(abort)
        if released is not None:
            await self._give_back([released])

    async def expire_unpaid(self, as_of: datetime | None = None) -> int:
        """Abort items still PAYMENT_PENDING after the payment timeout; returns how many."""
        now = (as_of or self._clock.now()).timestamp()
        cutoff = now - self._payment_timeout

        def expire(conn: sqlite3.Connection) -> list[_Released]:
            rows = conn.execute(
                "SELECT id, order_id, user_id FROM order_items"
                " WHERE status = 'PAYMENT_PENDING' AND created_at <= ?",
                (cutoff,),
            ).fetchall()
            released = []
            for row in rows:
                r = self._release_item(conn, row["id"], now, require_status="PAYMENT_PENDING")
                if r is None:
                    continue
                released.append(r)
                self._bus.record(
                    conn,
                    OrderItemCanceled(
                        order_item_id=row["id"],
                        order_id=row["order_id"],
                        user_id=row["user_id"],
                        reason="expired",
                    ),
                )
            return released

        released = await self._db.write(expire)
        if released:
            self._bus.notify()
            await self._give_back(released)
        return len(released)

    # -- the daily runs -----------------------------------------------------------------------
    async def run_shipping(self, as_of: datetime | None = None) -> dict[str, int]:
        """Each paid item moves at most one step, only when its status is older than a day."""
        now = (as_of or self._clock.now()).timestamp()
        cutoff = now - DAY

        def ship(conn: sqlite3.Connection) -> dict[str, int]:
            # DELIVERED first: items moved to IN_TRANSIT below get status_at = now, so the
            # same run can never take them on to DELIVERED (the original's one-night jump).
            delivered = conn.execute(
                "UPDATE shipping SET status = 'DELIVERED', status_at = ?"
                " WHERE status = 'IN_TRANSIT' AND status_at <= ?",
                (now, cutoff),
            ).rowcount
            in_transit = conn.execute(
                "UPDATE shipping SET status = 'IN_TRANSIT', status_at = ?"
                " WHERE status = 'PENDING' AND status_at <= ? AND order_item_id IN"
                " (SELECT id FROM order_items WHERE status = 'COMPLETED')",
                (now, cutoff),
            ).rowcount
            return {"inTransit": in_transit, "delivered": delivered}

        return await self._db.write(ship)

    async def run_returns(self, as_of: datetime | None = None) -> dict[str, int]:
        """Returns asked for more than a day ago complete, and their quantity goes back."""
        now = (as_of or self._clock.now()).timestamp()
        cutoff = now - DAY

        def complete(conn: sqlite3.Connection) -> list[_Released]:
            rows = conn.execute(
                "UPDATE order_items SET return_status = 'RETURN_COMPLETED', stock_released = 1,"
                " updated_at = ? WHERE return_status = 'RETURN_IN_PROGRESS'"
                " AND return_requested_at <= ? AND stock_released = 0"
                " RETURNING goods_id, user_id, quantity",
                (now, cutoff),
            ).fetchall()
            return [_Released(r["goods_id"], r["user_id"], r["quantity"]) for r in rows]

        released = await self._db.write(complete)
        await self._give_back(released)
        return {"returned": len(released)}

    # -- figures ------------------------------------------------------------------------------
    async def stats(self) -> dict[str, Any]:
        def query(conn: sqlite3.Connection) -> dict[str, Any]:
            by_status = dict(
                conn.execute(
                    "SELECT status, COUNT(*) FROM order_items GROUP BY status"
                ).fetchall()
            )
            shipping = dict(
                conn.execute("SELECT status, COUNT(*) FROM shipping GROUP BY status").fetchall()
            )
            returns = dict(
                conn.execute(
                    "SELECT return_status, COUNT(*) FROM order_items"
                    " WHERE return_status IS NOT NULL GROUP BY return_status"
                ).fetchall()
            )
            payments = dict(
                conn.execute("SELECT status, COUNT(*) FROM payments GROUP BY status").fetchall()
            )
            sold = [
                {"goodsId": r[0], "goodsName": r[1], "sold": r[2]}
                for r in conn.execute(
                    "SELECT g.id, g.name, COALESCE(SUM(a.quantity), 0) FROM goods g"
                    " LEFT JOIN active_order_items a ON a.goods_id = g.id"
                    " GROUP BY g.id ORDER BY g.id"
                ).fetchall()
            ]
            orders = conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
            return {
                "orders": orders,
                "ordersByStatus": by_status,
                "shippingByStatus": shipping,
                "returnsByStatus": returns,
                "paymentOutcomes": payments,
                "soldPerGoods": sold,
            }

        return await self._db.read(query)

    async def first_page(self, user_id: int) -> dict[str, Any]:
        """The "my page" part: the caller's first page of order items."""
        items, total = await self.list(user_id=user_id, page=0, size=10)
        return {
            "items": items,
            "page": 0,
            "size": 10,
            "totalItems": total,
            "totalPages": (total + 9) // 10,
        }
