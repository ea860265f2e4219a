"""Builds the payments module with the provider the settings name (``MIRI_PAYMENT_PROVIDER``)."""

from __future__ import annotations

from miri.config import Settings
from miri.domain.payments import providers
from miri.domain.payments.provider import ProviderContext
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
    context = ProviderContext(
        settings=settings, db=db, bus=bus, breakers=breakers, clock=clock, metrics=metrics
    )
    return PaymentService(
        db=db,
        bus=bus,
        provider=providers.load(settings.payment_provider, context),
        breakers=breakers,
        clock=clock,
        metrics=metrics,
        payment_timeout=settings.payment_timeout,
    )
