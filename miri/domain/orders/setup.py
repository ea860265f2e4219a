"""Builds orders and payments on an open shop, and the scheduled jobs that drive them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from miri.domain.orders.service import OrderService
from miri.domain.payments.gateway import SimulatedGateway
from miri.domain.payments.service import PaymentService
from miri.infra.scheduler import Jobs

if TYPE_CHECKING:
    from miri.shop import Shop

PAYMENT_EXPIRY_EVERY = 60.0


def build(shop: Shop) -> None:
    s = shop.settings
    shop.payments = PaymentService(
        db=shop.db,
        bus=shop.bus,
        gateway=SimulatedGateway(s.payment_abandon_rate, s.payment_seed, s.payment_delay),
        breakers=shop.breakers,
        clock=shop.clock,
        metrics=shop.metrics,
    )
    shop.orders = OrderService(
        db=shop.db,
        redis=shop.redis.client,
        bus=shop.bus,
        goods=shop.goods,
        wishlist=shop.wishlist,
        cipher=shop.extras["cipher"],
        clock=shop.clock,
        metrics=shop.metrics,
        timezone=s.timezone,
        payment_timeout=s.payment_timeout,
    )
    shop.extras.setdefault("my_page_parts", {})["orders"] = shop.orders.first_page

    async def stock_sync(as_of: datetime | None) -> dict[str, int]:
        return {"written": await shop.goods.sync_stock()}

    jobs = Jobs(s.timezone)
    jobs.daily(
        "shipping",
        shop.orders.run_shipping,
        hour=6,
        description="moves each paid item one shipping step if its status is a day old",
    )
    jobs.daily(
        "returns",
        shop.orders.run_returns,
        hour=6,
        description="completes returns asked for a day ago; their stock goes back",
    )
    jobs.every(
        "payment-expiry",
        shop.orders.expire_unpaid,
        seconds=PAYMENT_EXPIRY_EVERY,
        description="aborts items still unpaid after the payment timeout",
    )
    jobs.every(
        "stock-sync",
        stock_sync,
        seconds=s.stock_sync_interval,
        description="writes live stock of changed goods back to the database",
    )
    shop.jobs = jobs
