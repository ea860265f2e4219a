"""The original shop's simulated buyer as a provider: it walks each payment behind the order.

It abandons at each of two steps with ``MIRI_PAYMENT_ABANDON_RATE``; no checkout page, no
webhooks, and a refund takes nothing back from anyone. For benchmarks and demos.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from miri.domain.errors import InvalidState
from miri.domain.payments.checkout import Checkout
from miri.domain.payments.gateway import PaymentRequest, SimulatedGateway
from miri.domain.payments.provider import (
    CheckoutRequest,
    CheckoutSession,
    ProviderContext,
    ProviderEvent,
    RefundRequest,
    WebhookRefused,
)


class SimulatedProvider:
    name = "simulated"

    def __init__(self, walk: Checkout) -> None:
        self.walk = walk

    async def begin(self, opened: Sequence[tuple[PaymentRequest, str]]) -> None:
        await self.walk.walk(opened)

    async def open_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        raise InvalidState(
            "payments on this shop are simulated: the simulated buyer pays behind each order"
            " (MIRI_PAYMENT_PROVIDER=checkout gives a checkout page)"
        )

    def read_event(self, raw: bytes, headers: Mapping[str, str], now: float) -> ProviderEvent:
        raise WebhookRefused("provider", "payments on this shop are simulated; no webhooks")

    async def refund(self, request: RefundRequest) -> None:
        return None  # the simulated buyer's money is imaginary


def provider(context: ProviderContext) -> SimulatedProvider:
    s = context.settings
    gateway = SimulatedGateway(s.payment_abandon_rate, s.payment_seed, s.payment_delay)
    walk = Checkout(
        db=context.db,
        bus=context.bus,
        gateway=gateway,
        breakers=context.breakers,
        clock=context.clock,
        metrics=context.metrics,
    )
    return SimulatedProvider(walk)
