"""The wishlist over HTTP: adds that sum up, one user never touching another's entries."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from miri.domain.errors import NotFound
from miri.domain.goods import wishlist_store
from tests.support.goods import add_goods
from tests.support.shop import add_user, bearer

PATH = "/api/auth/wishlist"


async def _add(client, token, goods_id, quantity=1):
    resp = await client.post(
        PATH, json={"goodsId": goods_id, "goodsQuantity": quantity}, headers=bearer(token)
    )
    return resp.status, await resp.json()


async def _rows(shop) -> list[tuple]:
    return await shop.db.read(
        lambda c: [tuple(r) for r in c.execute("SELECT user_id, goods_id, quantity FROM wishlist")]
    )


async def test_add_again_adds_to_the_quantity(client, shop):
    buyer, token = await add_user(shop)
    goods = await add_goods(shop, stock=7, price=5000)
    status, body = await _add(client, token, goods.goods_id, 2)
    assert status == 201
    wish_id = body["data"]["wishListId"]
    assert body["data"] == {"wishListId": wish_id, "goodsId": goods.goods_id, "goodsQuantity": 2}
    status, body = await _add(client, token, goods.goods_id, 3)
    assert status == 201 and body["data"] == {
        "wishListId": wish_id,
        "goodsId": goods.goods_id,
        "goodsQuantity": 5,
    }
    assert await _rows(shop) == [(buyer, goods.goods_id, 5)]


async def test_list_shows_live_stock_and_whether_the_sale_is_open(client, shop, clock):
    _, token = await add_user(shop)
    seller, _ = await add_user(shop, "seller@example.com")
    now_on = await add_goods(shop, seller, stock=7, price=5000, name="Tote Bag")
    later = await add_goods(
        shop, seller, stock=3, name="Lip Balm", opens=clock.now() + timedelta(minutes=20)
    )
    await _add(client, token, now_on.goods_id, 2)
    await _add(client, token, later.goods_id, 1)
    await shop.goods.reserve(999, now_on.goods_id, 4)
    resp = await client.get(PATH, headers=bearer(token))
    page = (await resp.json())["data"]
    assert page["totalItems"] == 2 and page["totalPages"] == 1
    first, second = page["items"]
    assert first["goodsName"] == "Lip Balm" and first["saleOpen"] is False
    assert first["stockQuantity"] == 3
    assert second == {
        "wishListId": second["wishListId"],
        "goodsId": now_on.goods_id,
        "goodsName": "Tote Bag",
        "goodsPrice": 5000,
        "goodsQuantity": 2,
        "stockQuantity": 3,
        "saleOpen": True,
    }
    clock.advance(minutes=20)  # tokens live an hour
    resp = await client.get(f"{PATH}?size=1", headers=bearer(token))
    page = (await resp.json())["data"]
    assert page["items"][0]["saleOpen"] is True and page["totalPages"] == 2


async def test_change_and_remove(client, shop):
    _, token = await add_user(shop)
    goods = await add_goods(shop)
    _, body = await _add(client, token, goods.goods_id, 2)
    wish_id = body["data"]["wishListId"]
    resp = await client.patch(f"{PATH}/{wish_id}", json={"goodsQuantity": 9}, headers=bearer(token))
    assert resp.status == 200 and (await resp.json())["data"]["goodsQuantity"] == 9
    resp = await client.delete(f"{PATH}/{wish_id}", headers=bearer(token))
    assert resp.status == 200
    resp = await client.delete(f"{PATH}/{wish_id}", headers=bearer(token))
    assert resp.status == 404 and (await resp.json())["error"] == "NOT_FOUND"
    assert await _rows(shop) == []


async def test_another_users_entry_is_not_found(client, shop):
    owner, owner_token = await add_user(shop)
    _, other = await add_user(shop, "other@example.com")
    goods = await add_goods(shop)
    _, body = await _add(client, owner_token, goods.goods_id, 2)
    wish_id = body["data"]["wishListId"]
    resp = await client.patch(f"{PATH}/{wish_id}", json={"goodsQuantity": 1}, headers=bearer(other))
    assert resp.status == 404 and (await resp.json())["error"] == "NOT_FOUND"
    resp = await client.delete(f"{PATH}/{wish_id}", headers=bearer(other))
    assert resp.status == 404
    resp = await client.get(PATH, headers=bearer(other))
    assert (await resp.json())["data"]["totalItems"] == 0
    for path in (f"{PATH}/999", f"{PATH}/abc", f"{PATH}/0"):
        resp = await client.delete(path, headers=bearer(owner_token))
        assert resp.status == 404, path
    assert await _rows(shop) == [(owner, goods.goods_id, 2)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"goodsQuantity": 1}, "goodsId"),
        ({"goodsId": 0, "goodsQuantity": 1}, "goodsId"),
        ({"goodsId": "1", "goodsQuantity": 1}, "goodsId"),
        ({"goodsId": 1, "goodsQuantity": 0}, "goodsQuantity"),
        ({"goodsId": 1, "goodsQuantity": -2}, "goodsQuantity"),
        ({"goodsId": 1, "goodsQuantity": "2"}, "goodsQuantity"),
        ({"goodsId": 1, "goodsQuantity": 10001}, "goodsQuantity"),
        ({"goodsId": 1}, "goodsQuantity"),
    ],
)
async def test_add_refuses_bad_fields(client, shop, body, field):
    _, token = await add_user(shop)
    await add_goods(shop)
    resp = await client.post(PATH, json=body, headers=bearer(token))
    answer = await resp.json()
    assert resp.status == 400 and answer["error"] == "VALIDATION_FAILED"
    assert list(answer["data"]) == [field]
    assert await _rows(shop) == []


async def test_other_refusals(client, shop):
    _, token = await add_user(shop)
    goods = await add_goods(shop)
    status, body = await _add(client, token, 999)
    assert status == 404 and body["error"] == "NOT_FOUND"
    status, body = await _add(client, token, goods.goods_id, 9000)
    status, body = await _add(client, token, goods.goods_id, 2000)  # total over 10,000
    assert status == 400 and list(body["data"]) == ["goodsQuantity"]
    wish = (await shop.wishlist.page(1))[0][0].entry
    assert wish.quantity == 9000
    path = f"{PATH}/{wish.wish_id}"
    for bad in ({"goodsQuantity": 0}, {"goodsQuantity": "1"}, {}):
        resp = await client.patch(path, json=bad, headers=bearer(token))
        assert resp.status == 400, bad
    resp = await client.post(PATH, json={"goodsId": goods.goods_id, "goodsQuantity": 1})
    assert resp.status == 401
    resp = await client.get(f"{PATH}?size=500", headers=bearer(token))
    assert resp.status == 400


async def test_three_hundred_concurrent_adds_make_one_row(client, shop):
    buyer, token = await add_user(shop)
    goods = await add_goods(shop)
    statuses = await asyncio.gather(*(_add(client, token, goods.goods_id) for _ in range(300)))
    assert {s for s, _ in statuses} == {201}
    assert await _rows(shop) == [(buyer, goods.goods_id, 300)]


async def test_entries_for_orders(shop):
    buyer, _ = await add_user(shop)
    other, _ = await add_user(shop, "other@example.com")
    seller, _ = await add_user(shop, "seller@example.com")
    a = await add_goods(shop, seller, name="Tote Bag")
    b = await add_goods(shop, seller, name="Lip Balm")
    wa = await shop.wishlist.add(buyer, a.goods_id, 2)
    wb = await shop.wishlist.add(buyer, b.goods_id, 1)
    wo = await shop.wishlist.add(other, a.goods_id, 1)
    assert await shop.wishlist.entries(buyer, [wb.wish_id, wa.wish_id]) == [wb, wa]
    with pytest.raises(NotFound):
        await shop.wishlist.entries(buyer, [wa.wish_id, wo.wish_id])
    # Inside an order's own transaction: only the user's own entries go.
    ids = [wa.wish_id, wb.wish_id, wo.wish_id]
    assert await shop.db.write(lambda c: wishlist_store.delete_entries(c, buyer, ids)) == 2
    assert await _rows(shop) == [(other, a.goods_id, 1)]
