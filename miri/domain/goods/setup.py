"""How the shop builds the goods module, and the stock check a server runs before serving."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from miri.config import Settings
from miri.domain.goods.cache import GoodsCache, SoldOutMarks
from miri.domain.goods.catalogue import Catalogue, Sellers
from miri.domain.goods.figures import StockFigures
from miri.domain.goods.reservation import Reservations
from miri.domain.goods.service import GoodsService
from miri.domain.goods.stock import LiveStock
from miri.domain.goods.store import GoodsStore
from miri.domain.goods.upkeep import ServingHosts, StockUpkeep
from miri.domain.goods.wishlist import WishlistService
from miri.infra.clock import Clock
from miri.infra.database import Database
from miri.infra.metrics import ShopMetrics
from miri.infra.redis import RedisHandle

log = logging.getLogger(__name__)


def build(
    *,
    db: Database,
    redis: RedisHandle,
    settings: Settings,
    clock: Clock,
    metrics: ShopMetrics,
    sellers: Sellers,
    hosts: ServingHosts,
    stack: AsyncExitStack,
) -> tuple[GoodsService, WishlistService]:
    """The goods and wishlist services.

    With a replica (``serve --redis-replica`` or ``redis_replica_url``), stock shown in listings,
    goods pages and the wishlist is read from that replica (it may trail the primary by the
    replication lag, typically well under a millisecond on one host); reservations, releases,
    the stock endpoint and the stock check always use the primary.
    """
    reader = redis.replica  # the embedded replica (`serve --redis-replica`), if any
    if reader is None and settings.redis_replica_url:
        reader = redis.connect(settings.redis_replica_url)
        stack.push_async_callback(reader.aclose)
    store = GoodsStore(db)
    live = _live_stock(redis, db, reader, settings.stock_strategy)
    figures = StockFigures(store, live)
    cache = GoodsCache(store, live)
    marks = SoldOutMarks(metrics.sold_out_fast.inc)
    catalogue = Catalogue(
        store=store,
        figures=figures,
        cache=cache,
        marks=marks,
        clock=clock,
        zone=ZoneInfo(settings.timezone),
        sellers=sellers,
    )
    upkeep = StockUpkeep(store=store, live=live, cache=cache, clock=clock, hosts=hosts)
    reservations = Reservations(
        live=live,
        figures=figures,
        cache=cache,
        marks=marks,
        clock=clock,
        verify=upkeep.rebuild_if_unverified,
    )
    stack.push_async_callback(reservations.close)  # releases still waiting for Redis
    goods = GoodsService(
        catalogue=catalogue,
        reservations=reservations,
        figures=figures,
        upkeep=upkeep,
        cache=cache,
    )
    wishlist = WishlistService(db=db, catalogue=catalogue, figures=figures, clock=clock)
    return goods, wishlist


def _live_stock(redis: RedisHandle, db: Database, reader: Redis | None, strategy: str) -> LiveStock:
    """Redis + Lua (the shop); ``stock_strategy = "sqlite"`` is the benchmark's baseline."""
    if strategy == "sqlite":
        from miri.domain.goods.sqlite_stock import SqliteStock

        return SqliteStock(redis.client, db)
    return LiveStock(redis.client, reader)


async def check_before_serving(goods: GoodsService) -> None:
    """Rebuild Redis from the database before the server takes its first order."""
    report = await goods.startup_check()
    log.info(
        "stock check: %d goods, %d mismatches, %d repaired",
        report.checked,
        len(report.mismatches),
        report.repaired,
    )
