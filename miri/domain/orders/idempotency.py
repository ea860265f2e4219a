"""``Idempotency-Key``: a retried order gets the first answer, and one request per key runs.

The first answer (the placed order, or a refusal worth replaying) is stored with the key for 24
hours. The stored body is the answer as clients saw it (the API's camelCase order), so keys
stored by earlier versions replay the same bytes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from miri.domain import errors
from miri.domain.errors import IdempotencyConflict, NotFound, ShopError
from miri.domain.orders import store
from miri.domain.orders.model import Idempotency, OrderLine, PlacedOrder
from miri.infra import keys
from miri.infra.clock import Clock
from miri.infra.database import Database

WINDOW = 24 * 3600
IN_FLIGHT_LOCK = 30  # seconds a request may hold its Idempotency-Key
IN_FLIGHT_WAIT = 10.0  # seconds a concurrent request with that key waits for the answer
PLACED = 201  # the status stored with a placed order; refusals are stored with 0
# Refusals worth replaying for a retried Idempotency-Key: the first answer stands.
REPLAYABLE: dict[str, type[ShopError]] = {
    e.code: e for e in (errors.SoldOut, errors.SaleNotOpen, errors.LimitExceeded, NotFound)
}


class KeyTaken(Exception):
    """Another request with the same Idempotency-Key committed first."""


def _stored(order: PlacedOrder) -> str:
    lines = [
        {
            "orderDetailId": i.order_item_id,
            "goodsId": i.goods_id,
            "quantity": i.quantity,
            "unitPrice": i.unit_price,
            "status": i.status,
        }
        for i in order.items
    ]
    return orjson.dumps(
        {"orderId": order.order_id, "items": lines, "totalPrice": order.total_price}
    ).decode()


def _placed(body: dict[str, Any]) -> PlacedOrder:
    lines = [
        OrderLine(i["orderDetailId"], i["goodsId"], i["quantity"], i["unitPrice"], i["status"])
        for i in body["items"]
    ]
    return PlacedOrder(body["orderId"], lines, body["totalPrice"])


class IdempotencyKeys:
    def __init__(self, *, db: Database, redis: Redis, clock: Clock) -> None:
        self._db = db
        self._redis = redis
        self._clock = clock

    async def once(
        self, user_id: int, idem: Idempotency, place: Callable[[], Awaitable[PlacedOrder]]
    ) -> PlacedOrder:
        """The stored answer for this key, or ``place()``'s, run by one request at a time.

        The others wait for its answer and replay it, so concurrent retries never reserve stock
        they would have to give back.
        """
        replay = await self.replay(user_id, idem)
        if replay is not None:
            return replay
        lock = keys.idempotency_lock(user_id, idem.key)
        deadline = time.monotonic() + IN_FLIGHT_WAIT
        while not await self._redis.set(lock, "1", nx=True, ex=IN_FLIGHT_LOCK):
            if time.monotonic() > deadline:
                raise IdempotencyConflict(
                    "a request with this Idempotency-Key is still in progress"
                )
            await asyncio.sleep(0.02)
            replay = await self.replay(user_id, idem)
            if replay is not None:
                return replay
        try:
            replay = await self.replay(user_id, idem)
            if replay is not None:
                return replay
            return await place()
        finally:
            await self._redis.delete(lock)

    async def replay(self, user_id: int, idem: Idempotency) -> PlacedOrder | None:
        """The first answer for this key (a refusal is raised again), or None if the key is new
        (or older than 24 hours)."""
        horizon = self._clock.timestamp() - WINDOW
        row = await self._db.read(lambda c: store.find_key(c, user_id, idem.key, horizon))
        if row is None:
            return None
        if row["request_hash"] != idem.request_hash:
            raise IdempotencyConflict()
        body = orjson.loads(row["body"])
        if row["status"] != PLACED:
            error = REPLAYABLE.get(body["error"], ShopError)
            raise error(body["msg"], body.get("data"))
        return _placed(body)

    def claim(
        self,
        conn: sqlite3.Connection,
        user_id: int,
        idem: Idempotency,
        order: PlacedOrder,
        now: float,
    ) -> None:
        """Store the placed order under the key, in the transaction that stores the order."""
        self._claim(conn, user_id, idem, PLACED, _stored(order), now)

    async def remember_refusal(self, user_id: int, idem: Idempotency, exc: ShopError) -> None:
        if exc.code not in REPLAYABLE:
            return
        now = self._clock.timestamp()
        body = orjson.dumps({"error": exc.code, "msg": exc.message, "data": exc.data}).decode()
        try:
            await self._db.write(lambda c: self._claim(c, user_id, idem, 0, body, now))
        except KeyTaken:
            pass  # a concurrent request with this key answered first; its answer stands

    @staticmethod
    def _claim(
        conn: sqlite3.Connection,
        user_id: int,
        idem: Idempotency,
        status: int,
        body: str,
        now: float,
    ) -> None:
        if not store.claim_key(
            conn, user_id, idem.key, idem.request_hash, status, body, now, now - WINDOW
        ):
            raise KeyTaken()
