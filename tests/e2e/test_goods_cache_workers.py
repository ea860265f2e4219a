"""The goods page cache under ``miri serve --workers 2``: an edit on one worker, or from outside
any worker (the CLI's way: the service on the same data dir), shows on every worker's next read;
goods registered outside the API show in the listing within a second."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from miri.infra.processes import free_port
from miri.shop import open_shop
from tests.support.servers import register_goods, start_server, stop_server
from tests.support.shop import add_user, bearer, make_settings


async def _reads(http: aiohttp.ClientSession, base: str, goods_id: int, n: int = 12) -> list:
    """``n`` goods pages and listing pages, each over a fresh connection (both workers answer)."""
    out = []
    for _ in range(n):
        async with http.get(f"{base}/api/goods/{goods_id}") as r:
            detail = (await r.json())["data"]
        async with http.get(f"{base}/api/goods?page=0&size=10") as r:
            listing = (await r.json())["data"]
        out.append((detail, listing))
    return out


@pytest.mark.timeout(180)
async def test_edits_show_on_every_worker_at_once(data_dir):
    async with open_shop(make_settings(data_dir)) as shop:
        seller_id, token = await add_user(shop, "seller@example.com")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(data_dir, port, "--workers", "2")
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            goods_id = await register_goods(http, base, token, "Sneakers", 10)
            for detail, listing in await _reads(http, base, goods_id):  # both caches warm
                assert detail["goodsName"] == listing["items"][0]["goodsName"] == "Sneakers"

            async with http.patch(
                f"{base}/api/auth/goods/{goods_id}",
                json={"goodsName": "Boots"},
                headers=bearer(token),
            ) as r:
                assert r.status == 200, await r.text()
            for detail, listing in await _reads(http, base, goods_id):
                assert detail["goodsName"] == listing["items"][0]["goodsName"] == "Boots"

            # From outside the workers, as `miri goods edit` or another host would.
            async with open_shop(make_settings(data_dir)) as shop:
                await shop.goods.update(seller_id, goods_id, {"price": 777})
                other = await shop.goods.register(
                    seller_id,
                    name="Added by CLI",
                    description="Not through the API",
                    price=5,
                    stock=1,
                    category="ETC",
                )
            for detail, listing in await _reads(http, base, goods_id):
                assert detail["goodsPrice"] == 777
                row = next(g for g in listing["items"] if g["goodsId"] == goods_id)
                assert row["goodsPrice"] == 777
            # New goods from outside the API: in every worker's listing within a second.
            added_at = time.monotonic()
            while True:
                seen = [
                    other.goods_id in {g["goodsId"] for g in listing["items"]}
                    for _, listing in await _reads(http, base, goods_id, 4)
                ]
                if all(seen):
                    break
                assert time.monotonic() - added_at < 1.5, "a listing stayed stale past a second"
                await asyncio.sleep(0.1)
    finally:
        assert stop_server(proc, timeout=60) == 0
