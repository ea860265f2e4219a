"""Selling and fulfilment over HTTP, on SQLite and PostgreSQL: my sales, the packing list, ship
by hand, the admin's item detail; buyer data only for the item's seller and admins."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from tests.support.shop import add_user, bearer, make_settings

pytestmark = pytest.mark.both_engines
LONG_TOKENS = {"token_ttl": 30 * 24 * 3600}
SHIP = {"carrier": "CJ Logistics", "trackingNumber": "6123-4567-8901"}


@pytest.fixture
def settings(data_dir, database_url):
    return make_settings(data_dir, database_url=database_url, **LONG_TOKENS)


async def goods_of(client: Any, token: str, name: str = "Winter coat", stock: int = 10) -> int:
    body = {
        "goodsName": name,
        "goodsDescription": "A warm wool coat for the sale",
        "goodsPrice": 1000,
        "stockQuantity": stock,
        "category": "FASHION",
    }
    resp = await client.post("/api/auth/goods", json=body, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    return (await resp.json())["data"]["goodsId"]


async def order(client: Any, token: str, goods_id: int, address: str, quantity: int = 1) -> int:
    resp = await client.post(
        "/api/auth/orders",
        json={"goodsId": goods_id, "quantity": quantity, "address": address},
        headers=bearer(token),
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["data"]["items"][0]["orderDetailId"]


@pytest.fixture
async def sale(client: Any, shop: Any) -> dict[str, Any]:
    """Two sellers; a buyer ordered from the first (paid), another buyer from the second."""
    seller_id, seller = await add_user(shop, "seller@example.com")
    _, rival = await add_user(shop, "rival@example.com")
    buyer_id, buyer = await add_user(shop, "buyer@example.com")
    _, other = await add_user(shop, "other@example.com")
    _, admin = await add_user(shop, "admin@example.com", admin=True)
    coat = await goods_of(client, seller, "Winter coat")
    scarf = await goods_of(client, rival, "Scarf")
    item = await order(client, buyer, coat, "Seoul Mapo 12", 2)
    rival_item = await order(client, other, scarf, "Busan Haeundae 3")
    assert await shop.bus.drain(timeout=20)
    return {
        "seller": seller,
        "seller_id": seller_id,
        "rival": rival,
        "buyer": buyer,
        "buyer_id": buyer_id,
        "other": other,
        "admin": admin,
        "coat": coat,
        "item": item,
        "rival_item": rival_item,
    }


async def test_my_sales_show_buyer_and_address_to_the_seller_only(client, sale):
    resp = await client.get("/api/auth/my/sales", headers=bearer(sale["seller"]))
    assert resp.status == 200, await resp.text()
    page = (await resp.json())["data"]
    assert page["totalItems"] == 1
    [row] = page["items"]
    assert row["orderDetailId"] == sale["item"] and row["goodsName"] == "Winter coat"
    assert (row["buyerName"], row["phoneNumber"], row["address"]) == (
        "Kim Miri",
        "010-1234-5678",
        "Seoul Mapo 12",  # the order's address, not the profile's
    )
    assert (row["orderStatus"], row["paymentStatus"], row["shippingStatus"]) == (
        "COMPLETED",
        "PAYMENT_COMPLETED",
        "PENDING",
    )
    assert row["carrier"] is None and row["trackingNumber"] is None
    # The rival sees only their own sale; a buyer who sold nothing sees nothing.
    rival = await (await client.get("/api/auth/my/sales", headers=bearer(sale["rival"]))).json()
    assert [r["orderDetailId"] for r in rival["data"]["items"]] == [sale["rival_item"]]
    assert rival["data"]["items"][0]["address"] == "Busan Haeundae 3"
    none = await (await client.get("/api/auth/my/sales", headers=bearer(sale["buyer"]))).json()
    assert none["data"]["items"] == [] and none["data"]["totalItems"] == 0


async def test_my_sales_filters_and_validation(client, sale):
    h = bearer(sale["seller"])
    for query, count in (
        ("?status=COMPLETED", 1),
        ("?status=CANCELED", 0),
        ("?shippingStatus=PENDING", 1),
        ("?shippingStatus=IN_TRANSIT", 0),
        (f"?goodsId={sale['coat']}", 1),
        (f"?goodsId={sale['coat'] + 1}", 0),
    ):
        resp = await client.get(f"/api/auth/my/sales{query}", headers=h)
        assert (await resp.json())["data"]["totalItems"] == count, query
    for query in ("?status=SHIPPED", "?goodsId=x", "?size=0", "?page=-1"):
        resp = await client.get(f"/api/auth/my/sales{query}", headers=h)
        assert resp.status == 400 and (await resp.json())["error"] == "VALIDATION_FAILED", query
    assert (await client.get("/api/auth/my/sales")).status == 401


async def test_packing_list_csv(client, shop, sale):
    # A buyer whose name would run as a spreadsheet formula.
    await shop.users.add_user(
        email="formula@example.com",
        password="password123!",
        user_name="Kim Miri",
        phone_number="010-2222-3333",
        address="Seoul 1",
    )
    _, token = await add_user(shop, "third@example.com")
    await order(client, token, sale["coat"], "Jeju 5 #201")
    resp = await client.get("/api/auth/my/sales.csv", headers=bearer(sale["seller"]))
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert [r["orderDetailId"] for r in rows] == [str(sale["item"]), str(sale["item"] + 2)]
    assert rows[0]["address"] == "Seoul Mapo 12" and rows[1]["address"] == "Jeju 5 #201"
    assert rows[0]["buyerName"] == "Kim Miri" and rows[0]["quantity"] == "2"
    resp = await client.get(
        "/api/auth/my/sales.csv?status=COMPLETED", headers=bearer(sale["seller"])
    )
    assert len(list(csv.DictReader(io.StringIO(await resp.text())))) == 1
    resp = await client.get("/api/auth/my/sales.csv", headers=bearer(sale["other"]))
    assert list(csv.DictReader(io.StringIO(await resp.text()))) == []


async def test_seller_ships_and_the_daily_run_delivers(client, shop, clock, sale):
    url = f"/api/auth/my/sales/{sale['item']}/ship"
    resp = await client.post(url, json=SHIP, headers=bearer(sale["seller"]))
    assert resp.status == 200, await resp.text()
    data = (await resp.json())["data"]
    assert (data["shippingStatus"], data["carrier"], data["trackingNumber"]) == (
        "IN_TRANSIT",
        "CJ Logistics",
        "6123-4567-8901",
    )
    assert data["shippedAt"].endswith("+09:00")
    # Shipped once: again is refused, and the buyer can no longer cancel.
    resp = await client.post(url, json=SHIP, headers=bearer(sale["seller"]))
    assert resp.status == 409 and (await resp.json())["error"] == "INVALID_STATE"
    resp = await client.post(
        f"/api/auth/orders/{sale['item']}/cancel", headers=bearer(sale["buyer"])
    )
    assert resp.status == 409
    # The buyer sees it moving; the daily run delivers it a day after it was shipped.
    mine = await client.get(f"/api/auth/orders/{sale['item']}", headers=bearer(sale["buyer"]))
    assert (await mine.json())["data"]["shippingStatus"] == "IN_TRANSIT"
    assert await shop.jobs.run("shipping") == {"inTransit": 0, "delivered": 0}
    clock.advance(days=1, seconds=1)
    # The rival's unshipped item takes its first daily step; the shipped one is delivered.
    assert await shop.jobs.run("shipping") == {"inTransit": 1, "delivered": 1}
    mine = await client.get(f"/api/auth/orders/{sale['item']}", headers=bearer(sale["buyer"]))
    assert (await mine.json())["data"]["shippingStatus"] == "DELIVERED"


async def test_only_the_seller_or_an_admin_ships(client, shop, sale):
    url = f"/api/auth/my/sales/{sale['item']}/ship"
    for who in ("rival", "buyer", "other", "admin"):  # admin ships through the admin route
        resp = await client.post(url, json=SHIP, headers=bearer(sale[who]))
        assert resp.status == 404, who
        assert (await resp.json())["error"] == "NOT_FOUND"
    assert (await client.post(url, json=SHIP)).status == 401
    for bad in (
        {},
        {"carrier": "CJ"},
        {"carrier": "", "trackingNumber": "1234"},
        {"carrier": "CJ", "trackingNumber": "12"},
        {"carrier": "CJ", "trackingNumber": "12 34 56"},
        {"carrier": "CJ", "trackingNumber": 12345678},
        {"carrier": "CJ\n", "trackingNumber": "12345678"},
        {"carrier": "x" * 31, "trackingNumber": "12345678"},
    ):
        resp = await client.post(url, json=bad, headers=bearer(sale["seller"]))
        assert resp.status == 400, bad
        assert (await resp.json())["error"] == "VALIDATION_FAILED", bad
    # Nothing moved.
    got = await shop.sales.get(None, sale["item"])
    assert got.item.shipping_status == "PENDING" and got.carrier is None
    # The admin's route ships any seller's item.
    resp = await client.post(
        f"/api/admin/orders/{sale['rival_item']}/ship", json=SHIP, headers=bearer(sale["admin"])
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["data"]["trackingNumber"] == "6123-4567-8901"
    resp = await client.post(
        f"/api/admin/orders/{sale['item']}/ship", json=SHIP, headers=bearer(sale["seller"])
    )
    assert resp.status == 403


async def test_unpaid_or_canceled_items_cannot_ship(make_client, clock):
    shop, client = await make_client(**LONG_TOKENS)
    _, seller = await add_user(shop, "seller@example.com")
    _, buyer = await add_user(shop, "buyer@example.com")
    coat = await goods_of(client, seller)
    unpaid = await order(client, buyer, coat, "Seoul 1")  # the bus has not run: still unpaid
    url = f"/api/auth/my/sales/{unpaid}/ship"
    resp = await client.post(url, json=SHIP, headers=bearer(seller))
    assert resp.status == 409 and (await resp.json())["error"] == "INVALID_STATE"
    resp = await client.post(f"/api/auth/orders/{unpaid}/cancel", headers=bearer(buyer))
    assert resp.status == 200
    resp = await client.post(url, json=SHIP, headers=bearer(seller))
    assert resp.status == 409
    assert (await shop.sales.get(None, unpaid)).item.shipping_status == "CANCELED"


async def test_admin_item_detail(client, sale):
    resp = await client.get(f"/api/admin/orders/{sale['item']}", headers=bearer(sale["admin"]))
    assert resp.status == 200, await resp.text()
    data = (await resp.json())["data"]
    assert data["buyer"] == {
        "userId": sale["buyer_id"],
        "userName": "Kim Miri",
        "email": "buyer@example.com",
        "phoneNumber": "010-1234-5678",
    }
    assert data["address"] == "Seoul Mapo 12" and data["sellerId"] == sale["seller_id"]
    assert data["paymentStatus"] == "PAYMENT_COMPLETED" and data["shippingStatus"] == "PENDING"
    for who in ("seller", "buyer"):
        resp = await client.get(f"/api/admin/orders/{sale['item']}", headers=bearer(sale[who]))
        assert resp.status == 403, who
    resp = await client.get("/api/admin/orders/999999", headers=bearer(sale["admin"]))
    assert resp.status == 404


async def test_buyer_data_is_encrypted_at_rest(client, shop, sale):
    def raw(conn: Any) -> bytes:
        return b"".join(
            bytes(r[0]) for r in conn.execute("SELECT address_enc FROM orders").fetchall()
        )

    assert b"Mapo" not in await shop.db.read(raw)
