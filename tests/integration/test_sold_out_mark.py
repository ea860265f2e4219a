"""After a sell-out, futile orders are refused in-process, and the mark never outlives stock."""

from __future__ import annotations

import pytest

from miri.domain.errors import SoldOut
from tests.support.goods import add_goods
from tests.support.shop import add_user


def fast_answers(shop) -> float:
    return shop.metrics.sold_out_fast._value.get()


async def test_sold_out_is_answered_in_process_until_stock_comes_back(shop):
    buyer, _ = await add_user(shop)
    goods = await add_goods(shop, stock=2)
    await shop.goods.reserve(buyer, goods.goods_id, 2)
    with pytest.raises(SoldOut):
        await shop.goods.reserve(buyer, goods.goods_id, 1)  # Redis says 0 left: marked
    assert fast_answers(shop) == 0
    for _ in range(5):
        with pytest.raises(SoldOut):
            await shop.goods.reserve(buyer, goods.goods_id, 1)
    assert fast_answers(shop) == 5
    # Stock given back in this process clears the mark at once.
    await shop.goods.release(buyer, goods.goods_id, 1)
    await shop.goods.reserve(buyer, goods.goods_id, 1)


async def test_a_short_refusal_does_not_mark_goods_that_still_have_stock(shop):
    buyer, _ = await add_user(shop)
    goods = await add_goods(shop, stock=3)
    with pytest.raises(SoldOut):
        await shop.goods.reserve(buyer, goods.goods_id, 5)
    await shop.goods.reserve(buyer, goods.goods_id, 3)
    assert fast_answers(shop) == 0


async def test_restock_clears_the_mark(shop):
    seller, _ = await add_user(shop, "seller@example.com")
    buyer, _ = await add_user(shop)
    goods = await add_goods(shop, seller, stock=1)
    await shop.goods.reserve(buyer, goods.goods_id, 1)
    with pytest.raises(SoldOut):
        await shop.goods.reserve(buyer, goods.goods_id, 1)
    await shop.goods.restock(seller, False, goods.goods_id, 4)
    await shop.goods.reserve(buyer, goods.goods_id, 4)
