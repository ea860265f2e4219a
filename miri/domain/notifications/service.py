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
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from miri.domain.errors import NotFound
from miri.domain.events import (
    ItemShipped,
    PasswordResetRequested,
    PaymentCompleted,
    PaymentRefunded,
)
from miri.domain.notifications import store
from miri.infra.clock import Clock
from miri.infra.crypto import FieldCipher
from miri.infra.database import Database
from miri.infra.mail import Mail, Mailer

RESET_CONTEXT = "password-reset"
Letter = tuple[str, str] | None  # subject, body; None: nothing to tell after all


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
    async def emails(self, user_ids: Collection[int]) -> dict[int, str]: ...


class Items(Protocol):
    async def items(self, order_item_ids: Collection[int]) -> Mapping[int, Item]: ...


def won(amount: int) -> str:
    return f"{amount:,} won"


def _item(event: Any, items: Mapping[int, Item]) -> Item:
    item = items.get(event.order_item_id)
    if item is None:
        raise NotFound(f"no order item {event.order_item_id}")
    return item


def confirmation(event: PaymentCompleted, items: Mapping[int, Item]) -> Letter:
    item = _item(event, items)
    # Orders may not have marked it COMPLETED yet (both consumers get the event); only an item
    # canceled before its payment landed is not confirmed: the refund mail tells.
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


def shipped(event: ItemShipped, items: Mapping[int, Item]) -> Letter:
    item = _item(event, items)
    return (
        f"Shipped: {item.goods_name}",
        f"Your order item {event.order_item_id} is on its way.\n\n"
        f"  Goods:            {item.goods_name} x {item.quantity}\n"
        f"  Carrier:          {event.carrier}\n"
        f"  Tracking number:  {event.tracking_number}\n",
    )


def refunded(event: PaymentRefunded, items: Mapping[int, Item]) -> Letter:
    item = _item(event, items)
    return (
        f"Refunded: {item.goods_name}",
        f"We gave back {won(event.amount)} for order item {event.order_item_id}"
        f" ({item.goods_name} x {item.quantity}).\n\n"
        "Depending on your card issuer it shows on your statement within a few days.\n",
    )


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
        await self.on_payments_completed([event])

    async def on_payments_completed(self, events: Sequence[PaymentCompleted]) -> None:
        """A sale's confirmations: three reads and one write for the lot, not per mail."""
        await self._send(events, "order-confirmed", confirmation)

    async def on_item_shipped(self, event: ItemShipped) -> None:
        await self._send([event], "shipped", shipped)

    async def on_payment_refunded(self, event: PaymentRefunded) -> None:
        await self._send([event], "refunded", refunded)

    async def on_password_reset(self, event: PasswordResetRequested) -> None:
        def letter(event: PasswordResetRequested, items: Mapping[int, Item]) -> Letter:
            token = self._cipher.decrypt(base64.b64decode(event.token_enc), RESET_CONTEXT)
            return (
                "Reset your Miri password",
                "Someone (we hope you) asked to reset the password of your Miri account.\n\n"
                f"Your reset code is:\n\n    {token}\n\n"
                f"It works once, for {self._reset_minutes} minutes. If it was not you, ignore"
                " this mail: your password stays as it is.\n",
            )

        await self._send([event], "password-reset", letter, about_items=False)

    async def _send(
        self,
        events: Sequence[Any],
        kind: str,
        letter: Callable[[Any, Mapping[int, Item]], Letter],
        *,
        about_items: bool = True,
    ) -> None:
        """Mail each event's ``letter`` to its user, unless its mail went out already.

        Every mail that went out is recorded, even when others of the batch failed; then the
        first failure is raised, and the bus delivers the events again one by one (those
        recorded send nothing).
        """
        ids = [e.event_id for e in events]
        done = await self._db.read(lambda c: store.sent_of(c, ids, kind))
        todo = [e for e in events if e.event_id not in done]
        if not todo:
            return
        emails = await self._people.emails({e.user_id for e in todo})
        # An account that is gone has nobody to tell: its events are done without a mail.
        todo_for_someone = [e for e in todo if e.user_id in emails]
        items = (
            await self._items.items({e.order_item_id for e in todo_for_someone})
            if about_items and todo_for_someone
            else {}
        )
        errors: dict[str, BaseException] = {}
        mails: list[Mail] = []
        mailed: list[str] = []
        for e in todo_for_someone:
            try:
                written = letter(e, items)
            except Exception as exc:  # noqa: BLE001 - this event fails; the others go on
                errors[e.event_id] = exc
                continue
            if written is not None:
                subject, body = written
                mails.append((emails[e.user_id], subject, body, f"<{e.event_id}.{kind}@miri>"))
                mailed.append(e.event_id)
        if mails:
            for event_id, error in zip(mailed, await self._mailer.send_many(mails), strict=True):
                if error is not None:
                    errors[event_id] = error
        now = self._clock.timestamp()
        sent = [e.event_id for e in todo if e.event_id not in errors]
        # mail_log is this consumer's mark of a handled event (the others keep handled_events).
        if sent:
            await self._db.write(lambda c: store.mark_all_sent(c, sent, kind, now))
        if errors:
            raise next(iter(errors.values()))
