"""``GET /api/goods/{goodsId}/stock/stream``: live stock and ``saleOpen`` pushed as Server-Sent
Events, on change and as a keep-alive, from one poll per process however many watch."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from miri.server.routes import stock_stream
from tests.support.goods import add_goods
from tests.support.shop import add_user


async def _events(resp, n: int, timeout: float = 5.0) -> list[dict]:
    """The next ``n`` data events of a stream."""
    out: list[dict] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            line = await resp.content.readline()
            assert line, "the stream ended"
            if line.startswith(b"data: "):
                out.append(orjson.loads(line[6:]))
    return out


async def test_unknown_goods_is_404_in_the_envelope(client):
    resp = await client.get("/api/goods/999/stock/stream")
    assert resp.status == 404
    assert (await resp.json())["error"] == "NOT_FOUND"


async def test_stream_sends_the_figure_then_every_change(client, shop):
    seller_id, _ = await add_user(shop, "seller@example.com", admin=True)
    goods = await add_goods(shop, seller_id, stock=5)
    resp = await client.get(f"/api/goods/{goods.goods_id}/stock/stream")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Cache-Control"] == "no-store"
    [first] = await _events(resp, 1)
    assert first == {"goodsId": goods.goods_id, "stockQuantity": 5, "saleOpen": True}
    buyer_id, _ = await add_user(shop, "buyer@example.com")
    await shop.orders.placing.place(buyer_id, goods.goods_id, 2, "Seoul 1")
    [after_order] = await _events(resp, 1)
    assert after_order["stockQuantity"] == 3
    await shop.goods.restock(seller_id, True, goods.goods_id, 10)
    [after_restock] = await _events(resp, 1)
    assert after_restock["stockQuantity"] == 13
    resp.close()


async def test_sale_open_flips_at_the_opening(client, shop, clock):
    seller_id, _ = await add_user(shop, "seller@example.com")
    opens = clock.advance(hours=1)
    clock.advance(hours=-1)
    goods = await add_goods(shop, seller_id, stock=5, opens=opens)
    resp = await client.get(f"/api/goods/{goods.goods_id}/stock/stream")
    [first] = await _events(resp, 1)
    assert first["saleOpen"] is False
    clock.set(opens)
    [opened] = await _events(resp, 1)
    assert opened == {"goodsId": goods.goods_id, "stockQuantity": 5, "saleOpen": True}
    resp.close()


async def test_keepalive_repeats_the_figure_when_nothing_changes(client, shop, monkeypatch):
    monkeypatch.setattr(stock_stream, "KEEPALIVE", 0.2)
    goods = await add_goods(shop, stock=7)
    resp = await client.get(f"/api/goods/{goods.goods_id}/stock/stream")
    events = await _events(resp, 3, timeout=3.0)
    assert [e["stockQuantity"] for e in events] == [7, 7, 7]
    resp.close()


async def test_many_watchers_share_one_poll_and_all_see_a_change(client, shop):
    seller_id, _ = await add_user(shop, "seller@example.com", admin=True)
    goods = await add_goods(shop, seller_id, stock=5)
    other = await add_goods(shop, seller_id, stock=9, name="Other")
    streams = [
        await client.get(f"/api/goods/{gid}/stock/stream")
        for gid in [goods.goods_id] * 30 + [other.goods_id] * 10
    ]
    for resp in streams:
        await _events(resp, 1)
    watch = client.app[stock_stream.WATCH]
    assert watch.watchers == 40
    polls, started = watch.polls, time.monotonic()
    await shop.goods.restock(seller_id, True, goods.goods_id, 1)
    for resp in streams[:30]:
        [event] = await _events(resp, 1)
        assert event["stockQuantity"] == 6
    await asyncio.sleep(0.5)
    ticks = (time.monotonic() - started) / watch.interval
    # One read per tick for all 40 watchers (one per watcher would be 40 per tick).
    assert 1 <= watch.polls - polls <= ticks + 2
    for resp in streams:
        resp.close()
    async with asyncio.timeout(5):
        while watch.watchers:
            await asyncio.sleep(0.05)


@pytest.mark.timeout(30)
async def test_streams_end_when_the_server_stops(aiohttp_client, shop):
    from miri.server.app import create_app

    app = create_app(shop)
    client = await aiohttp_client(app)
    goods = await add_goods(shop, stock=3)
    resp = await client.get(f"/api/goods/{goods.goods_id}/stock/stream")
    await _events(resp, 1)
    await client.server.close()  # on_shutdown ends the stream instead of waiting on it
    async with asyncio.timeout(10):
        rest = await resp.content.read()
    assert b"data:" not in rest
