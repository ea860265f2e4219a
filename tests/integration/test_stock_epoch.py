"""The stock epoch: Redis is trusted only for the epoch it was rebuilt for, orders reserved before a
rebuild are refused, and a release is counted exactly once whichever side of a rebuild it lands."""

from __future__ import annotations

import asyncio

import pytest

from miri.domain.errors import Unavailable
from miri.domain.goods.stock import REBUILD_LOCK, RELEASE_COUNTED, RELEASE_EARLY
from miri.domain.goods.store import GoodsStore
from tests.support.goods import add_goods
from tests.support.shop import add_user

pytestmark = pytest.mark.both_engines
ADDRESS = "Seoul Mapo 12"


async def _orders_quantity(shop, goods_id: int) -> int:
    row = await shop.db.read(
        lambda c: c.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM active_order_items WHERE goods_id = ?",
            (goods_id,),
        ).fetchone()
    )
    return int(row[0])


async def test_a_redis_without_the_epoch_is_rebuilt_before_a_reservation(shop):
    goods = await add_goods(shop, stock=10)
    buyer, _ = await add_user(shop)
    await shop.orders.placing.place(buyer, goods.goods_id, 3, ADDRESS)
    before = await shop.goods.live.epoch()
    assert before is not None and before == await GoodsStore(shop.db).epoch()
    # As a promoted replica that lost the last decrements: more stock, and no epoch mark.
    await shop.redis.client.hset(f"miri:goods:{goods.goods_id}", "stock", 10)
    await shop.goods.live.set_epoch(None)
    got = await shop.goods.reserve_many(buyer, [(goods.goods_id, 1)])
    assert got.epoch == before + 1  # rebuilt first, under a new epoch
    # The truth (10 - 3 ordered) less the unit just reserved; the lost decrements are back.
    assert await shop.goods.live_stock(goods.goods_id) == 6


async def test_an_order_reserved_before_a_rebuild_is_refused_and_nothing_given_twice(shop):
    goods = await add_goods(shop, stock=5)
    buyer, _ = await add_user(shop)
    reservations = shop.goods.reservations
    reserve = reservations.reserve_many

    async def reserve_then_rebuild(user_id, items):
        got = await reserve(user_id, items)
        await shop.goods.upkeep.rebuild("another host went away")  # between reserve and commit
        return got

    reservations.reserve_many = reserve_then_rebuild  # placing holds this object
    with pytest.raises(Unavailable):
        await shop.orders.placing.place(buyer, goods.goods_id, 2, ADDRESS)
    reservations.reserve_many = reserve
    assert await _orders_quantity(shop, goods.goods_id) == 0
    # The rebuild gave the 2 units back; the refused order did not give them back again.
    assert await shop.goods.live_stock(goods.goods_id) == 5
    assert (await shop.goods.check_stock()).ok
    # The next order goes through under the new epoch.
    await shop.orders.placing.place(buyer, goods.goods_id, 2, ADDRESS)
    assert await shop.goods.live_stock(goods.goods_id) == 3


async def test_a_release_counts_once_on_either_side_of_a_rebuild(shop):
    goods = await add_goods(shop, stock=5)
    buyer, _ = await add_user(shop)
    placed = await shop.orders.placing.place(buyer, goods.goods_id, 2, ADDRESS)
    old = await shop.goods.live.epoch()
    assert old is not None
    # Canceled: the release carries the epoch read where the cancel was committed.
    await shop.orders.changes.cancel(buyer, placed.items[0].order_item_id)
    assert await shop.goods.live_stock(goods.goods_id) == 5
    live = shop.goods.live
    # Sent again after a rebuild (that rebuild already counted it): a no-op.
    await shop.goods.upkeep.rebuild("test")
    assert await live.release(buyer, goods.goods_id, 2, None, old) == RELEASE_COUNTED
    assert await shop.goods.live_stock(goods.goods_id) == 5
    # Committed after a rebuild's bump, before its load reached Redis: held back, then applied.
    current = await live.epoch()
    await shop.goods.reserve(buyer, goods.goods_id, 1)  # 4 left, held under ``current``
    await shop.redis.client.set(REBUILD_LOCK, "another host", ex=30)  # its rebuild runs ...
    await live.set_epoch(None)
    assert await live.release(buyer, goods.goods_id, 1, None, current) == RELEASE_EARLY
    release = asyncio.create_task(shop.goods.release(buyer, goods.goods_id, 1, epoch=current))
    await asyncio.sleep(0.2)
    assert await shop.goods.live_stock(goods.goods_id) == 4 and not release.done()
    await live.set_epoch(current)  # ... and loads Redis
    await shop.redis.client.delete(REBUILD_LOCK)
    await release
    assert await shop.goods.live_stock(goods.goods_id) == 5
    assert await live.epoch() == current  # nothing rebuilt again
    assert (await shop.goods.check_stock()).ok
