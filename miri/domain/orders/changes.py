"""What a buyer (or an operator) changes on an item: cancel it, ask for its return."""

from __future__ import annotations

import sqlite3

from miri.domain.errors import InvalidState
from miri.domain.events import OrderItemCanceled
from miri.domain.orders import store
from miri.domain.orders.model import Released, Stock, give_back
from miri.infra.bus import Bus
from miri.infra.clock import Clock
from miri.infra.database import Database

RETURN_WINDOW = 24 * 3600


class Changes:
    def __init__(self, *, db: Database, bus: Bus, stock: Stock, clock: Clock) -> None:
        self._db = db
        self._bus = bus
        self._stock = stock
        self._clock = clock

    async def cancel(self, user_id: int | None, order_item_id: int) -> None:
        """Only while shipping is PENDING; stock goes back and payments refunds (an event).

        ``user_id``: the buyer (another buyer's item is not found); None: the operator.
        """
        now = self._clock.timestamp()

        def cancel(conn: sqlite3.Connection) -> Released:
            item = store.owned_item(conn, user_id, order_item_id)
            if item.status == "CANCELED" or item.shipping != "PENDING":
                raise InvalidState(
                    f"only an item not yet shipped can be canceled (shipping is {item.shipping},"
                    f" order is {item.status})"
                )
            released = store.release_item(conn, order_item_id, now, require_status=None)
            if released is None:
                raise InvalidState("this item was canceled already")
            self._bus.record(
                conn,
                OrderItemCanceled(
                    order_item_id=order_item_id,
                    order_id=item.order_id,
                    user_id=item.user_id,
                    reason="buyer",
                ),
            )
            return released

        released = await self._db.write(cancel)
        self._bus.notify()
        await give_back(self._stock, [released])

    async def request_return(self, user_id: int | None, order_item_id: int, reason: str) -> None:
        """Only a DELIVERED item, at most a day after delivery."""
        now = self._clock.timestamp()

        def ask(conn: sqlite3.Connection) -> None:
            item = store.owned_item(conn, user_id, order_item_id)
            if item.shipping != "DELIVERED" or item.status != "COMPLETED":
                raise InvalidState("only a delivered item can be returned")
            if item.return_status is not None:
                raise InvalidState("a return was already asked for")
            if now - item.shipping_at > RETURN_WINDOW:
                raise InvalidState("returns are possible for one day after delivery")
            store.ask_return(conn, order_item_id, reason, now)

        await self._db.write(ask)
