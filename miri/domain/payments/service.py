"""Payments: the shop's side of paying, the same whichever provider takes the money.

It consumes ``OrderPlaced`` (open a payment per item; the provider begins) and
``OrderItemCanceled`` (abort or refund), opens checkout sessions, applies the provider's
webhooks, and refunds. Outcomes reach orders as events recorded in the same commit as the
change they report.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from miri.domain.errors import InvalidState, NotFound, ValidationFailed
from miri.domain.events import (
    Event,
    ItemReturned,
    OrderedItem,
    OrderItemCanceled,
    OrderPlaced,
    PaymentAborted,
    PaymentCompleted,
    PaymentRefunded,
    PaymentTakenLate,
)
from miri.domain.payments import store
from miri.domain.payments.gateway import PaymentRequest
from miri.domain.payments.provider import (
    SUCCEEDED,
    CheckoutLine,
    CheckoutRequest,
    PaymentProvider,
    ProviderEvent,
    RefundRequest,
    WebhookRefused,
)
from miri.infra.breakers import Breakers
from miri.infra.bus import Bus
from miri.infra.clock import Clock
from miri.infra.database import Database
from miri.infra.metrics import ShopMetrics

log = logging.getLogger(__name__)

# Marks in handled_events: each event takes effect once however often it is delivered.
HANDLED_PLACED = "payments:placed"
HANDLED_CANCELED = "payments:canceled"
HANDLED_WEBHOOK = "payments:webhook"  # the provider's event ids
HANDLED_TAKEN_LATE = "payments:taken-late"
PROVIDER_BREAKER = "payment-provider"


@dataclass(frozen=True)
class PayableItem:
    """An item of the buyer's order as the checkout needs it (the orders read side gives it)."""

    order_item_id: int
    goods_id: int
    goods_name: str
    quantity: int
    unit_price: int
    pending: bool  # still PAYMENT_PENDING at orders

    @property
    def amount(self) -> int:
        return self.unit_price * self.quantity


class AmountMismatch(ValidationFailed):
    def __init__(self, given: int, expected: int) -> None:
        super().__init__(
            "webhook refused: the amount differs from the order's",
            {"amount": f"{given} given, the checkout is for {expected}"},
        )


class PaymentService:
    def __init__(
        self,
        *,
        db: Database,
        bus: Bus,
        provider: PaymentProvider,
        breakers: Breakers,
        clock: Clock,
        metrics: ShopMetrics,
        payment_timeout: int,
    ) -> None:
        self._db = db
        self._bus = bus
        self.provider = provider
        self._breakers = breakers
        self._clock = clock
        self._metrics = metrics
        self._payment_timeout = payment_timeout

    # -- events from orders ---------------------------------------------------------------------
    async def on_order_placed(self, event: OrderPlaced) -> None:
        """Open one payment per item, then let the provider begin (the simulated buyer walks)."""
        await self.on_orders_placed([event])

    async def on_orders_placed(self, events: Sequence[OrderPlaced]) -> None:
        """``on_order_placed`` for many orders: their payments open in one write."""
        now = self._clock.timestamp()

        def open_payments(conn: sqlite3.Connection) -> list[tuple[PaymentRequest, str]]:
            opened = []
            for event in events:
                if not self._bus.first_time(conn, HANDLED_PLACED, event.event_id):
                    # Seen before: resume what is still open (a crash mid-walk), open nothing new.
                    opened += store.still_open(conn, event.order_id)
                    continue
                for item in event.items:
                    request = store.open_payment(conn, item, event.order_id, event.user_id, now)
                    if request is not None:
                        opened.append((request, store.SCREEN_ENTERED))
            return opened

        opened = await self._db.write(open_payments)
        await self.provider.begin(opened)

    async def on_item_canceled(self, event: OrderItemCanceled) -> None:
        """Expiry → PAYMENT_ABORTED (nothing was taken); a buyer's cancel or a late payment →
        refunded."""
        now = self._clock.timestamp()
        if event.reason != "expired":

            def ensure(conn: sqlite3.Connection) -> None:
                # The mark records the delivery; the refund runs on every delivery all the same
                # (it is idempotent), so a crash between this commit and the provider's answer
                # still ends in one refund when the bus delivers again.
                self._bus.first_time(conn, HANDLED_CANCELED, event.event_id)
                # Canceled before its OrderPlaced reached us: a payment that is settled already.
                store.ensure(
                    conn, event.order_item_id, event.order_id, event.user_id, store.REFUNDED, now
                )

            await self._db.write(ensure)
            await self.refund(event.order_item_id)
            return

        def settle(conn: sqlite3.Connection) -> None:
            if not self._bus.first_time(conn, HANDLED_CANCELED, event.event_id):
                return
            # Only a payment still open is aborted; one completed meanwhile is refunded through
            # the late-payment cancel that orders sends for it.
            store.settle(
                conn,
                event.order_item_id,
                event.order_id,
                event.user_id,
                store.ABORTED,
                store.OPEN,
                now,
            )

        await self._db.write(settle)
        self._metrics.payments.labels("payment_aborted").inc()

    async def on_payment_taken_late(self, event: PaymentTakenLate) -> None:
        await self._db.write(
            lambda conn: self._bus.first_time(conn, HANDLED_TAKEN_LATE, event.event_id)
        )
        await self.refund(event.order_item_id)  # idempotent: on every delivery, as above

    async def on_item_returned(self, event: ItemReturned) -> None:
        """A completed return: the goods came back, so does the money."""
        await self.refund(event.order_item_id)

    # -- refunds --------------------------------------------------------------------------------
    async def refund(self, order_item_id: int) -> str | None:
        """Give back what the item's payment took, once; the payment's status after (None: the
        item has no payment).

        Money taken (a completed payment, or one a provider confirmed after the item expired or
        was canceled) goes back through the provider, under one idempotency key per payment, so
        a retry after a crash refunds once; then the payment is REFUNDED. A payment still open
        took nothing and simply becomes REFUNDED; an aborted one stays PAYMENT_ABORTED. Safe to
        call any number of times, from any consumer.
        """
        for _ in range(5):  # each pass loses a race at most to a webhook landing meanwhile
            payment = await self._db.read(lambda conn: store.payment_of(conn, order_item_id))
            if payment is None:
                return None
            if payment.refunded_at is not None:
                return store.REFUNDED
            if not payment.taken and payment.status not in store.OPEN:
                return payment.status  # REFUNDED or PAYMENT_ABORTED with nothing taken
            if payment.taken:
                async with self._breakers.guard(PROVIDER_BREAKER):
                    await self.provider.refund(
                        RefundRequest(
                            payment_id=payment.session_id,
                            order_item_id=order_item_id,
                            amount=payment.amount,
                            idempotency_key=f"refund-{payment.id}",
                        )
                    )
            now = self._clock.timestamp()
            if await self._db.write(lambda conn, p=payment, t=now: self._refunded(conn, p, t)):
                self._metrics.payments.labels("refunded").inc()
                self._bus.notify()
                return store.REFUNDED
        raise RuntimeError(f"the payment of order item {order_item_id} kept changing")

    def _refunded(self, conn: sqlite3.Connection, payment: store.Payment, now: float) -> bool:
        """REFUNDED; money that was taken is told to the buyer (``PaymentRefunded``), once."""
        if not store.refunded(conn, payment, now):
            return False
        if payment.taken:
            self._bus.record(
                conn,
                PaymentRefunded(
                    order_item_id=payment.order_item_id,
                    order_id=payment.order_id,
                    user_id=payment.user_id,
                    amount=payment.amount,
                ),
            )
        return True

    # -- checkout sessions ----------------------------------------------------------------------
    async def open_session(
        self, order_id: int, user_id: int, items: Sequence[PayableItem], ordered_at: float
    ) -> tuple[store.Session, bool]:
        """The order's checkout session and whether it is new: the open one if there is one,
        else a new one at the provider for the items still unpaid. ``InvalidState`` when the
        order is paid, canceled or expired."""
        now = self._clock.timestamp()
        found = await self._db.read(lambda conn: store.session_of_order(conn, order_id))
        if found is not None:
            return self._still_open(found, now), False
        expires_at = ordered_at + self._payment_timeout
        if now >= expires_at:
            raise InvalidState("the order has expired: it can no longer be paid")
        statuses = await self._db.read(lambda conn: store.statuses(conn, order_id))
        payable = [
            i
            for i in items
            if i.pending and statuses.get(i.order_item_id, store.SCREEN_ENTERED) in store.OPEN
        ]
        if not payable:
            raise InvalidState("nothing on this order is left to pay: paid, canceled or expired")
        amount = sum(i.amount for i in payable)
        lines = [CheckoutLine(i.goods_name, i.quantity, i.amount) for i in payable]
        async with self._breakers.guard(PROVIDER_BREAKER):
            opened = await self.provider.open_checkout(
                CheckoutRequest(order_id, amount, lines, expires_at)
            )
        session = store.Session(
            opened.payment_id,
            order_id,
            user_id,
            amount,
            opened.checkout_url,
            store.SESSION_OPEN,
            expires_at,
            now,
        )

        def add(conn: sqlite3.Connection) -> bool:
            for i in payable:  # OrderPlaced may not have reached payments yet
                ordered = OrderedItem(i.order_item_id, i.goods_id, i.quantity, i.unit_price)
                store.open_payment(conn, ordered, order_id, user_id, now)
            return store.add_session(
                conn, session, self.provider.name, [i.order_item_id for i in payable]
            )

        if await self._db.write(add):
            return session, True
        # Another request opened one first: that one is the order's session.
        other = await self._db.read(lambda conn: store.session_of_order(conn, order_id))
        assert other is not None
        return self._still_open(other, now), False

    @staticmethod
    def _still_open(session: store.Session, now: float) -> store.Session:
        if session.status == store.SESSION_PAID:
            raise InvalidState("this order is paid")
        if session.status == store.SESSION_FAILED:
            raise InvalidState("this order's payment failed; the order was canceled")
        if now >= session.expires_at:
            raise InvalidState("the order has expired: it can no longer be paid")
        return session

    async def session(self, payment_id: str) -> store.Session:
        found = await self._db.read(lambda conn: store.session(conn, payment_id))
        if found is None:
            raise NotFound("no such payment")
        return found

    # -- webhooks -------------------------------------------------------------------------------
    async def receive(self, raw: bytes, headers: Mapping[str, str]) -> str:
        """A provider's webhook: verified and read by the provider, applied once per event id
        in one commit with the events it sends orders. Returns what it did (for the log)."""
        now = self._clock.timestamp()
        try:
            event = self.provider.read_event(raw, headers, now)
        except WebhookRefused as exc:
            log.warning("payment webhook refused: %s", exc.message)  # a forger, or a wrong secret
            raise
        if event is None:
            return "ignored"
        notify: list[Event] = []

        def apply(conn: sqlite3.Connection) -> str:
            if not self._bus.first_time(conn, HANDLED_WEBHOOK, event.event_id):
                return "repeated"
            session = store.session(conn, event.payment_id)
            if session is None:
                raise NotFound("no such payment")  # the mark above is rolled back with it
            if event.type == SUCCEEDED:
                return self._paid(conn, event, session, now, notify)
            return self._failed(conn, event, session, now, notify)

        try:
            done = await self._db.write(apply)
        except AmountMismatch:
            log.warning(
                "payment %s: webhook %s refused, amount %s differs from the checkout's",
                event.payment_id,
                event.event_id,
                event.amount,
            )
            raise
        if notify:
            self._bus.notify()
        for e in notify:
            if isinstance(e, (PaymentCompleted, PaymentAborted)):
                label = "completed" if isinstance(e, PaymentCompleted) else "aborted"
                self._metrics.payments.labels(label).inc()
        return done

    def _paid(
        self,
        conn: sqlite3.Connection,
        event: ProviderEvent,
        session: store.Session,
        now: float,
        notify: list[Event],
    ) -> str:
        if event.amount != session.amount:
            raise AmountMismatch(event.amount, session.amount)
        store.end_session(conn, session.payment_id, store.SESSION_PAID, now)
        for p in store.session_payments(conn, session.payment_id):
            if not store.mark_paid(conn, p.id, now):
                continue  # recorded by an earlier event for this payment
            who = {"order_item_id": p.order_item_id, "order_id": p.order_id, "user_id": p.user_id}
            e: Event
            if p.status in store.OPEN:
                store.move(conn, p.id, store.OPEN, store.COMPLETED, now)
                e = PaymentCompleted(**who)
            else:
                # The item expired or was canceled before the money came: it goes back (and
                # orders is not told of a payment for an item it no longer sells).
                e = PaymentTakenLate(**who)
            self._bus.record(conn, e)
            notify.append(e)
        return "paid"

    def _failed(
        self,
        conn: sqlite3.Connection,
        event: ProviderEvent,
        session: store.Session,
        now: float,
        notify: list[Event],
    ) -> str:
        if not store.end_session(conn, session.payment_id, store.SESSION_FAILED, now):
            return "ignored"  # paid already: a failure afterwards changes nothing
        for p in store.session_payments(conn, session.payment_id):
            if p.paid_at is None and store.move(conn, p.id, store.OPEN, store.ABORTED, now):
                e = PaymentAborted(
                    order_item_id=p.order_item_id,
                    order_id=p.order_id,
                    user_id=p.user_id,
                    reason="the payment failed at the provider",
                )
                self._bus.record(conn, e)
                notify.append(e)
        return "failed"

    async def outcomes(self) -> dict[str, int]:
        """How many payments are in each status."""
        return await self._db.read(store.outcomes)
