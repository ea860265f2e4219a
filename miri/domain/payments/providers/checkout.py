"""The built-in test provider: a hosted checkout with signed webhooks, as real providers run one.

Two sides, kept apart as if a network ran between them. The shop's side (``open_checkout``,
``read_event``, ``refund``) is what a real provider's adapter implements. The provider's side
(``checkout_page``, ``answer``) is what the provider runs at home: its checkout page at
``/pay/{paymentId}`` and, when the buyer presses a button, the signed webhook it sends the shop.
It keeps its own records (``provider_checkouts``, ``provider_refunds``), never the shop's.
"""

from __future__ import annotations

import secrets as random_ids
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from miri.domain.errors import InvalidState, NotFound
from miri.domain.payments import signature
from miri.domain.payments.gateway import PaymentRequest
from miri.domain.payments.provider import (
    FAILED,
    SUCCEEDED,
    CheckoutLine,
    CheckoutRequest,
    CheckoutSession,
    ProviderContext,
    ProviderEvent,
    RefundRequest,
    WebhookRefused,
)
from miri.infra import secrets
from miri.infra.clock import Clock
from miri.infra.database import Database

PAGE_PATH = "/pay/"
MAX_ID = 100  # characters of an event or payment id


@dataclass(frozen=True)
class CheckoutPage:
    """What the provider's checkout page shows."""

    payment_id: str
    amount: int
    lines: list[CheckoutLine]
    status: str  # OPEN, PAID or CANCELED
    expired: bool


@dataclass(frozen=True)
class Webhook:
    """A signed webhook, ready to send to the shop."""

    body: bytes
    headers: dict[str, str]


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID:
        raise WebhookRefused(key, f"must be a string of 1 to {MAX_ID} characters")
    return value


def read_body(raw: bytes) -> ProviderEvent:
    """The event a verified body carries: ``{eventId, type, paymentId, amount}``."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise WebhookRefused("body", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookRefused("body", "the body must be a JSON object")
    kind = data.get("type")
    if kind not in (SUCCEEDED, FAILED):
        raise WebhookRefused("type", f"must be {SUCCEEDED} or {FAILED}")
    amount = data.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise WebhookRefused("amount", "must be a whole number of won, 0 or more")
    return ProviderEvent(_text(data, "eventId"), kind, _text(data, "paymentId"), amount)


class CheckoutTestProvider:
    name = "checkout"

    def __init__(self, *, db: Database, clock: Clock, secret: str) -> None:
        self._db = db
        self._clock = clock
        self._secret = secret

    # -- the shop's side: what any provider's adapter does --------------------------------------
    async def begin(self, opened: Sequence[tuple[PaymentRequest, str]]) -> None:
        return None  # the buyer opens a session and pays on the checkout page

    async def open_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        payment_id = "pay_" + random_ids.token_urlsafe(18)  # unguessable: the page needs no login
        lines = orjson.dumps(
            [
                {"goodsName": x.goods_name, "quantity": x.quantity, "amount": x.amount}
                for x in request.lines
            ]
        ).decode()
        now = self._clock.timestamp()
        await self._db.write(
            lambda conn: conn.execute(
                "INSERT INTO provider_checkouts (id, amount, lines, status, expires_at,"
                " created_at, updated_at) VALUES (?, ?, ?, 'OPEN', ?, ?, ?)",
                (payment_id, request.amount, lines, request.expires_at, now, now),
            )
        )
        return CheckoutSession(payment_id, PAGE_PATH + payment_id)

    def read_event(self, raw: bytes, headers: Mapping[str, str], now: float) -> ProviderEvent:
        signature.verify(self._secret, headers.get(signature.HEADER), raw, now)
        return read_body(raw)

    async def refund(self, request: RefundRequest) -> None:
        now = self._clock.timestamp()
        await self._db.write(
            lambda conn: conn.execute(
                "INSERT INTO provider_refunds (idempotency_key, checkout_id, amount, created_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
                (request.idempotency_key, request.payment_id or "", request.amount, now),
            )
        )

    # -- the provider's side: its checkout page and buttons -------------------------------------
    async def checkout_page(self, payment_id: str) -> CheckoutPage:
        row = await self._db.read(
            lambda conn: conn.execute(
                "SELECT amount, lines, status, expires_at FROM provider_checkouts WHERE id = ?",
                (payment_id,),
            ).fetchone()
        )
        if row is None:
            raise NotFound("no such checkout")
        lines = [
            CheckoutLine(x["goodsName"], x["quantity"], x["amount"]) for x in orjson.loads(row[1])
        ]
        expired = row[2] == "OPEN" and self._clock.timestamp() > row[3]
        return CheckoutPage(payment_id, row[0], lines, row[2], expired)

    async def answer(self, payment_id: str, *, pay: bool) -> Webhook:
        """The buyer pressed Pay (``pay``) or Cancel: record it, and sign the webhook that tells
        the shop. Pressed again, the same event goes again (the shop applies it once)."""
        wanted = "PAID" if pay else "CANCELED"
        now = self._clock.timestamp()

        def decide(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT amount, status, expires_at FROM provider_checkouts WHERE id = ?",
                (payment_id,),
            ).fetchone()
            if row is None:
                raise NotFound("no such checkout")
            amount, status, expires_at = row
            if status == "OPEN":
                if now > expires_at:
                    raise InvalidState("this checkout has expired; nothing was paid")
                conn.execute(
                    "UPDATE provider_checkouts SET status = ?, updated_at = ?"
                    " WHERE id = ? AND status = 'OPEN'",
                    (wanted, now, payment_id),
                )
            elif status != wanted:
                raise InvalidState(f"this checkout was {status.lower()} already")
            return amount

        amount = await self._db.write(decide)
        event = {
            "eventId": f"evt_{payment_id}_{wanted.lower()}",
            "type": SUCCEEDED if pay else FAILED,
            "paymentId": payment_id,
            "amount": amount,
        }
        return self.signed(event, int(now))

    def signed(self, event: dict[str, Any], t: int) -> Webhook:
        """``event`` as the provider sends it: the body and its ``Miri-Signature`` at ``t``."""
        body = orjson.dumps(event)
        headers = {
            "Content-Type": "application/json",
            signature.HEADER: signature.sign(self._secret, body, t),
        }
        return Webhook(body, headers)


def provider(context: ProviderContext) -> CheckoutTestProvider:
    secret = secrets.payment_webhook_secret(context.settings)
    return CheckoutTestProvider(db=context.db, clock=context.clock, secret=secret)
