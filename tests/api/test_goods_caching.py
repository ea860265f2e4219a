"""HTTP caching of the goods reads: ETag on goods details, listing pages and live stock,
If-None-Match answered 304 with no body, Cache-Control and Vary; the in-process page cache
reloads the moment the goods change, however they were changed."""

from __future__ import annotations

import asyncio

import pytest

from miri.server.goods_pages import GOODS_CACHE, LISTING_CACHE, PAGES, STOCK_CACHE
from tests.support.goods import add_goods
from tests.support.shop import add_user, bearer

ROUTES = [
    ("/api/goods/{id}", GOODS_CACHE),
    ("/api/goods/{id}/stock", STOCK_CACHE),
    ("/api/goods?page=0&size=10", LISTING_CACHE),
]


@pytest.mark.parametrize(("path", "cache"), ROUTES)
async def test_etag_and_304(client, shop, path, cache):
    goods = await add_goods(shop, stock=5)
    url = path.format(id=goods.goods_id)
    first = await client.get(url)
    assert first.status == 200
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert first.headers["Cache-Control"] == cache
    assert "Accept-Encoding" in first.headers["Vary"]
    body = await first.read()
    again = await client.get(url)
    assert again.headers["ETag"] == etag and await again.read() == body  # same bytes, same tag
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        not_modified = await client.get(url, headers={"If-None-Match": header})
        assert not_modified.status == 304, header
        assert await not_modified.read() == b""
        assert not_modified.headers["ETag"] == etag
        assert not_modified.headers["Cache-Control"] == cache
    stale = await client.get(url, headers={"If-None-Match": '"something-else"'})
    assert stale.status == 200 and await stale.read() == body


async def test_a_new_figure_is_a_new_etag(client, shop):
    goods = await add_goods(shop, stock=5)
    buyer_id, _ = await add_user(shop, "buyer@example.com")
    urls = [r[0].format(id=goods.goods_id) for r in ROUTES]
    tags = {url: (await client.get(url)).headers["ETag"] for url in urls}
    await shop.orders.placing.place(buyer_id, goods.goods_id, 1, "Seoul 1")
    for url in urls:
        resp = await client.get(url, headers={"If-None-Match": tags[url]})
        assert resp.status == 200, url  # the stock moved: the old tag no longer holds
        assert resp.headers["ETag"] != tags[url]
        body = await resp.json()
        data = body["data"]["items"][0] if "items" in body["data"] else body["data"]
        assert data["stockQuantity"] == 4


async def test_pages_come_from_the_cache_until_the_goods_change(client, shop):
    seller_id, token = await add_user(shop, "seller@example.com")
    goods = await add_goods(shop, seller_id, stock=5, name="Linen Shirt")
    pages = client.app[PAGES]
    await client.get(f"/api/goods/{goods.goods_id}")
    await client.get("/api/goods?page=0&size=10")
    loads = pages.loads
    for _ in range(5):
        assert (await client.get(f"/api/goods/{goods.goods_id}")).status == 200
        assert (await client.get("/api/goods?page=0&size=10")).status == 200
    assert pages.loads == loads  # served from the cache, checked against Redis
    # An edit through the API: both pages show it on the very next read.
    resp = await client.patch(
        f"/api/auth/goods/{goods.goods_id}", json={"goodsName": "Silk Shirt"}, headers=bearer(token)
    )
    assert resp.status == 200, await resp.text()
    detail = (await (await client.get(f"/api/goods/{goods.goods_id}")).json())["data"]
    listing = (await (await client.get("/api/goods?page=0&size=10")).json())["data"]
    assert detail["goodsName"] == "Silk Shirt"
    assert listing["items"][0]["goodsName"] == "Silk Shirt"
    # An edit that bypasses the API (the CLI, another host): the goods' version in Redis moves.
    await shop.goods.update(seller_id, goods.goods_id, {"price": 12_345})
    detail = (await (await client.get(f"/api/goods/{goods.goods_id}")).json())["data"]
    listing = (await (await client.get("/api/goods?page=0&size=10")).json())["data"]
    assert detail["goodsPrice"] == 12_345
    assert listing["items"][0]["goodsPrice"] == 12_345


async def test_new_goods_show_in_the_listing_at_once_through_the_api(client, shop):
    seller_id, token = await add_user(shop, "seller@example.com")
    await add_goods(shop, seller_id, stock=5, name="First")
    first = await (await client.get("/api/goods?page=0&size=10")).json()
    assert first["data"]["totalItems"] == 1
    resp = await client.post(
        "/api/auth/goods",
        json={
            "goodsName": "Second",
            "goodsDescription": "Fresh goods",
            "goodsPrice": 1000,
            "stockQuantity": 3,
            "category": "ETC",
        },
        headers=bearer(token),
    )
    assert resp.status == 201, await resp.text()
    listing = (await (await client.get("/api/goods?page=0&size=10")).json())["data"]
    assert [g["goodsName"] for g in listing["items"]] == ["Second", "First"]
    assert listing["totalItems"] == 2


async def test_sale_open_follows_the_clock_on_a_cached_page(client, shop, clock):
    opens = clock.advance(hours=1)
    clock.advance(hours=-1)
    goods = await add_goods(shop, stock=5, opens=opens)
    url = f"/api/goods/{goods.goods_id}"
    assert (await (await client.get(url)).json())["data"]["saleOpen"] is False
    clock.set(opens)
    assert (await (await client.get(url)).json())["data"]["saleOpen"] is True


async def test_openapi_documents_the_caching_headers(client):
    doc = await (await client.get("/openapi.json")).json()
    for path, cache in [
        ("/api/goods/{goodsId}", GOODS_CACHE),
        ("/api/goods/{goodsId}/stock", STOCK_CACHE),
        ("/api/goods", LISTING_CACHE),
    ]:
        op = doc["paths"][path]["get"]
        assert {"ETag", "Cache-Control", "Vary"} <= set(op["responses"]["200"]["headers"])
        assert cache in op["responses"]["200"]["headers"]["Cache-Control"]["description"]
        assert "304" in op["responses"]
        assert any(p["name"] == "If-None-Match" and p["in"] == "header" for p in op["parameters"])


async def test_shared_reads_are_never_older_than_the_request(client, shop):
    """Requests that come while a stock read is on its way share the next one, never the one
    in flight: a change finished before a request came is always in its answer."""
    seller_id, _ = await add_user(shop, "seller@example.com", admin=True)
    goods = await add_goods(shop, seller_id, stock=5)
    pages = client.app[PAGES]
    reads = pages.primary.reads
    before = [asyncio.create_task(pages.stock(goods.goods_id)) for _ in range(50)]
    await asyncio.sleep(0)  # the first read is now on its way
    await shop.goods.restock(seller_id, True, goods.goods_id, 1)
    after = await asyncio.gather(*(pages.stock(goods.goods_id) for _ in range(50)))
    assert after == [6] * 50
    assert set(await asyncio.gather(*before)) <= {5, 6}
    assert pages.primary.reads - reads <= 4  # a hundred requests, a handful of round trips
