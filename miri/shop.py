"""The composition root: ``open_shop(settings)`` builds infrastructure and modules once.

The server, the CLI and the dashboard all go through it. ``background=True`` (the server) also
starts the bus dispatcher, the scheduler and the periodic stock write-back; a CLI command opens
the shop without them and still sees the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from miri.config import Settings
from miri.domain.goods import setup as goods_setup
from miri.domain.orders import setup as orders_setup
from miri.domain.users.service import UserService
from miri.infra import secrets
from miri.infra.breakers import Breakers
from miri.infra.bus import Bus
from miri.infra.clock import Clock, SystemClock
from miri.infra.crypto import FieldCipher, decode_key
from miri.infra.mail import Mailer, make_mailer
from miri.infra.metrics import ShopMetrics
from miri.infra.passwords import PasswordHasher
from miri.infra.ratelimit import RateLimiter
from miri.infra.redis import RedisHandle, open_redis, revive_embedded
from miri.infra.database import Database, open_database
from miri.infra.tokens import TokenService

log = logging.getLogger(__name__)


@dataclass
class Shop:
    settings: Settings
    clock: Clock
    db: Database
    redis: RedisHandle
    breakers: Breakers
    mailer: Mailer
    limiter: RateLimiter
    users: UserService
    metrics: ShopMetrics = field(default_factory=ShopMetrics)
    bus: Any = None  # miri.infra.bus.Bus
    goods: Any = None  # miri.domain.goods: the catalogue and live stock
    wishlist: Any = None  # miri.domain.goods: the wishlist
    orders: Any = None  # miri.domain.orders
    payments: Any = None  # miri.domain.payments
    jobs: Any = None  # the scheduled runs (shipping, returns, stock write-back)
    extras: dict[str, Any] = field(default_factory=dict)

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
        }


@asynccontextmanager
async def open_shop(
    settings: Settings,
    *,
    clock: Clock | None = None,
    mailer: Mailer | None = None,
    background: bool = False,
) -> AsyncIterator[Shop]:
    clock = clock or SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        db = open_database(settings)
        stack.push_async_callback(db.close)
        redis = await open_redis(settings)
        stack.push_async_callback(redis.close)
        breakers = Breakers()
        mailer = mailer or make_mailer(settings, breakers)
        limiter = RateLimiter(redis.client, settings.rate_limits)
        cipher = FieldCipher(decode_key(secrets.data_key(settings)))
        tokens = TokenService(secrets.jwt_secret(settings), settings.token_ttl, clock)
        users = UserService(
            db=db,
            redis=redis.client,
            cipher=cipher,
            hasher=PasswordHasher(settings),
            tokens=tokens,
            mailer=mailer,
            limiter=limiter,
            clock=clock,
            settings=settings,
        )
        shop = Shop(settings, clock, db, redis, breakers, mailer, limiter, users)
        shop.extras["cipher"] = cipher
        await users.restore_revocations()
        shop.bus = Bus(db, settings, shop.metrics)
        stack.push_async_callback(shop.bus.stop)
        # goods and wishlist (domain/goods)
        shop.goods, shop.wishlist = goods_setup.build(shop, stack)
        # orders and payments (domain/orders, domain/payments)
        orders_setup.build(shop)
        # -- background work, server only (dispatcher, scheduler, stock write-back) --
        if background:  # the stock check runs before the server takes its first order
            await goods_setup.start_background(shop.goods, stack, settings.stock_sync_interval)
        if background:
            await shop.bus.start()
            if settings.worker_index == 0:  # one scheduler per data dir
                shop.jobs.start()
                stack.push_async_callback(shop.jobs.stop)
            if redis.embedded is not None:
                watch = asyncio.create_task(_watch_embedded_redis(shop))
                stack.push_async_callback(_cancel, watch)
        yield shop


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
                log.warning("embedded Redis started again; stock check: %s", report.to_dict())
        except Exception:  # noqa: BLE001 - try again at the next look
            log.exception("could not bring the embedded Redis back yet")


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
