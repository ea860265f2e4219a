"""The scheduled runs: unpaid items expire; each day, shipping moves on and returns complete.

Each run takes an optional ``as_of`` time (the operator's "as if at", the tests' clock) and
returns its figures for the operator.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from miri.domain.events import ItemReturned, OrderItemCanceled
from miri.domain.orders import store
from miri.domain.orders.model import PAYMENT_PENDING, Released, Stock, give_back
from miri.infra.bus import Bus
from miri.infra.clock import Clock
from miri.infra.database import Database

DAY = 24 * 3600


class Lifecycle:
    def __init__(
        self, *, db: Database, bus: Bus, stock: Stock, clock: Clock, payment_timeout: int
    ) -> None:
        self._db = db
        self._bus = bus
        self._stock = stock
        self._clock = clock
        self._payment_timeout = payment_timeout

    def _now(self, as_of: datetime | None) -> float:
        return (as_of or self._clock.now()).timestamp()

    async def expire_unpaid(self, as_of: datetime | None = None) -> int:
        """Abort items still PAYMENT_PENDING after the payment timeout; returns how many."""
        now = self._now(as_of)
        cutoff = now - self._payment_timeout

        def expire(conn: sqlite3.Connection) -> list[Released]:
            released = []
            for item in store.unpaid_since(conn, cutoff):
                r = store.release_item(conn, item.item_id, now, require_status=PAYMENT_PENDING)
                if r is None:
                    continue
                released.append(r)
                self._bus.record(
                    conn,
                    OrderItemCanceled(
                        order_item_id=item.item_id,
                        order_id=item.order_id,
                        user_id=item.user_id,
                        reason="expired",
                    ),
                )
            return released

        released = await self._db.write(expire)
        if released:
            self._bus.notify()
            await give_back(self._stock, released)
        return len(released)

    async def run_shipping(self, as_of: datetime | None = None) -> dict[str, int]:
        """Each paid item moves at most one step, only when its status is older than a day."""
        now = self._now(as_of)
        in_transit, delivered = await self._db.write(
            lambda conn: store.advance_shipping(conn, now, now - DAY)
        )
        return {"inTransit": in_transit, "delivered": delivered}

    async def run_returns(self, as_of: datetime | None = None) -> dict[str, int]:
        """Returns asked for more than a day ago complete: their quantity goes back, and the
        money (``ItemReturned`` in the same commit: payments refunds)."""
        now = self._now(as_of)

        def complete(conn: sqlite3.Connection) -> list[Released]:
            done = store.complete_returns(conn, now, now - DAY)
            for item, _ in done:
                self._bus.record(
                    conn,
                    ItemReturned(
                        order_item_id=item.item_id, order_id=item.order_id, user_id=item.user_id
                    ),
                )
            return [released for _, released in done]

        released = await self._db.write(complete)
        if released:
            self._bus.notify()
        await give_back(self._stock, released)
        return {"returned": len(released)}
