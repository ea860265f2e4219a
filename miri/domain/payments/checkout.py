"""The payments' walk through the gateway: screen, pay, and the outcome that tells orders.

Payments opened together (one order's, or a sale's many at once) walk together: the gateway is
asked for each, and each step's moves are one write, so a thousand walks cost a few commits.
"""

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

LEFT_SCREEN = "the buyer left the payment screen"
ABANDONED = "the buyer abandoned during payment"

# One payment's move: (request, from any of these statuses, to this one, the event it sends).
Move = tuple[PaymentRequest, Sequence[str], str, Event | None]


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

    async def walk(self, opened: Sequence[tuple[PaymentRequest, str]]) -> None:
        """Each payment from the status it is at: a walk cut short by a crash resumes there."""
        at_screen = [r for r, status in opened if status == store.SCREEN_ENTERED]
        paying = [r for r, status in opened if status == store.IN_PROGRESS]
        if at_screen:
            entered = await self._ask(self.gateway.enter_screens, at_screen)
            moved = await self._steps(
                [
                    (r, (store.SCREEN_ENTERED,), store.IN_PROGRESS, None)
                    if ok
                    else _abort(r, LEFT_SCREEN)
                    for r, ok in zip(at_screen, entered, strict=True)
                ]
            )
            # A payment canceled or expired meanwhile did not move: its walk ends here.
            paying += [r for r, ok, m in zip(at_screen, entered, moved, strict=True) if ok and m]
        if paying:
            paid = await self._ask(self.gateway.pays, paying)
            await self._steps(
                [
                    _complete(r) if ok else _abort(r, ABANDONED)
                    for r, ok in zip(paying, paid, strict=True)
                ]
            )

    async def _ask(
        self,
        step: Callable[[Sequence[PaymentRequest]], Awaitable[list[bool]]],
        requests: list[PaymentRequest],
    ) -> list[bool]:
        # One guard for the lot: a gateway that fails fails them all (the bus retries them).
        async with self._breakers.guard("payment-gateway"):
            answers = await step(requests)
        if len(answers) != len(requests):
            raise RuntimeError(f"the gateway answered {len(answers)} of {len(requests)} payments")
        return answers

    async def _steps(self, moves: list[Move]) -> list[bool]:
        """Every move in one write, each with its event in the same commit; False for a
        payment a cancel or an expiry moved first (then nothing is recorded for it)."""
        now = self._clock.timestamp()

        def step(conn: sqlite3.Connection) -> list[bool]:
            done = []
            for request, old, new, event in moves:
                moved = store.move(conn, request.payment_id, old, new, now)
                if moved and event is not None:
                    self._bus.record(conn, event)
                done.append(moved)
            return done

        moved = await self._db.write(step)
        told = False
        for (_, _, _, event), m in zip(moves, moved, strict=True):
            if m and event is not None:
                told = True
                label = "completed" if isinstance(event, PaymentCompleted) else "aborted"
                self._metrics.payments.labels(label).inc()
        if told:
            self._bus.notify()
        return moved


def _who(request: PaymentRequest) -> dict[str, int]:
    return {
        "order_item_id": request.order_item_id,
        "order_id": request.order_id,
        "user_id": request.user_id,
    }


def _complete(request: PaymentRequest) -> Move:
    return (request, (store.IN_PROGRESS,), store.COMPLETED, PaymentCompleted(**_who(request)))


def _abort(request: PaymentRequest, reason: str) -> Move:
    """PAYMENT_ABORTED from wherever the walk is, with the event that gives the stock back."""
    return (request, store.OPEN, store.ABORTED, PaymentAborted(**_who(request), reason=reason))
