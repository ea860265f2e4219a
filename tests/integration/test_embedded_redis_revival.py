"""The embedded Redis killed under a running server: it comes back by itself, stock exact."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from miri.shop import open_shop
from tests.support.goods import add_goods
from tests.support.shop import add_user, make_settings


async def until(predicate, timeout: float = 20.0) -> bool:
    for _ in range(int(timeout / 0.1)):
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.mark.timeout(90)
async def test_killed_embedded_redis_is_started_again_and_stock_repaired(data_dir, clock):
    async with open_shop(make_settings(data_dir), clock=clock, background=True) as shop:
        buyer, _ = await add_user(shop)
        goods = await add_goods(shop, stock=10)
        for _ in range(3):
            await shop.orders.placing.place(buyer, goods.goods_id, 1, "Seoul 1")
        old_pid = int(open(shop.redis.embedded.pidfile).read())
        os.kill(old_pid, signal.SIGKILL)

        async def down() -> bool:
            return (await shop.health())["redis"] != "ok"

        async def healthy() -> bool:
            started_again = int(open(shop.redis.embedded.pidfile).read()) != old_pid
            return started_again and (await shop.health())["status"] == "ok"

        assert await until(down, 5)  # health sees it gone (requests answer 503 meanwhile:
        # tests/test_faults.py covers those answers against a Redis the test controls)
        assert await until(healthy)  # back without anyone restarting the shop
        new_pid = int(open(shop.redis.embedded.pidfile).read())
        assert new_pid != old_pid
        assert await shop.goods.live_stock(goods.goods_id) == 7
        await shop.orders.placing.place(buyer, goods.goods_id, 2, "Seoul 1")
        assert await shop.goods.live_stock(goods.goods_id) == 5
        report = await shop.goods.check_stock(repair=False)
        assert report.ok, report.to_dict()
