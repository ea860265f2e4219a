"""How an item follows its payment: completed, or aborted (its stock goes back)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from miri.domain.events import OrderItemCanceled, PaymentAborted, PaymentCompleted
from miri.domain.orders import store
from miri.domain.orders.model import PAYMENT_PENDING, Released, Stock, give_back
from miri.infra.bus import Bus
from miri.infra.clock import Clock
from miri.infra.database import Database

# Marks in handled_events: each event takes effect once however often it is delivered.
HANDLED_COMPLETED = "orders:completed"
HANDLED_ABORTED = "orders:aborted"


class PaymentOutcomes:
    def __init__(self, *, db: Database, bus: Bus, stock: Stock, clock: Clock) -> None:
        self._db = db
        self._bus = bus
        self._stock = stock
        self._clock = clock

    async def on_payment_completed(self, event: PaymentCompleted) -> None:
        await self.on_payments_completed([event])

    async def on_payments_completed(self, events: Sequence[PaymentCompleted]) -> None:
        """Each paid item COMPLETED, all in one write."""
        now = self._clock.timestamp()

        def complete(conn: sqlite3.Connection) -> bool:
            canceled = False
            for event in events:
                if not self._bus.first_time(conn, HANDLED_COMPLETED, event.event_id):
                    continue
                if not store.complete_item(conn, event.order_item_id, now):
                    # Paid for an item that expired or was canceled meanwhile: the money goes
                    # back.
                    canceled = True
                    self._bus.record(
                        conn,
                        OrderItemCanceled(
                            order_item_id=event.order_item_id,
                            order_id=event.order_id,
                            user_id=event.user_id,
                            reason="late-payment",
                        ),
                    )
            return canceled

        if await self._db.write(complete):
            self._bus.notify()

    async def on_payment_aborted(self, event: PaymentAborted) -> None:
        now = self._clock.timestamp()

        def abort(conn: sqlite3.Connection) -> Released | None:
            if not self._bus.first_time(conn, HANDLED_ABORTED, event.event_id):
                return None
            return store.release_item(
                conn, event.order_item_id, now, require_status=PAYMENT_PENDING
            )

        released = await self._db.write(abort)
        if released is not None:
            await give_back(self._stock, [released])
