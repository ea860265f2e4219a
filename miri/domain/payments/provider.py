"""The payment provider seam: what the shop asks of whoever takes the money.

A provider opens checkout sessions (the page where the buyer pays), tells the shop how a payment
ended through a signed webhook the shop verifies and reads here, and gives money back. Each
provider is one module in ``miri/domain/payments/providers/`` named by ``MIRI_PAYMENT_PROVIDER``;
its ``provider(context)`` builds it. The shop's side of the protocol (sessions, statuses, the
outbox, refund bookkeeping) lives in ``service.py`` and is the same for every provider.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from miri.config import Settings
from miri.domain.errors import ValidationFailed
from miri.domain.payments.gateway import PaymentRequest
from miri.infra.breakers import Breakers
from miri.infra.bus import Bus
from miri.infra.clock import Clock
from miri.infra.database import Database
from miri.infra.metrics import ShopMetrics

SUCCEEDED = "payment.succeeded"
FAILED = "payment.failed"
EVENT_TYPES = (SUCCEEDED, FAILED)


@dataclass(frozen=True)
class CheckoutLine:
    """One line on the checkout page: the goods, how many, what they cost together."""

    goods_name: str
    quantity: int
    amount: int


@dataclass(frozen=True)
class CheckoutRequest:
    order_id: int
    amount: int  # the sum of the lines: what the provider must take, no more, no less
    lines: Sequence[CheckoutLine]
    expires_at: float  # epoch seconds; the provider takes no payment after it


@dataclass(frozen=True)
class CheckoutSession:
    payment_id: str  # the provider's id of the session; the API's paymentId
    checkout_url: str  # where the buyer pays; a path is relative to the shop's own address


@dataclass(frozen=True)
class ProviderEvent:
    """A webhook, verified and read: the provider says how a payment ended."""

    event_id: str  # the provider's id: the shop applies each once
    type: str  # SUCCEEDED or FAILED
    payment_id: str
    amount: int


@dataclass(frozen=True)
class RefundRequest:
    payment_id: str | None  # the checkout session that took the money (None: no session)
    order_item_id: int
    amount: int
    idempotency_key: str  # one refund per key at the provider, however often it is asked


class WebhookRefused(ValidationFailed):
    """The webhook did not verify (signature, timestamp) or cannot be read: nothing changes."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"webhook refused: {reason}", {field: reason})


class PaymentProvider(Protocol):
    name: str

    async def begin(self, opened: Sequence[tuple[PaymentRequest, str]]) -> None:
        """Payments were opened, of one order or of many (each with the status it is at). The
        simulated buyer walks them now; a hosted checkout waits for the buyer to open a
        session."""

    async def open_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        """A new checkout session at the provider; raises ``InvalidState`` if it has none."""

    def read_event(
        self, raw: bytes, headers: Mapping[str, str], now: float
    ) -> ProviderEvent | None:
        """Verify the webhook's signature over the raw body, then read it; ``WebhookRefused``
        when either fails. None for a verified event the shop does not act on (a provider
        sends many kinds): answered 200, nothing changes."""

    async def refund(self, request: RefundRequest) -> None:
        """Give ``request.amount`` back; asked twice with one idempotency key, refund once."""


@dataclass(frozen=True)
class ProviderContext:
    """What a provider module may build itself from."""

    settings: Settings
    db: Database
    bus: Bus
    breakers: Breakers
    clock: Clock
    metrics: ShopMetrics
