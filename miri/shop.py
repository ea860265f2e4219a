"""The composition root: ``open_shop(settings)`` builds infrastructure and modules once.

The server, the CLI and the dashboard all go through it. Two tables here say how the modules
work together: ``event_handlers`` (which module handles which event) and ``scheduled_jobs``
(which runs happen when). ``background=True`` (the server) also checks stock before serving and
starts the bus dispatcher and the scheduler; a CLI command opens the shop without them and still
sees the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from miri.config import Settings
from miri.domain.errors import NotFound
from miri.domain.events import (
    Event,
    ItemReturned,
    ItemShipped,
    OrderItemCanceled,
    OrderPlaced,
    PasswordResetRequested,
    PaymentAborted,
    PaymentCompleted,
    PaymentRefunded,
    PaymentTakenLate,
)
from miri.domain.goods import setup as goods_setup
from miri.domain.goods.service import GoodsService
from miri.domain.goods.upkeep import OrphanSweep
from miri.domain.goods.wishlist import WishlistService
from miri.domain.notifications.service import Notifications
from miri.domain.orders import setup as orders_setup
from miri.domain.orders.setup import Orders
from miri.domain.payments import setup as payments_setup
from miri.domain.payments.service import PaymentService
from miri.domain.queue import setup as queue_setup
from miri.domain.queue.service import QueueService
from miri.domain.users.service import UserService
from miri.domain.views.orders import OrderViews
from miri.domain.views.sales import SalesViews
from miri.infra import secrets
from miri.infra.breakers import Breakers
from miri.infra.bus import Batched, Bus, Handler
from miri.infra.clock import Clock, SystemClock
from miri.infra.crypto import FieldCipher, decode_key
from miri.infra.database import Database, open_database
from miri.infra.hosts import Hosts, check_keys, key_fingerprint
from miri.infra.leadership import Leadership, lease_for
from miri.infra.mail import Mailer, make_mailer
from miri.infra.metrics import ShopMetrics
from miri.infra.passwords import PasswordHasher
from miri.infra.ratelimit import RateLimiter
from miri.infra.redis import RedisHandle, open_redis, revive_embedded
from miri.infra.scheduler import Jobs, RunRecorder
from miri.infra.tokens import TokenService

log = logging.getLogger(__name__)
PAYMENT_EXPIRY_EVERY = 60.0  # seconds between looks for items unpaid past the timeout


def event_handlers(
    orders: Orders, payments: PaymentService, mail: Notifications
) -> dict[type[Event], list[tuple[str, Handler]]]:
    """Which module handles which event, as (consumer, handler).

    The consumer names key the ``deliveries`` rows already in a shop's database: never rename one.
    """
    return {
        # An order was stored: payments opens a payment per item; the provider begins (the
        # simulated buyer walks it; a checkout waits for the buyer).
        # A sale's events come by the thousand: ``Batched`` consumers take those of one claim
        # in one call (one write for them all).
        OrderPlaced: [
            ("payments", Batched(payments.on_order_placed, payments.on_orders_placed)),
        ],
        # The walk ended: paid, the item is COMPLETED ...
        PaymentCompleted: [
            (
                "orders",
                Batched(
                    orders.outcomes.on_payment_completed, orders.outcomes.on_payments_completed
                ),
            ),
            # "order confirmed"
            ("mail", Batched(mail.on_payment_completed, mail.on_payments_completed)),
        ],
        # ... or abandoned: the item is CANCELED and its stock goes back.
        PaymentAborted: [("orders", orders.outcomes.on_payment_aborted)],
        # Canceled by the buyer, expired, or paid too late: payments refunds or aborts.
        OrderItemCanceled: [("payments", payments.on_item_canceled)],
        # A return completed (its stock went back): payments gives the money back.
        ItemReturned: [("payments", payments.on_item_returned)],
        # Money went back to the buyer (a cancel, a late payment, a return): they are told.
        PaymentRefunded: [("mail", mail.on_payment_refunded)],
        # A provider took money for an item already expired or canceled: payments refunds it.
        PaymentTakenLate: [("payments", payments.on_payment_taken_late)],
        # The seller shipped it by hand: the buyer gets the carrier and tracking number.
        ItemShipped: [("mail", mail.on_item_shipped)],
        # A password reset was asked for an existing account: the token goes out by mail.
        PasswordResetRequested: [("mail", mail.on_password_reset)],
    }


def scheduled_jobs(
    settings: Settings, orders: Orders, goods: GoodsService, record: RunRecorder | None = None
) -> Jobs:
    """The runs the scheduler starts (on one worker per data dir), and `miri jobs run` names."""

    async def stock_sync(as_of: datetime | None) -> dict[str, int]:
        return {"written": await goods.sync_stock()}

    jobs = Jobs(settings.timezone, record)
    jobs.daily(
        "shipping",
        orders.lifecycle.run_shipping,
        at=settings.daily_run_at,
        description="moves each paid item one shipping step if its status is a day old",
    )
    jobs.daily(
        "returns",
        orders.lifecycle.run_returns,
        at=settings.daily_run_at,
        description="completes returns asked for a day ago; their stock goes back",
    )
    jobs.every(
        "payment-expiry",
        orders.lifecycle.expire_unpaid,
        seconds=PAYMENT_EXPIRY_EVERY,
        description="aborts items still unpaid after the payment timeout",
    )
    jobs.every(
        "stock-sync",
        stock_sync,
        seconds=settings.stock_sync_interval,
        description="writes live stock of changed goods back to the database",
    )
    return jobs


@dataclass
class Shop:
    settings: Settings
    clock: Clock
    db: Database
    redis: RedisHandle
    breakers: Breakers
    mailer: Mailer
    limiter: RateLimiter
    cipher: FieldCipher
    metrics: ShopMetrics
    bus: Bus
    users: UserService
    goods: GoodsService  # the catalogue and live stock
    wishlist: WishlistService
    orders: Orders  # placing, changes, payment outcomes, the lifecycle runs
    order_views: OrderViews  # order items with goods and payment statuses (reads only)
    sales: SalesViews  # items with buyer and address, for their seller and admins (reads only)
    mail: Notifications  # the mail consumer: confirmed, shipped, refunded, password reset
    payments: PaymentService
    queue: QueueService  # waiting rooms: tickets, admission, passes
    jobs: Jobs  # the scheduled runs (shipping, returns, payment expiry, stock write-back)
    hosts: Hosts  # this process's heartbeat, and the other processes serving the shop

    async def _bus_figures(self) -> dict[str, int | None]:
        try:
            return await self.bus.views.counts()
        except Exception:  # noqa: BLE001 - the database line already says what is down
            return {"pending": None, "deadLetters": None}

    async def health(self) -> dict[str, Any]:
        """Readiness of each dependency; ``status`` is ``ok`` only when all are."""
        try:
            await self.redis.client.ping()
            redis_ok = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            redis_ok = f"down: {exc.__class__.__name__}"
        try:
            await self.db.read(lambda c: c.execute("SELECT 1").fetchone())
            db_ok = "ok"
        except Exception as exc:  # noqa: BLE001
            db_ok = f"down: {exc.__class__.__name__}"
        status = "ok" if redis_ok == "ok" and db_ok == "ok" else "degraded"
        return {
            "status": status,
            "redis": redis_ok,
            "database": db_ok,
            "bus": await self._bus_figures(),
            "breakers": await self.breakers.states(),
            "host": {"id": self.hosts.host_id, "leader": self.hosts.leader},
            "engines": {"database": self.db.engine, "redis": self.redis.mode},
        }


@asynccontextmanager
async def open_shop(
    settings: Settings,
    *,
    clock: Clock | None = None,
    mailer: Mailer | None = None,
    background: bool = False,
    rng: random.Random | None = None,
) -> AsyncIterator[Shop]:
    clock = clock or SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        # -- infrastructure --
        db = open_database(settings)
        stack.push_async_callback(db.close)
        redis = await open_redis(settings)
        stack.push_async_callback(redis.close)
        metrics = ShopMetrics()
        breakers = Breakers()
        mailer = mailer or make_mailer(settings, breakers)
        limiter = RateLimiter(redis.client, settings.rate_limits)
        jwt_key, data_key = secrets.jwt_secret(settings), secrets.data_key(settings)
        if settings.database_url:  # several hosts may share it: they must share keys too
            await check_keys(db, key_fingerprint(jwt_key, data_key))
        cipher = FieldCipher(decode_key(data_key))
        bus = Bus(db, settings, metrics)
        stack.push_async_callback(bus.stop)
        # -- modules --
        users = UserService(
            db=db,
            redis=redis.client,
            cipher=cipher,
            hasher=PasswordHasher(settings),
            tokens=TokenService(jwt_key, settings.token_ttl, clock),
            mailer=mailer,
            bus=bus,
            limiter=limiter,
            clock=clock,
            settings=settings,
        )
        await users.restore_revocations()

        hosts = Hosts(db)
        goods, wishlist = goods_setup.build(
            db=db,
            redis=redis,
            settings=settings,
            clock=clock,
            metrics=metrics,
            sellers=_Sellers(users),
            hosts=hosts,
            stack=stack,
        )
        queue = queue_setup.build(
            db=db,
            redis=redis.client,
            clock=clock,
            live_stock=goods.live_stock,
            metrics=metrics,
            rng=rng,
        )
        stack.push_async_callback(queue.close)
        payments = payments_setup.build(
            db=db, bus=bus, breakers=breakers, clock=clock, metrics=metrics, settings=settings
        )
        orders = orders_setup.build(
            db=db,
            redis=redis.client,
            bus=bus,
            stock=goods.reservations,
            catalogue=goods.catalogue,
            wishlist=wishlist,
            cipher=cipher,
            clock=clock,
            metrics=metrics,
            payment_timeout=settings.payment_timeout,
            gate=queue,
            refunds=payments,
        )
        order_views = OrderViews(db=db, zone=ZoneInfo(settings.timezone))
        mail = Notifications(
            db=db,
            mailer=mailer,
            people=users,
            items=order_views,
            cipher=cipher,
            clock=clock,
        )
        for event_type, consumers in event_handlers(orders, payments, mail).items():
            for consumer, handler in consumers:
                bus.subscribe(consumer, event_type, handler)
        shop = Shop(
            settings=settings,
            clock=clock,
            db=db,
            redis=redis,
            breakers=breakers,
            mailer=mailer,
            limiter=limiter,
            cipher=cipher,
            metrics=metrics,
            bus=bus,
            users=users,
            goods=goods,
            wishlist=wishlist,
            orders=orders,
            order_views=order_views,
            mail=mail,
            sales=SalesViews(db=db, cipher=cipher, zone=ZoneInfo(settings.timezone)),
            payments=payments,
            queue=queue,
            jobs=scheduled_jobs(settings, orders, goods, hosts.record_run),
            hosts=hosts,
        )
        # -- background work, server only --
        if background:
            await goods_setup.check_before_serving(goods)  # before the first order is taken
            await queue_setup.check_before_serving(queue)
            await bus.start()
            stack.push_async_callback(_write_back_stock, shop)  # after the jobs stop, below
            beat = asyncio.create_task(shop.hosts.run(), name="miri-heartbeat")
            stack.push_async_callback(shop.hosts.stopped)
            stack.push_async_callback(_cancel, beat)
            leadership = _jobs_leadership(shop)
            await leadership.begin()
            stack.push_async_callback(leadership.end)
            if redis.embedded is not None:
                watch = asyncio.create_task(_watch_embedded_redis(shop))
                stack.push_async_callback(_cancel, watch)
        yield shop


async def _write_back_stock(shop: Shop) -> None:
    """A stopping server writes live stock back once more (the dirty set is shared, so any host
    may), so the database's figure is current even when the next start finds Redis empty."""
    try:
        await shop.goods.sync_stock()
    except Exception:  # noqa: BLE001 - the start's stock check repairs what this misses
        log.exception("stock write-back on shutdown failed")


class _Sellers:
    """What goods asks users about a seller (goods never reads the users table)."""

    def __init__(self, users: UserService) -> None:
        self._users = users

    async def seller_exists(self, user_id: int) -> bool:
        try:
            await self._users.profile(user_id)
        except NotFound:
            return False
        return True

    async def seller_name(self, user_id: int) -> str | None:
        return (await self._users.profile(user_id)).user_name


def _jobs_leadership(shop: Shop) -> Leadership:
    """The scheduled jobs run in one process per shop: whichever holds the jobs lease."""

    admissions = queue_setup.Admissions(shop.queue)  # the waiting rooms' one admission ticker
    orphans = OrphanSweep(shop.goods.upkeep, shop.hosts)  # stock a dead host left reserved

    def start() -> None:
        shop.hosts.leader = True
        shop.hosts.beat_soon()
        shop.jobs.start()
        admissions.start()
        orphans.start()

    async def stop() -> None:
        shop.hosts.leader = False
        await orphans.stop()
        await admissions.stop()
        await shop.jobs.stop()

    lease = lease_for(shop.settings.database_url, shop.settings.data_dir)
    return Leadership(lease, start, stop)


async def _watch_embedded_redis(shop: Shop, every: float = 1.0) -> None:
    """The embedded Redis died (killed, crashed): start it again and repair stock from SQLite.

    Meanwhile requests that need Redis answer 503 and change nothing; once it is back, its AOF
    restores what it held and the stock check puts back whatever the last second lost.
    """
    while True:
        await asyncio.sleep(every)
        try:
            if await revive_embedded(shop.redis, shop.settings):
                report = await shop.goods.startup_check()
                await shop.queue.restore()
                log.warning("embedded Redis started again; stock check: %s", report.to_dict())
        except Exception:  # noqa: BLE001 - try again at the next look
            log.exception("could not bring the embedded Redis back yet")


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
