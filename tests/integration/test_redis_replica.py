"""``serve --redis-replica``: an embedded replica follows the embedded primary; listings read it."""

from __future__ import annotations

import asyncio
import stat

import pytest

from miri.shop import open_shop
from tests.support.goods import add_goods
from tests.support.shop import add_user, make_settings


async def replica_stock(shop, goods_id: int, want: int) -> int:
    for _ in range(250):
        got = (await shop.goods.live_stocks([goods_id], replica=True))[goods_id]
        if got == want:
            return got
        await asyncio.sleep(0.02)
    return got


async def test_listing_stock_comes_from_the_replica(data_dir, clock):
    async with open_shop(make_settings(data_dir, redis_replica=True), clock=clock) as shop:
        assert shop.redis.replica is not None
        info = await shop.redis.replica.info("replication")
        assert info["role"] == "slave"
        buyer, _ = await add_user(shop)
        goods = await add_goods(shop, stock=10)
        await shop.goods.reserve(buyer, goods.goods_id, 3)
        assert await replica_stock(shop, goods.goods_id, 7) == 7
        # The replica refuses writes: every change goes to the primary.
        with pytest.raises(Exception, match="read only"):
            await shop.redis.replica.set("x", "1")
        # The TCP port the replica follows is password-protected and the key file private.
        key = data_dir / "keys" / "redis.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert (await shop.redis.client.config_get("bind"))["bind"] == "127.0.0.1"


async def test_a_primary_started_without_tcp_cannot_take_a_replica(data_dir, clock):
    async with open_shop(make_settings(data_dir), clock=clock):
        with pytest.raises(RuntimeError, match="without a TCP port"):
            async with open_shop(make_settings(data_dir, redis_replica=True), clock=clock):
                pass
