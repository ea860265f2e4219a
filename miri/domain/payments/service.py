"""Payments consume ``OrderPlaced`` and ``OrderItemCanceled``; they publish the outcome.

Every status change is a guarded UPDATE (``WHERE status IN (...)``), so a payment that a cancel
or an expiry already settled is never moved on by a gateway answer that arrives late.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any

from miri.domain.events import (
    OrderItemCanceled,
    OrderPlaced,
    PaymentAborted,
    PaymentCompleted,
)
from miri.domain.payments.gateway import PaymentGateway, PaymentRequest
from miri.infra.breakers import Breakers
from miri.infra.clock import Clock
from miri.infra.metrics import ShopMetrics
from miri.infra.sqlite import Database

log = logging.getLogger(__name__)
CONSUMER = "payments"
OPEN = ("PAYMENT_SCREEN_ENTERED", "PAYMENT_IN_PROGRESS")


class PaymentService:
    def __init__(
        self,
        *,
        db: Database,
        bus: Any,
        gateway: PaymentGateway,
        breakers: Breakers,
        clock: Clock,
        metrics: ShopMetrics,
    ) -> None:
        self._db = db
        self._bus = bus
        self.gateway = gateway
        self._breakers = breakers
        self._clock = clock
        self._metrics = metrics
        bus.subscribe(CONSUMER, OrderPlaced, self.on_order_placed)
        bus.subscribe(CONSUMER, OrderItemCanceled, self.on_item_canceled)

    # -- consumers ----------------------------------------------------------------------------
    async def on_order_placed(self, event: OrderPlaced) -> None:
        """Open one payment per item, then walk each through the gateway."""
        now = self._clock.timestamp()

        def open_payments(conn: sqlite3.Connection) -> list[tuple[PaymentRequest, str]]:
            if not self._bus.first_time(conn, CONSUMER + ":placed", event.event_id):
                # Seen before: resume whatever is still open (a crash mid-walk), start nothing new.
                rows = conn.execute(
                    "SELECT id, order_item_id, user_id, amount, status FROM payments"
                    f" WHERE order_id = ? AND status IN {OPEN}",
                    (event.order_id,),
                ).fetchall()
                return [(PaymentRequest(*r[:4]), r[4]) for r in rows]
            opened = []
            for item in event.items:
                amount = item["unitPrice"] * item["quantity"]
                # OR IGNORE: a cancel that arrived first already settled this item as REFUNDED.
                cur = conn.execute(
                    "INSERT OR IGNORE INTO payments (order_item_id, order_id, user_id, amount,"
                    " status, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, 'PAYMENT_SCREEN_ENTERED', ?, ?)",
                    (item["orderDetailId"], event.order_id, event.user_id, amount, now, now),
                )
                if cur.rowcount == 1:
                    request = PaymentRequest(
                        cur.lastrowid, item["orderDetailId"], event.user_id, amount
                    )
                    opened.append((request, "PAYMENT_SCREEN_ENTERED"))
            return opened

        walks = await self._db.write(open_payments)
        await asyncio.gather(*(self._walk(r, event.order_id, at) for r, at in walks))

    async def on_item_canceled(self, event: OrderItemCanceled) -> None:
        """Buyer cancel → REFUNDED; expiry → PAYMENT_ABORTED (nothing was taken)."""
        status = "PAYMENT_ABORTED" if event.reason == "expired" else "REFUNDED"
        now = self._clock.timestamp()

        # An expiry only aborts a payment still open (a completed one is refunded through the
        # late-payment cancel); a refund applies to anything not already aborted.
        settles = OPEN if status == "PAYMENT_ABORTED" else (*OPEN, "PAYMENT_COMPLETED")

        def settle(conn: sqlite3.Connection) -> None:
            if not self._bus.first_time(conn, CONSUMER + ":canceled", event.event_id):
                return
            conn.execute(
                "INSERT INTO payments (order_item_id, order_id, user_id, amount, status,"
                " created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?, ?)"
                " ON CONFLICT (order_item_id) DO UPDATE SET status = excluded.status,"
                f" updated_at = excluded.updated_at WHERE status IN {settles}",
                (event.order_item_id, event.order_id, event.user_id, status, now, now),
            )

        await self._db.write(settle)
        self._metrics.payments.labels(status.lower()).inc()

    # -- the walk -----------------------------------------------------------------------------
    async def _walk(self, request: PaymentRequest, order_id: int, status: str) -> None:
        """From ``status`` on: a walk cut short by a crash resumes where it stopped."""
        if status == "PAYMENT_SCREEN_ENTERED":
            async with self._breakers.guard("payment-gateway"):
                entered = await self.gateway.enter_screen(request)
            if not entered:
                await self._abort(request, order_id, "the buyer left the payment screen")
                return
            if not await self._move(request, "PAYMENT_SCREEN_ENTERED", "PAYMENT_IN_PROGRESS"):
                return
        async with self._breakers.guard("payment-gateway"):
            paid = await self.gateway.pay(request)
        if not paid:
            await self._abort(request, order_id, "the buyer abandoned during payment")
            return
        await self._complete(request, order_id)

    async def _move(self, request: PaymentRequest, old: str, new: str) -> bool:
        now = self._clock.timestamp()
        return await self._db.write(
            lambda c: (
                c.execute(
                    "UPDATE payments SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
                    (new, now, request.payment_id, old),
                ).rowcount
                == 1
            )
        )

    async def _complete(self, request: PaymentRequest, order_id: int) -> None:
        now = self._clock.timestamp()

        def complete(conn: sqlite3.Connection) -> bool:
            done = conn.execute(
                "UPDATE payments SET status = 'PAYMENT_COMPLETED', updated_at = ?"
                " WHERE id = ? AND status = 'PAYMENT_IN_PROGRESS'",
                (now, request.payment_id),
            ).rowcount
            if done:
                self._bus.record(
                    conn,
                    PaymentCompleted(
                        order_item_id=request.order_item_id,
                        order_id=order_id,
                        user_id=request.user_id,
                    ),
                )
            return bool(done)

        if await self._db.write(complete):
            self._bus.notify()
            self._metrics.payments.labels("completed").inc()

    async def _abort(self, request: PaymentRequest, order_id: int, reason: str) -> None:
        now = self._clock.timestamp()

        def abort(conn: sqlite3.Connection) -> bool:
            done = conn.execute(
                "UPDATE payments SET status = 'PAYMENT_ABORTED', updated_at = ?"
                f" WHERE id = ? AND status IN {OPEN}",
                (now, request.payment_id),
            ).rowcount
            if done:
                self._bus.record(
                    conn,
                    PaymentAborted(
                        order_item_id=request.order_item_id,
                        order_id=order_id,
                        user_id=request.user_id,
                        reason=reason,
                    ),
                )
            return bool(done)

        if await self._db.write(abort):
            self._bus.notify()
            self._metrics.payments.labels("aborted").inc()

    # -- reading ------------------------------------------------------------------------------
    async def outcomes(self) -> dict[str, int]:
        rows = await self._db.read(
            lambda c: c.execute("SELECT status, COUNT(*) FROM payments GROUP BY status").fetchall()
        )
        return {r[0]: r[1] for r in rows}
