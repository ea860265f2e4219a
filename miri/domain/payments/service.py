"""Payments consume ``OrderPlaced`` and ``OrderItemCanceled``; the checkout publishes the outcome."""

from __future__ import annotations

import asyncio
import sqlite3

from miri.domain.events import OrderItemCanceled, OrderPlaced
from miri.domain.payments import store
from miri.domain.payments.checkout import Checkout
from miri.domain.payments.gateway import PaymentRequest
from miri.infra.bus import Bus
from miri.infra.clock import Clock
from miri.infra.database import Database
from miri.infra.metrics import ShopMetrics

# Marks in handled_events: each event takes effect once however often it is delivered.
HANDLED_PLACED = "payments:placed"
HANDLED_CANCELED = "payments:canceled"


class PaymentService:
    def __init__(
        self,
        *,
        db: Database,
        bus: Bus,
        checkout: Checkout,
        clock: Clock,
        metrics: ShopMetrics,
    ) -> None:
        self._db = db
        self._bus = bus
        self.checkout = checkout
        self._clock = clock
        self._metrics = metrics

    async def on_order_placed(self, event: OrderPlaced) -> None:
        """Open one payment per item, then walk each through the gateway."""
        now = self._clock.timestamp()

        def open_payments(conn: sqlite3.Connection) -> list[tuple[PaymentRequest, str]]:
            if not self._bus.first_time(conn, HANDLED_PLACED, event.event_id):
                # Seen before: resume whatever is still open (a crash mid-walk), start nothing new.
                return store.still_open(conn, event.order_id)
            opened = []
            for item in event.items:
                request = store.open_payment(conn, item, event.order_id, event.user_id, now)
                if request is not None:
                    opened.append((request, store.SCREEN_ENTERED))
            return opened

        walks = await self._db.write(open_payments)
        await asyncio.gather(*(self.checkout.walk(r, event.order_id, at) for r, at in walks))

    async def on_item_canceled(self, event: OrderItemCanceled) -> None:
        """Buyer cancel → REFUNDED; expiry → PAYMENT_ABORTED (nothing was taken)."""
        expired = event.reason == "expired"
        status = store.ABORTED if expired else store.REFUNDED
        # An expiry only aborts a payment still open (a completed one is refunded through the
        # late-payment cancel); a refund applies to anything not already aborted.
        settles = store.OPEN if expired else (*store.OPEN, store.COMPLETED)
        now = self._clock.timestamp()

        def settle(conn: sqlite3.Connection) -> None:
            if not self._bus.first_time(conn, HANDLED_CANCELED, event.event_id):
                return
            store.settle(
                conn, event.order_item_id, event.order_id, event.user_id, status, settles, now
            )

        await self._db.write(settle)
        self._metrics.payments.labels(status.lower()).inc()

    async def outcomes(self) -> dict[str, int]:
        """How many payments are in each status."""
        return await self._db.read(store.outcomes)
