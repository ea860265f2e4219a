"""How the shop builds the goods module, and the server-only work it runs in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from miri.domain.goods.service import GoodsService
from miri.domain.goods.stock import LiveStock
from miri.domain.goods.wishlist import WishlistService

if TYPE_CHECKING:
    from miri.shop import Shop

log = logging.getLogger(__name__)
MY_PAGE_SIZE = 10


def build(shop: Shop, stack: AsyncExitStack) -> tuple[GoodsService, WishlistService]:
    """The goods and wishlist services, and their parts of "my page".

    With a replica (``serve --redis-replica`` or ``redis_replica_url``), stock shown in listings, goods pages and the wishlist is
    read from that replica (it may trail the primary by the replication lag, typically well
    under a millisecond on one host); reservations, releases, the stock endpoint and the
    stock check always use the primary.
    """
    reader = shop.redis.replica  # the embedded replica (`serve --redis-replica`), if any
    if reader is None and shop.settings.redis_replica_url:
        reader = shop.redis.connect(shop.settings.redis_replica_url)
        stack.push_async_callback(reader.aclose)

    async def seller_name(user_id: int) -> str | None:
        return (await shop.users.profile(user_id)).user_name

    goods = GoodsService(
        db=shop.db,
        live=_live_stock(shop, reader),
        clock=shop.clock,
        zone=ZoneInfo(shop.settings.timezone),
        seller_name=seller_name,
        on_fast_sold_out=shop.metrics.sold_out_fast.inc,
    )
    stack.push_async_callback(goods.close)  # releases still waiting for Redis
    wishlist = WishlistService(db=shop.db, goods=goods, clock=shop.clock)

    async def registered_goods(user_id: int) -> dict[str, Any]:
        items, total = await goods.page(0, MY_PAGE_SIZE, seller_id=user_id)
        return _first_page(items, total)

    async def wish_list(user_id: int) -> dict[str, Any]:
        items, total = await wishlist.page(user_id, 0, MY_PAGE_SIZE)
        return _first_page(items, total)

    parts = shop.extras.setdefault("my_page_parts", {})
    parts["registeredGoods"] = registered_goods
    parts["wishList"] = wish_list
    return goods, wishlist


def _live_stock(shop: Shop, reader: Any) -> LiveStock:
    """Redis + Lua (the shop); ``stock_strategy = "sqlite"`` is the benchmark's baseline."""
    if shop.settings.stock_strategy == "sqlite":
        from miri.domain.goods.sqlite_stock import SqliteStock

        return SqliteStock(shop.redis.client, shop.db)
    return LiveStock(shop.redis.client, reader)


def _first_page(items: list[Any], total: int) -> dict[str, Any]:
    pages = (total + MY_PAGE_SIZE - 1) // MY_PAGE_SIZE
    return {
        "items": items,
        "page": 0,
        "size": MY_PAGE_SIZE,
        "totalItems": total,
        "totalPages": pages,
    }


async def start_background(goods: GoodsService, stack: AsyncExitStack, interval: float) -> None:
    """Rebuild Redis from SQLite before serving, then write live stock back periodically."""
    report = await goods.startup_check()
    log.info(
        "stock check: %d goods, %d mismatches, %d repaired",
        report.checked,
        len(report.mismatches),
        report.repaired,
    )
    task = asyncio.create_task(goods.run_background(interval), name="miri-stock-write-back")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await goods.stop_background()

    stack.push_async_callback(stop)
