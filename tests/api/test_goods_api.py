"""Goods over HTTP: every rule and error code of the goods table in API.md."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tests.support.shop import add_user, bearer

NEW = {
    "goodsName": "Linen Shirt",
    "goodsDescription": "A shirt for the summer sale",
    "goodsPrice": 39000,
    "stockQuantity": 100,
    "category": "FASHION",
}


async def _post(client, token, body, path="/api/auth/goods"):
    resp = await client.post(path, json=body, headers=bearer(token))
    return resp.status, await resp.json()


async def _count(shop) -> int:
    return await shop.db.read(lambda c: c.execute("SELECT COUNT(*) FROM goods").fetchone()[0])


async def test_register_then_show_list_and_stock(client, shop, clock):
    seller, token = await add_user(shop, "seller@example.com")
    opens = (clock.now() + timedelta(days=1)).isoformat()
    status, body = await _post(client, token, {**NEW, "reservationStartTime": opens})
    assert status == 201, body
    data = body["data"]
    assert data["goodsName"] == "Linen Shirt" and data["stockQuantity"] == 100
    assert data["sellerId"] == seller and data["sellerName"] == "Kim Miri"
    assert data["saleOpen"] is False and data["perBuyerLimit"] is None
    # Times leave the shop in its zone (Asia/Seoul) with the offset.
    assert data["reservationStartTime"] == "2026-11-24T10:00:00+09:00"
    gid = data["goodsId"]
    resp = await client.get(f"/api/goods/{gid}")
    detail = (await resp.json())["data"]
    assert detail == data
    resp = await client.get(f"/api/goods/{gid}/stock")
    assert (await resp.json())["data"] == {"goodsId": gid, "stockQuantity": 100}
    clock.advance(days=1)
    resp = await client.get(f"/api/goods/{gid}")
    assert (await resp.json())["data"]["saleOpen"] is True


async def test_a_time_without_offset_is_read_in_the_shop_zone(client, shop):
    _, token = await add_user(shop, "seller@example.com")
    status, body = await _post(
        client, token, {**NEW, "reservationStartTime": "2026-12-01T10:00:00"}
    )
    assert status == 201, body
    assert body["data"]["reservationStartTime"] == "2026-12-01T10:00:00+09:00"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("goodsName", ""),
        ("goodsName", "x" * 21),
        ("goodsName", "   "),
        ("goodsName", 5),
        ("goodsDescription", ""),
        ("goodsDescription", "x" * 256),
        ("goodsPrice", -1),
        ("goodsPrice", "39000"),
        ("goodsPrice", 1.5),
        ("goodsPrice", True),
        ("goodsPrice", 10**12),
        ("stockQuantity", -1),
        ("stockQuantity", "10"),
        ("category", "FOOD"),
        ("category", "fashion"),
        ("reservationStartTime", "2020-01-01T00:00:00+09:00"),
        ("reservationStartTime", "tomorrow"),
        ("reservationStartTime", 1700000000),
        ("perBuyerLimit", 0),
        ("perBuyerLimit", "2"),
    ],
)
async def test_register_refuses_bad_fields_and_stores_nothing(client, shop, field, value):
    _, token = await add_user(shop, "seller@example.com")
    status, body = await _post(client, token, {**NEW, field: value})
    assert status == 400, body
    assert body["code"] == -1 and body["error"] == "VALIDATION_FAILED"
    assert list(body["data"]) == [field], body["data"]
    assert await _count(shop) == 0


async def test_register_needs_every_required_field_a_json_object_and_a_token(client, shop):
    _, token = await add_user(shop, "seller@example.com")
    status, body = await _post(client, token, {"goodsName": "Shirt"})
    assert status == 400
    assert set(body["data"]) == {"goodsDescription", "goodsPrice", "stockQuantity", "category"}
    resp = await client.post("/api/auth/goods", data="{not json", headers=bearer(token))
    assert resp.status == 400 and (await resp.json())["error"] == "MALFORMED_JSON"
    resp = await client.post("/api/auth/goods", json=[NEW], headers=bearer(token))
    assert resp.status == 400 and (await resp.json())["error"] == "MALFORMED_JSON"
    resp = await client.post("/api/auth/goods", json=NEW)
    assert resp.status == 401 and (await resp.json())["error"] == "UNAUTHENTICATED"
    assert await _count(shop) == 0


async def test_edit_is_for_the_seller_only(client, shop, clock):
    _, seller = await add_user(shop, "seller@example.com")
    _, stranger = await add_user(shop, "other@example.com")
    _, body = await _post(client, seller, NEW)
    gid = body["data"]["goodsId"]
    path = f"/api/auth/goods/{gid}"
    resp = await client.patch(path, json={"goodsPrice": 1}, headers=bearer(stranger))
    assert resp.status == 403 and (await resp.json())["error"] == "FORBIDDEN"
    resp = await client.patch("/api/auth/goods/999", json={"goodsPrice": 1}, headers=bearer(seller))
    assert resp.status == 404 and (await resp.json())["error"] == "NOT_FOUND"
    opens = (clock.now() + timedelta(hours=2)).isoformat()
    changes = {
        "goodsName": "Silk Shirt",
        "goodsDescription": "Ten or more characters",
        "goodsPrice": 45000,
        "category": "ETC",
        "reservationStartTime": opens,
        "perBuyerLimit": 2,
    }
    resp = await client.patch(path, json=changes, headers=bearer(seller))
    data = (await resp.json())["data"]
    assert resp.status == 200
    assert (data["goodsName"], data["goodsPrice"], data["category"]) == ("Silk Shirt", 45000, "ETC")
    assert data["perBuyerLimit"] == 2 and data["saleOpen"] is False
    # null clears the opening time and the limit
    resp = await client.patch(
        path, json={"reservationStartTime": None, "perBuyerLimit": None}, headers=bearer(seller)
    )
    data = (await resp.json())["data"]
    assert data["reservationStartTime"] is None and data["perBuyerLimit"] is None
    assert data["saleOpen"] is True and data["goodsName"] == "Silk Shirt"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"goodsDescription": "too short"},
        {"goodsName": None},
        {"goodsPrice": -5},
        {"category": "FOOD"},
        {"reservationStartTime": "2000-01-01T00:00:00Z"},
        {"perBuyerLimit": 0},
        {"stockQuantity": 5},
    ],
)
async def test_edit_refuses_bad_fields_and_changes_nothing(client, shop, body):
    _, seller = await add_user(shop, "seller@example.com")
    _, created = await _post(client, seller, NEW)
    gid = created["data"]["goodsId"]
    resp = await client.patch(f"/api/auth/goods/{gid}", json=body, headers=bearer(seller))
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"] == "VALIDATION_FAILED"
    resp = await client.get(f"/api/goods/{gid}")
    assert (await resp.json())["data"] == created["data"]


async def test_restock_by_seller_or_admin(client, shop):
    _, seller = await add_user(shop, "seller@example.com")
    _, stranger = await add_user(shop, "other@example.com")
    _, admin = await add_user(shop, "admin@example.com", admin=True)
    _, created = await _post(client, seller, NEW)
    gid = created["data"]["goodsId"]
    path = f"/api/auth/goods/{gid}/restock"
    status, body = await _post(client, seller, {"quantity": 5}, path)
    assert status == 200 and body["data"] == {"goodsId": gid, "stockQuantity": 105}
    status, body = await _post(client, admin, {"quantity": 10}, path)
    assert status == 200 and body["data"]["stockQuantity"] == 115
    status, body = await _post(client, stranger, {"quantity": 10}, path)
    assert status == 403 and body["error"] == "FORBIDDEN"
    for bad in (0, -1, "3", 2**40):
        status, body = await _post(client, seller, {"quantity": bad}, path)
        assert status == 400 and list(body["data"]) == ["quantity"]
    status, body = await _post(client, seller, {"quantity": 1}, "/api/auth/goods/999/restock")
    assert status == 404
    assert await shop.goods.live_stock(gid) == 115
    assert (await shop.goods.get(gid)).stock_total == 115


async def test_listing_pages_filters_and_searches(client, shop):
    _, seller = await add_user(shop, "seller@example.com")
    names = ["Tote Bag", "Lip Balm", "100% Cotton Tee", "Hand Cream", "Tote Mini"]
    cats = ["FASHION", "BEAUTY", "FASHION", "BEAUTY", "ETC"]
    for name, cat in zip(names, cats, strict=True):
        await _post(client, seller, {**NEW, "goodsName": name, "category": cat})
    resp = await client.get("/api/goods?page=0&size=2")
    page = (await resp.json())["data"]
    assert [g["goodsName"] for g in page["items"]] == ["Tote Mini", "Hand Cream"]
    assert (page["totalItems"], page["totalPages"], page["size"]) == (5, 3, 2)
    assert set(page["items"][0]) == {
        "goodsId",
        "goodsName",
        "goodsPrice",
        "category",
        "reservationStartTime",
        "stockQuantity",
    }
    resp = await client.get("/api/goods?page=2&size=2")
    assert [g["goodsName"] for g in (await resp.json())["data"]["items"]] == ["Tote Bag"]
    resp = await client.get("/api/goods?category=BEAUTY")
    assert [g["goodsName"] for g in (await resp.json())["data"]["items"]] == [
        "Hand Cream",
        "Lip Balm",
    ]
    resp = await client.get("/api/goods", params={"q": "tote"})
    assert (await resp.json())["data"]["totalItems"] == 2
    resp = await client.get("/api/goods", params={"q": "%"})  # a literal %, not a wildcard
    assert [g["goodsName"] for g in (await resp.json())["data"]["items"]] == ["100% Cotton Tee"]
    resp = await client.get("/api/goods", params={"q": "tote", "category": "ETC"})
    assert (await resp.json())["data"]["totalItems"] == 1
    for query in ("size=0", "size=101", "page=-1", "page=x", "category=FOOD", "q="):
        resp = await client.get(f"/api/goods?{query}")
        body = await resp.json()
        assert resp.status == 400 and body["error"] == "VALIDATION_FAILED", query


async def test_unknown_goods_are_404(client):
    for path in ("/api/goods/999", "/api/goods/abc", "/api/goods/0", "/api/goods/999/stock"):
        resp = await client.get(path)
        assert resp.status == 404 and (await resp.json())["error"] == "NOT_FOUND", path


async def test_my_goods_and_my_page(client, shop):
    _, seller = await add_user(shop, "seller@example.com")
    _, other = await add_user(shop, "other@example.com")
    for name in ("Tote Bag", "Lip Balm"):
        await _post(client, seller, {**NEW, "goodsName": name})
    await _post(client, other, {**NEW, "goodsName": "Hand Cream"})
    resp = await client.get("/api/auth/my/goods?size=1", headers=bearer(seller))
    page = (await resp.json())["data"]
    assert page["totalItems"] == 2 and [g["goodsName"] for g in page["items"]] == ["Lip Balm"]
    resp = await client.get("/api/auth/my/goods")
    assert resp.status == 401
    resp = await client.get("/api/auth/users", headers=bearer(seller))
    data = (await resp.json())["data"]
    assert data["registeredGoods"]["totalItems"] == 2
    assert data["wishList"] == {
        "items": [],
        "page": 0,
        "size": 10,
        "totalItems": 0,
        "totalPages": 0,
    }


async def test_openapi_describes_the_goods_routes(client):
    doc = await (await client.get("/openapi.json")).json()
    assert "/api/goods/{goodsId}/stock" in doc["paths"]
    patch = doc["paths"]["/api/auth/goods/{goodsId}"]["patch"]
    assert {"400", "401", "403", "404"} <= set(patch["responses"])


async def test_three_hundred_concurrent_buyers_over_http(client, shop):
    """The order route belongs to the orders module; this runs once it is registered."""
    if not any(r.resource.canonical == "/api/auth/orders" for r in client.app.router.routes()):
        pytest.skip("POST /api/auth/orders is not registered yet")
    _, seller = await add_user(shop, "seller@example.com")
    _, created = await _post(client, seller, {**NEW, "stockQuantity": 100})
    gid = created["data"]["goodsId"]
    tokens = [(await add_user(shop, f"buyer{i}@example.com"))[1] for i in range(300)]

    async def order(token: str) -> int:
        resp = await client.post(
            "/api/auth/orders",
            json={"goodsId": gid, "quantity": 1, "address": "Seoul 1"},
            headers=bearer(token),
        )
        return resp.status

    statuses = await asyncio.gather(*(order(t) for t in tokens))
    assert statuses.count(201) == 100 and statuses.count(409) == 200
    assert await shop.goods.live_stock(gid) == 0
