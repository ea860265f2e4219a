"""Builds the orders module: one object per job, sharing the store and the goods module's stock."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from miri.domain.orders.changes import Changes
from miri.domain.orders.fulfilment import Fulfilment
from miri.domain.orders.idempotency import IdempotencyKeys
from miri.domain.orders.lifecycle import Lifecycle
from miri.domain.orders.model import Catalogue, Gate, Refunds, Stock, Wishlist
from miri.domain.orders.outcomes import PaymentOutcomes
from miri.domain.orders.placing import Placing
from miri.infra.bus import Bus
from miri.infra.clock import Clock
from miri.infra.crypto import FieldCipher
from miri.infra.database import Database
from miri.infra.metrics import ShopMetrics


@dataclass(frozen=True)
class Orders:
    placing: Placing  # place, place from the wishlist (the hot path)
    changes: Changes  # cancel, ask for a return
    outcomes: PaymentOutcomes  # the bus handlers for payment outcomes
    lifecycle: Lifecycle  # the scheduled runs: payment expiry, shipping, returns
    fulfilment: Fulfilment  # sellers and admins ship by hand (carrier, tracking number)


def build(
    *,
    db: Database,
    redis: Redis,
    bus: Bus,
    stock: Stock,
    catalogue: Catalogue,
    wishlist: Wishlist,
    cipher: FieldCipher,
    clock: Clock,
    metrics: ShopMetrics,
    payment_timeout: int,
    gate: Gate | None = None,
    refunds: Refunds | None = None,
) -> Orders:
    keys = IdempotencyKeys(db=db, redis=redis, clock=clock)
    return Orders(
        placing=Placing(
            db=db,
            bus=bus,
            stock=stock,
            wishlist=wishlist,
            keys=keys,
            cipher=cipher,
            clock=clock,
            metrics=metrics,
            gate=gate,
        ),
        changes=Changes(db=db, bus=bus, stock=stock, clock=clock, refunds=refunds),
        outcomes=PaymentOutcomes(db=db, bus=bus, stock=stock, clock=clock),
        lifecycle=Lifecycle(
            db=db, bus=bus, stock=stock, clock=clock, payment_timeout=payment_timeout
        ),
        fulfilment=Fulfilment(db=db, bus=bus, catalogue=catalogue, clock=clock),
    )
