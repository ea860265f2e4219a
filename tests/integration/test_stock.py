"""Live stock in Redis: no oversell under concurrency, buyer limits, sale opening, all-or-nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from miri.domain.errors import LimitExceeded, NotFound, SaleNotOpen, SoldOut, ValidationFailed
from miri.shop import open_shop
from tests.support.goods import add_goods, buyers
from tests.support.shop import add_user, make_settings

pytestmark = pytest.mark.both_engines


async def test_thousand_concurrent_reserves_sell_exactly_the_stock(shop):
    goods = await add_goods(shop, stock=100)
    outcomes = await asyncio.gather(
        *(shop.goods.reserve(1000 + i, goods.goods_id, 1) for i in range(1000)),
        return_exceptions=True,
    )
    sold = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(sold) == 100
    assert all(isinstance(o, SoldOut) for o in refused) and len(refused) == 900
    assert await shop.goods.live_stock(goods.goods_id) == 0
    held = await buyers(shop, goods.goods_id)
    assert sum(int(n) for n in held.values()) == 100
    report = await shop.goods.check_stock(repair=False)
    # Nothing was written to the order tables, so SQLite's truth still says 100 are available.
    assert [m.what for m in report.mismatches] == ["stock", "buyers"]


async def test_reserve_returns_the_goods_and_release_gives_back(shop):
    goods = await add_goods(shop, stock=5, price=3000)
    got = await shop.goods.reserve(7, goods.goods_id, 2)
    assert got == goods and got.price == 3000
    assert await shop.goods.live_stock(goods.goods_id) == 3
    assert await buyers(shop, goods.goods_id) == {"7": "2"}
    await shop.goods.release(7, goods.goods_id, 2)
    assert await shop.goods.live_stock(goods.goods_id) == 5
    assert await buyers(shop, goods.goods_id) == {}


async def test_sold_out_names_the_goods_and_changes_nothing(shop):
    goods = await add_goods(shop, stock=3)
    with pytest.raises(SoldOut) as err:
        await shop.goods.reserve(1, goods.goods_id, 4)
    assert err.value.data == {"goodsId": goods.goods_id}
    assert await shop.goods.live_stock(goods.goods_id) == 3
    assert await buyers(shop, goods.goods_id) == {}


async def test_unknown_goods_and_bad_quantities(shop):
    goods = await add_goods(shop, stock=3)
    with pytest.raises(NotFound):
        await shop.goods.reserve(1, 999, 1)
    for bad in (0, -1):
        with pytest.raises(ValidationFailed):
            await shop.goods.reserve(1, goods.goods_id, bad)
    with pytest.raises(ValidationFailed):
        await shop.goods.reserve_many(1, [])
    assert await shop.goods.live_stock(goods.goods_id) == 3


async def test_sale_opens_by_the_injected_clock(shop, clock):
    opens = clock.now() + timedelta(hours=1)
    goods = await add_goods(shop, stock=10, opens=opens)
    with pytest.raises(SaleNotOpen):
        await shop.goods.reserve(1, goods.goods_id, 1)
    clock.set(opens - timedelta(microseconds=1000))
    with pytest.raises(SaleNotOpen):
        await shop.goods.reserve(1, goods.goods_id, 1)
    clock.set(opens)
    await shop.goods.reserve(1, goods.goods_id, 1)
    assert await shop.goods.live_stock(goods.goods_id) == 9


async def test_per_buyer_limit_holds_under_concurrency(shop):
    goods = await add_goods(shop, stock=1000, limit=3)
    # 20 buyers each try 10 single-unit orders at once: each gets exactly 3.
    outcomes = await asyncio.gather(
        *(shop.goods.reserve(buyer, goods.goods_id, 1) for buyer in range(20) for _ in range(10)),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(refused) == 140 and all(isinstance(o, LimitExceeded) for o in refused)
    held = await buyers(shop, goods.goods_id)
    assert held == {str(b): "3" for b in range(20)}
    assert await shop.goods.live_stock(goods.goods_id) == 1000 - 60
    # A release makes room again, for that buyer only.
    await shop.goods.release(5, goods.goods_id, 1)
    await shop.goods.reserve(5, goods.goods_id, 1)
    with pytest.raises(LimitExceeded):
        await shop.goods.reserve(6, goods.goods_id, 1)


async def test_multi_goods_reserve_is_all_or_nothing(shop):
    seller, _ = await add_user(shop, "seller@example.com")
    a = await add_goods(shop, seller, stock=10, name="Tote Bag")
    b = await add_goods(shop, seller, stock=1, name="Lip Balm")
    c = await add_goods(shop, seller, stock=10, name="Hand Cream", limit=2)
    with pytest.raises(SoldOut) as err:
        await shop.goods.reserve_many(1, [(a.goods_id, 2), (b.goods_id, 2), (c.goods_id, 1)])
    assert err.value.data == {"goodsId": b.goods_id}
    with pytest.raises(LimitExceeded):
        await shop.goods.reserve_many(1, [(a.goods_id, 2), (c.goods_id, 3)])
    stocks = await shop.goods.live_stocks([a.goods_id, b.goods_id, c.goods_id])
    assert stocks == {a.goods_id: 10, b.goods_id: 1, c.goods_id: 10}
    for g in (a, b, c):
        assert await buyers(shop, g.goods_id) == {}
    got = await shop.goods.reserve_many(1, [(a.goods_id, 2), (b.goods_id, 1), (a.goods_id, 1)])
    assert set(got) == {a.goods_id, b.goods_id}
    stocks = await shop.goods.live_stocks([a.goods_id, b.goods_id])
    assert stocks == {a.goods_id: 7, b.goods_id: 0}


async def test_concurrent_multi_goods_reserves_never_split(shop):
    seller, _ = await add_user(shop, "seller@example.com")
    a = await add_goods(shop, seller, stock=50, name="Tote Bag")
    b = await add_goods(shop, seller, stock=30, name="Lip Balm")
    outcomes = await asyncio.gather(
        *(shop.goods.reserve_many(u, [(a.goods_id, 1), (b.goods_id, 1)]) for u in range(300)),
        return_exceptions=True,
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 30
    stocks = await shop.goods.live_stocks([a.goods_id, b.goods_id])
    assert stocks == {a.goods_id: 20, b.goods_id: 0}


async def test_one_tick_of_reservations_over_several_goods_judges_each_alone(shop):
    """The reservations of one loop tick go to Redis in one call, each goods' keys named once
    however many of them name it; each is still judged alone, all or nothing."""
    seller, _ = await add_user(shop, "seller@example.com")
    a = await add_goods(shop, seller, stock=10, name="Tote Bag", limit=2)
    b = await add_goods(shop, seller, stock=4, name="Lip Balm")
    c = await add_goods(shop, seller, stock=2, name="Hand Cream")
    ids = [a.goods_id, b.goods_id, c.goods_id]
    await shop.goods.reserve_many(9, [(g, 1) for g in ids])  # all three cached now
    big = 10**15 + 7  # a hash field in Redis: kept digit for digit
    outcomes = await asyncio.gather(
        shop.goods.reserve_many(big, [(b.goods_id, 1), (a.goods_id, 2)]),
        shop.goods.reserve_many(2, [(a.goods_id, 1)]),
        shop.goods.reserve_many(3, [(b.goods_id, 1)]),
        shop.goods.reserve_many(5, [(a.goods_id, 3)]),  # over the limit of 2
        shop.goods.reserve_many(4, [(a.goods_id, 1), (b.goods_id, 1)]),
        shop.goods.reserve_many(6, [(a.goods_id, 1), (c.goods_id, 2)]),  # 1 of c left
        return_exceptions=True,
    )
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["Reserved"] * 3 + ["LimitExceeded", "Reserved", "SoldOut"]
    assert outcomes[5].data == {"goodsId": c.goods_id}
    assert await shop.goods.live_stocks(ids) == {a.goods_id: 5, b.goods_id: 0, c.goods_id: 1}
    assert await buyers(shop, a.goods_id) == {"9": "1", str(big): "2", "2": "1", "4": "1"}
    assert await buyers(shop, b.goods_id) == {"9": "1", str(big): "1", "3": "1", "4": "1"}
    assert await buyers(shop, c.goods_id) == {"9": "1"}


async def test_an_edit_in_another_process_reaches_this_cache(shop):
    goods = await add_goods(shop, stock=10, price=1000)
    await shop.goods.reserve(1, goods.goods_id, 1)  # cached now
    # Another worker edits: SQLite row and Redis version change, this process's cache does not.
    await shop.db.write(
        lambda c: c.execute("UPDATE goods SET price = 2000 WHERE id = ?", (goods.goods_id,))
    )
    await shop.goods.live.set_rules(goods.goods_id, "", 0)
    got = await shop.goods.reserve(1, goods.goods_id, 1)
    assert got.price == 2000


async def test_editing_rules_applies_to_the_next_reserve(shop, clock):
    seller, _ = await add_user(shop, "seller@example.com")
    goods = await add_goods(shop, seller, stock=10)
    await shop.goods.update(seller, goods.goods_id, {"per_buyer_limit": 1})
    await shop.goods.reserve(1, goods.goods_id, 1)
    with pytest.raises(LimitExceeded):
        await shop.goods.reserve(1, goods.goods_id, 1)
    later = clock.now() + timedelta(days=1)
    await shop.goods.update(seller, goods.goods_id, {"reservation_start": later})
    with pytest.raises(SaleNotOpen):
        await shop.goods.reserve(2, goods.goods_id, 1)
    await shop.goods.update(
        seller, goods.goods_id, {"reservation_start": None, "per_buyer_limit": None}
    )
    await shop.goods.reserve(1, goods.goods_id, 5)
    assert await shop.goods.live_stock(goods.goods_id) == 4


async def test_scripts_survive_a_script_flush(shop):
    goods = await add_goods(shop, stock=10)
    await shop.goods.reserve(1, goods.goods_id, 1)
    await shop.redis.client.script_flush()  # as after a Redis restart: EVALSHA must reload
    await shop.goods.reserve(1, goods.goods_id, 1)
    assert await shop.goods.live_stock(goods.goods_id) == 8


async def test_listings_read_stock_from_the_replica_url(data_dir, clock):
    async with open_shop(make_settings(data_dir), clock=clock) as primary_shop:
        url = primary_shop.redis.url
        # The "replica" here is the primary itself: what is tested is the wiring of reads.
        settings = make_settings(data_dir, redis_replica_url=url)
        async with open_shop(settings, clock=clock) as shop:
            await add_goods(shop, stock=4)
            assert shop.goods.live.reader is not shop.goods.live.primary
            [(_, stock)], _ = await shop.goods.listing(0, 10)
            assert stock == 4
