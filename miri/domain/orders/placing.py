"""Placing an order (the hot path): reserve live stock, then store everything in one commit.

One commit holds the order, its items and their shipping rows, the ``OrderPlaced`` event, the
idempotency answer and, for an order from the wishlist, the removal of the ordered entries (a
unit of work over the orders store and the wishlist store). If that commit fails, the
reservation is given back before the error is raised. The commit also checks the stock epoch
the units were reserved in (``goods.store.check_epoch``): after a rebuild of live stock, the
order is refused (503) and nothing is given back, the rebuild already did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from miri.domain import errors
from miri.domain.errors import NotFound, ShopError
from miri.domain.events import OrderedItem, OrderPlaced
from miri.domain.goods import store as goods_store
from miri.domain.goods import wishlist_store
from miri.domain.orders import store
from miri.domain.orders.idempotency import IdempotencyKeys, KeyTaken
from miri.domain.orders.model import Gate, Idempotency, OrderLine, PlacedOrder, Stock, Wishlist
from miri.infra.bus import Bus
from miri.infra.clock import Clock
from miri.infra.crypto import FieldCipher
from miri.infra.database import Database
from miri.infra.metrics import ShopMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Order:
    """One order being placed: who, what (goods id, quantity), where to, and its key if any."""

    user_id: int
    items: list[tuple[int, int]]
    address: str
    idempotency: Idempotency | None
    wish_ids: list[int] | None = None
    passes: tuple[str, ...] = ()  # X-Queue-Pass tokens, for goods behind a waiting room


def take_wishes(conn: sqlite3.Connection, user_id: int, wish_ids: Sequence[int]) -> None:
    """Remove the ordered wishlist entries in the order's transaction; every one must still be
    there, or another order took some of them first and this one must not go through."""
    if wishlist_store.delete_entries(conn, user_id, wish_ids) != len(wish_ids):
        raise NotFound("no such wishlist entry", {"wishListIds": list(wish_ids)})


class Placing:
    def __init__(
        self,
        *,
        db: Database,
        bus: Bus,
        stock: Stock,
        wishlist: Wishlist,
        keys: IdempotencyKeys,
        cipher: FieldCipher,
        clock: Clock,
        metrics: ShopMetrics,
        gate: Gate | None = None,
    ) -> None:
        self._db = db
        self._gate = gate
        self._bus = bus
        self._stock = stock
        self._wishlist = wishlist
        self._keys = keys
        self._cipher = cipher
        self._clock = clock
        self._metrics = metrics

    async def place(
        self,
        user_id: int,
        goods_id: int,
        quantity: int,
        address: str,
        idempotency: Idempotency | None = None,
        passes: Sequence[str] = (),
    ) -> PlacedOrder:
        items = [(goods_id, quantity)]
        return await self._place(_Order(user_id, items, address, idempotency, None, tuple(passes)))

    async def place_from_wishlist(
        self,
        user_id: int,
        wish_ids: Sequence[int],
        address: str,
        idempotency: Idempotency | None = None,
        passes: Sequence[str] = (),
    ) -> PlacedOrder:
        """All entries or none; the ordered entries leave the wishlist in the same commit."""
        ids = list(dict.fromkeys(wish_ids))
        entries = await self._wishlist.entries(user_id, ids)
        items = [(e.goods_id, e.quantity) for e in entries]
        return await self._place(_Order(user_id, items, address, idempotency, ids, tuple(passes)))

    async def _place(self, order: _Order) -> PlacedOrder:
        if order.idempotency is None:
            return await self._shielded(order)
        return await self._keys.once(
            order.user_id, order.idempotency, lambda: self._shielded(order)
        )

    async def _shielded(self, order: _Order) -> PlacedOrder:
        """Reserve-then-store runs to its end even if the caller is cancelled: stopping between
        the reservation and the commit (or the release) would leave stock taken by no order."""
        return await asyncio.shield(self._place_now(order))

    async def _place_now(self, order: _Order) -> PlacedOrder:
        user_id, items, idem = order.user_id, order.items, order.idempotency
        # Goods behind a waiting room: the buyer's pass is used before anything is reserved.
        used = None
        if self._gate is not None:
            used = await self._gate.use_passes(user_id, [g for g, _ in items], order.passes)
        try:
            catalogue = await self._stock.reserve_many(user_id, items)
        except BaseException as exc:
            if used is not None:
                await self._give_back(used, sold_out=isinstance(exc, errors.SoldOut))
            if isinstance(exc, errors.SoldOut):
                self._metrics.sold_out.inc()
            if idem is not None and isinstance(exc, ShopError):
                await self._keys.remember_refusal(user_id, idem, exc)
            raise
        if used is not None:
            await self._settle(used)
        now = self._clock.timestamp()
        address_enc = self._cipher.encrypt(order.address, "address")
        prices = [catalogue[goods_id].price for goods_id, _ in items]
        total = sum(price * quantity for price, (_, quantity) in zip(prices, items, strict=True))

        epoch = getattr(catalogue, "epoch", None)

        def write(conn: sqlite3.Connection) -> PlacedOrder:
            # First, before any row is written: live stock rebuilt since the reservation?
            goods_store.check_epoch(conn, epoch)
            order_id = store.insert_order(conn, user_id, total, address_enc, now)
            lines = [
                OrderLine(
                    store.insert_item(conn, order_id, user_id, goods_id, quantity, price, now),
                    goods_id,
                    quantity,
                    price,
                )
                for (goods_id, quantity), price in zip(items, prices, strict=True)
            ]
            if order.wish_ids:
                take_wishes(conn, user_id, order.wish_ids)
            placed = PlacedOrder(order_id, lines, total)
            if idem is not None:
                self._keys.claim(conn, user_id, idem, placed, now)
            ordered = [
                OrderedItem(i.order_item_id, i.goods_id, i.quantity, i.unit_price) for i in lines
            ]
            self._bus.record(conn, OrderPlaced(order_id=order_id, user_id=user_id, items=ordered))
            return placed

        try:
            placed = await self._db.write(write)
        except BaseException as exc:
            # Nothing was stored, so nothing may stay reserved (after a rebuild, nothing is).
            if not isinstance(exc, goods_store.StockEpochChanged):
                for goods_id, quantity in items:
                    await self._stock.release(user_id, goods_id, quantity, epoch)
            if used is not None:
                await self._give_back(used, sold_out=False)
            if isinstance(exc, KeyTaken) and idem is not None:
                replay = await self._keys.replay(user_id, idem)
                if replay is not None:
                    return replay
            raise
        self._bus.notify()
        self._metrics.orders_placed.inc()
        self._metrics.order_items.inc(len(items))
        return placed

    async def _settle(self, used: object) -> None:
        """The units are reserved: the waiting room stops holding them back for this pass
        (if Redis does not answer, the room lets them go after a while by itself)."""
        assert self._gate is not None
        with contextlib.suppress(Exception):
            await self._gate.reserved(used)

    async def _give_back(self, used: object, *, sold_out: bool) -> None:
        """A refused order does not cost the buyer their pass (unless the goods are gone)."""
        assert self._gate is not None
        with contextlib.suppress(Exception):
            await self._gate.give_back(used, sold_out=sold_out)
            return
        log.warning("could not give back a queue pass of user %s", getattr(used, "user_id", "?"))
