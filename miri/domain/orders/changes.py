"""What a buyer (or an operator) changes on an item: cancel it, ask for its return."""

from __future__ import annotations

import logging
import sqlite3

from miri.domain.errors import InvalidState
from miri.domain.events import OrderItemCanceled
from miri.domain.orders import store
from miri.domain.orders.model import Refunds, Released, Stock, give_back
from miri.infra.bus import Bus
from miri.infra.clock import Clock
from miri.infra.database import Database

log = logging.getLogger(__name__)
RETURN_WINDOW = 24 * 3600


class Changes:
    def __init__(
        self, *, db: Database, bus: Bus, stock: Stock, clock: Clock, refunds: Refunds | None = None
    ) -> None:
        self._db = db
        self._bus = bus
        self._stock = stock
        self._clock = clock
        self._refunds = refunds

    async def cancel(self, user_id: int | None, order_item_id: int) -> None:
        """Only while shipping is PENDING; stock goes back and payments refunds (an event).

        ``user_id``: the buyer (another buyer's item is not found); None: the operator.
        """
        now = self._clock.timestamp()

        def cancel(conn: sqlite3.Connection) -> tuple[Released, OrderItemCanceled]:
            item = store.owned_item(conn, user_id, order_item_id)
            if item.status == "CANCELED" or item.shipping != "PENDING":
                raise InvalidState(
                    f"only an item not yet shipped can be canceled (shipping is {item.shipping},"
                    f" order is {item.status})"
                )
            released = store.release_item(conn, order_item_id, now, require_status=None)
            if released is None:
                raise InvalidState("this item was canceled already")
            event = OrderItemCanceled(
                order_item_id=order_item_id,
                order_id=item.order_id,
                user_id=item.user_id,
                reason="buyer",
            )
            self._bus.record(conn, event)
            return released, event

        released, event = await self._db.write(cancel)
        self._bus.notify()
        await give_back(self._stock, [released])
        if self._refunds is not None:
            try:
                await self._refunds.on_item_canceled(event)
            except Exception:  # noqa: BLE001 - the outbox delivers the refund again, with retries
                log.warning(
                    "refund of canceled item %s left to the bus", order_item_id, exc_info=True
                )

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
