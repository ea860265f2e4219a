"""Sellers (and admins for them) ship what was bought: carrier and tracking number by hand."""

from __future__ import annotations

import sqlite3

from miri.domain.errors import InvalidState, NotFound
from miri.domain.events import ItemShipped
from miri.domain.orders import store
from miri.domain.orders.model import Catalogue
from miri.infra.bus import Bus
from miri.infra.clock import Clock
from miri.infra.database import Database


class Fulfilment:
    def __init__(self, *, db: Database, bus: Bus, catalogue: Catalogue, clock: Clock) -> None:
        self._db = db
        self._bus = bus
        self._catalogue = catalogue
        self._clock = clock

    async def ship(
        self, seller_id: int | None, order_item_id: int, carrier: str, tracking_number: str
    ) -> None:
        """Paid and PENDING -> IN_TRANSIT with the tracking number; the buyer is told (an event).

        ``seller_id``: only an item of that seller's goods (any other is not found); None: admin.
        The daily run delivers it a day after it was shipped.
        """
        if seller_id is not None:
            item = await self._db.read(lambda c: store.owned_item(c, None, order_item_id))
            try:
                seller = (await self._catalogue.get(item.goods_id)).seller_id
            except NotFound:
                seller = None
            if seller != seller_id:
                raise NotFound("no such order")
        now = self._clock.timestamp()

        def ship(conn: sqlite3.Connection) -> None:
            item = store.owned_item(conn, None, order_item_id)
            if item.status != "COMPLETED" or item.shipping != "PENDING":
                raise InvalidState(
                    "only a paid item not yet shipped can be shipped (order is"
                    f" {item.status}, shipping is {item.shipping})"
                )
            if not store.ship_item(conn, order_item_id, carrier, tracking_number, now):
                raise InvalidState("this item was shipped or canceled meanwhile")
            self._bus.record(
                conn,
                ItemShipped(
                    order_item_id=order_item_id,
                    order_id=item.order_id,
                    user_id=item.user_id,
                    carrier=carrier,
                    tracking_number=tracking_number,
                ),
            )

        await self._db.write(ship)
        self._bus.notify()
