"""The mail consumer: one mail per event, sent after the change that caused it committed.

Events reach it through the outbox, so a change that rolled back mails nothing. A mail server
that is down makes the handler fail and the bus retry it (with back-off, then a dead letter that
can be replayed). ``mail_log`` records each mail once it was handed to the server, and a
delivery that finds its event there sends nothing: a retried event is not mailed twice. (Only a
crash between the server's "250 OK" and that commit can repeat one; the mail carries a
Message-ID made from the event id, so the buyer's mail client shows it once.)
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Protocol

from miri.domain.errors import NotFound
from miri.domain.events import (
    Event,
    ItemShipped,
    PasswordResetRequested,
    PaymentCompleted,
    PaymentRefunded,
)
from miri.domain.notifications import store
from miri.infra.clock import Clock
from miri.infra.crypto import FieldCipher
from miri.infra.database import Database
from miri.infra.mail import Mailer

RESET_CONTEXT = "password-reset"
Letter = tuple[str, str] | None  # subject, body; None: nothing to tell after all


class Buyer(Protocol):
    @property
    def email(self) -> str: ...

    @property
    def user_name(self) -> str: ...


class Item(Protocol):
    @property
    def order_status(self) -> str: ...

    @property
    def goods_name(self) -> str: ...

    @property
    def quantity(self) -> int: ...

    @property
    def sub_total_price(self) -> int: ...


class People(Protocol):
    async def profile(self, user_id: int) -> Buyer: ...


class Items(Protocol):
    async def get(self, user_id: int | None, order_item_id: int) -> Item: ...


def won(amount: int) -> str:
    return f"{amount:,} won"


class Notifications:
    def __init__(
        self,
        *,
        db: Database,
        mailer: Mailer,
        people: People,
        items: Items,
        cipher: FieldCipher,
        clock: Clock,
        reset_minutes: int = 30,
    ) -> None:
        self._db = db
        self._mailer = mailer
        self._people = people
        self._items = items
        self._cipher = cipher
        self._clock = clock
        self._reset_minutes = reset_minutes

    async def on_payment_completed(self, event: PaymentCompleted) -> None:
        async def letter() -> Letter:
            item = await self._items.get(None, event.order_item_id)
            # Orders may not have marked it COMPLETED yet (both consumers get the event); only an
            # item canceled before its payment landed is not confirmed: the refund mail tells.
            if item.order_status == "CANCELED":
                return None
            return (
                f"Order confirmed: {item.goods_name}",
                f"Your payment is complete and your order is confirmed.\n\n"
                f"  Order item:  {event.order_item_id} (order {event.order_id})\n"
                f"  Goods:       {item.goods_name} x {item.quantity}\n"
                f"  Paid:        {won(item.sub_total_price)}\n\n"
                "We will mail you the tracking number when it ships.\n",
            )

        await self._once(event, "order-confirmed", event.user_id, letter)

    async def on_item_shipped(self, event: ItemShipped) -> None:
        async def letter() -> Letter:
            item = await self._items.get(None, event.order_item_id)
            return (
                f"Shipped: {item.goods_name}",
                f"Your order item {event.order_item_id} is on its way.\n\n"
                f"  Goods:            {item.goods_name} x {item.quantity}\n"
                f"  Carrier:          {event.carrier}\n"
                f"  Tracking number:  {event.tracking_number}\n",
            )

        await self._once(event, "shipped", event.user_id, letter)

    async def on_payment_refunded(self, event: PaymentRefunded) -> None:
        async def letter() -> Letter:
            item = await self._items.get(None, event.order_item_id)
            return (
                f"Refunded: {item.goods_name}",
                f"We gave back {won(event.amount)} for order item {event.order_item_id}"
                f" ({item.goods_name} x {item.quantity}).\n\n"
                "Depending on your card issuer it shows on your statement within a few days.\n",
            )

        await self._once(event, "refunded", event.user_id, letter)

    async def on_password_reset(self, event: PasswordResetRequested) -> None:
        async def letter() -> Letter:
            token = self._cipher.decrypt(base64.b64decode(event.token_enc), RESET_CONTEXT)
            return (
                "Reset your Miri password",
                "Someone (we hope you) asked to reset the password of your Miri account.\n\n"
                f"Your reset code is:\n\n    {token}\n\n"
                f"It works once, for {self._reset_minutes} minutes. If it was not you, ignore"
                " this mail: your password stays as it is.\n",
            )

        await self._once(event, "password-reset", event.user_id, letter)

    async def _once(
        self, event: Event, kind: str, user_id: int, letter: Callable[[], Awaitable[Letter]]
    ) -> None:
        """Send ``letter`` to the user unless this event's mail went out already."""
        if await self._db.read(lambda c: store.sent(c, event.event_id, kind)):
            return
        written: Letter = None
        try:
            to = (await self._people.profile(user_id)).email
        except NotFound:  # the account is gone: nobody to tell
            pass
        else:
            written = await letter()
        if written is not None:
            subject, body = written
            await self._mailer.send(to, subject, body, message_id=f"<{event.event_id}.{kind}@miri>")
        now = self._clock.timestamp()

        # mail_log is this consumer's mark of a handled event (the others keep handled_events).
        await self._db.write(lambda c: store.mark_sent(c, event.event_id, kind, now))
