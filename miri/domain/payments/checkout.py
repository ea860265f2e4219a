"""One payment's walk through the gateway: screen, pay, and the outcome that tells orders."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence

from miri.domain.events import Event, PaymentAborted, PaymentCompleted
from miri.domain.payments import store
from miri.domain.payments.gateway import PaymentGateway, PaymentRequest
from miri.infra.breakers import Breakers
from miri.infra.bus import Bus
from miri.infra.clock import Clock
from miri.infra.database import Database
from miri.infra.metrics import ShopMetrics


class Checkout:
    def __init__(
        self,
        *,
        db: Database,
        bus: Bus,
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

    async def walk(self, request: PaymentRequest, order_id: int, status: str) -> None:
        """From ``status`` on: a walk cut short by a crash resumes where it stopped."""
        if status == store.SCREEN_ENTERED:
            if not await self._ask(self.gateway.enter_screen, request):
                await self._end(request, order_id, "the buyer left the payment screen")
                return
            if not await self._step(request, (store.SCREEN_ENTERED,), store.IN_PROGRESS):
                return
        if not await self._ask(self.gateway.pay, request):
            await self._end(request, order_id, "the buyer abandoned during payment")
            return
        await self._end(request, order_id, None)

    async def _ask(
        self, step: Callable[[PaymentRequest], Awaitable[bool]], request: PaymentRequest
    ) -> bool:
        async with self._breakers.guard("payment-gateway"):
            return await step(request)

    async def _end(self, request: PaymentRequest, order_id: int, abandoned: str | None) -> None:
        """The last step: PAYMENT_COMPLETED, or PAYMENT_ABORTED when the buyer ``abandoned``
        (the reason); either way with the event that tells orders."""
        who = {
            "order_item_id": request.order_item_id,
            "order_id": order_id,
            "user_id": request.user_id,
        }
        if abandoned is None:
            old, new, label = (store.IN_PROGRESS,), store.COMPLETED, "completed"
            event: Event = PaymentCompleted(**who)
        else:
            old, new, label = store.OPEN, store.ABORTED, "aborted"
            event = PaymentAborted(**who, reason=abandoned)
        if await self._step(request, old, new, event):
            self._metrics.payments.labels(label).inc()

    async def _step(
        self,
        request: PaymentRequest,
        old: Sequence[str],
        new: str,
        event: Event | None = None,
    ) -> bool:
        """``old`` -> ``new`` with ``event`` in the same commit; False if a cancel or an expiry
        moved the payment first (then nothing is recorded)."""
        now = self._clock.timestamp()

        def step(conn: sqlite3.Connection) -> bool:
            if not store.move(conn, request.payment_id, old, new, now):
                return False
            if event is not None:
                self._bus.record(conn, event)
            return True

        moved = await self._db.write(step)
        if moved and event is not None:
            self._bus.notify()
        return moved
