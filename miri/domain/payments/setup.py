"""Builds the payments module with the simulated buyer the settings describe."""

from __future__ import annotations

from miri.config import Settings
from miri.domain.payments.checkout import Checkout
from miri.domain.payments.gateway import SimulatedGateway
from miri.domain.payments.service import PaymentService
from miri.infra.breakers import Breakers
from miri.infra.bus import Bus
from miri.infra.clock import Clock
from miri.infra.database import Database
from miri.infra.metrics import ShopMetrics


def build(
    *,
    db: Database,
    bus: Bus,
    breakers: Breakers,
    clock: Clock,
    metrics: ShopMetrics,
    settings: Settings,
) -> PaymentService:
    gateway = SimulatedGateway(
        settings.payment_abandon_rate, settings.payment_seed, settings.payment_delay
    )
    checkout = Checkout(
        db=db, bus=bus, gateway=gateway, breakers=breakers, clock=clock, metrics=metrics
    )
    return PaymentService(db=db, bus=bus, checkout=checkout, clock=clock, metrics=metrics)
