"""Orders over HTTP, on SQLite and PostgreSQL: placing, the life of an item, cancel, return,
idempotency, expiry."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from tests.support.goods import post_goods
from tests.support.shop import add_user, bearer, make_settings

ADDRESS = "Seoul Mapo 12"
# These tests move the clock by days; tokens must outlive that.
LONG_TOKENS = {"token_ttl": 30 * 24 * 3600}
pytestmark = pytest.mark.both_engines


@pytest.fixture
def settings(data_dir, database_url):
    return make_settings(data_dir, database_url=database_url, **LONG_TOKENS)


async def register_goods(
    client: Any,
    token: str,
    *,
    stock: int = 10,
    price: int = 1000,
    opens: str | None = None,
    limit: int | None = None,
) -> int:
    return await post_goods(
        client,
        token,
        goodsName="Winter coat",
        goodsPrice=price,
        stockQuantity=stock,
        reservationStartTime=opens,
        perBuyerLimit=limit,
    )


async def order(
    client: Any, token: str, goods_id: int, quantity: int = 1, key: str | None = None
) -> Any:
    headers = bearer(token)
    if key:
        headers["Idempotency-Key"] = key
    return await client.post(
        "/api/auth/orders",
        json={"goodsId": goods_id, "quantity": quantity, "address": ADDRESS},
        headers=headers,
    )


async def stock(client: Any, goods_id: int) -> int:
    resp = await client.get(f"/api/goods/{goods_id}/stock")
    return (await resp.json())["data"]["stockQuantity"]


async def item(client: Any, token: str, detail_id: int) -> dict[str, Any]:
    resp = await client.get(f"/api/auth/orders/{detail_id}", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]


@pytest.fixture
async def people(shop: Any) -> dict[str, str]:
    _, seller = await add_user(shop, "seller@example.com")
    _, buyer = await add_user(shop, "buyer@example.com")
    _, other = await add_user(shop, "other@example.com")
    _, admin = await add_user(shop, "admin@example.com", admin=True)
    return {"seller": seller, "buyer": buyer, "other": other, "admin": admin}


async def test_life_of_an_order(client, shop, clock, people):
    goods_id = await register_goods(client, people["seller"], stock=5)
    resp = await order(client, people["buyer"], goods_id, 2)
    assert resp.status == 201, await resp.text()
    placed = (await resp.json())["data"]
    assert placed["totalPrice"] == 2000
    [line] = placed["items"]
    assert line["status"] == "PAYMENT_PENDING" and line["unitPrice"] == 1000
    assert await stock(client, goods_id) == 3
    detail = line["orderDetailId"]

    assert await shop.bus.drain(timeout=20)
    got = await item(client, people["buyer"], detail)
    assert (got["orderStatus"], got["paymentStatus"], got["shippingStatus"]) == (
        "COMPLETED",
        "PAYMENT_COMPLETED",
        "PENDING",
    )
    assert got["subTotalPrice"] == 2000 and got["goodsName"] == "Winter coat"
    assert got["orderedAt"].endswith("+09:00")

    # Not yet a day old: the daily run leaves it alone.
    assert await shop.jobs.run("shipping") == {"inTransit": 0, "delivered": 0}
    clock.advance(days=1, seconds=1)
    assert await shop.jobs.run("shipping") == {"inTransit": 1, "delivered": 0}
    # One step per run: the same run moment cannot deliver it.
    assert await shop.jobs.run("shipping") == {"inTransit": 0, "delivered": 0}
    assert (await item(client, people["buyer"], detail))["shippingStatus"] == "IN_TRANSIT"
    resp = await client.post(f"/api/auth/orders/{detail}/cancel", headers=bearer(people["buyer"]))
    assert resp.status == 409 and (await resp.json())["error"] == "INVALID_STATE"

    clock.advance(days=1, seconds=1)
    assert await shop.jobs.run("shipping") == {"inTransit": 0, "delivered": 1}
    reason = {"reason": "The size does not fit me"}
    resp = await client.post(
        f"/api/auth/orders/{detail}/return", json=reason, headers=bearer(people["buyer"])
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["data"]["returnStatus"] == "RETURN_IN_PROGRESS"
    resp = await client.post(
        f"/api/auth/orders/{detail}/return", json=reason, headers=bearer(people["buyer"])
    )
    assert resp.status == 409

    assert await shop.jobs.run("returns") == {"returned": 0}
    clock.advance(days=1, seconds=1)
    assert await shop.jobs.run("returns") == {"returned": 1}
    assert await shop.bus.drain(timeout=20)
    returned = await item(client, people["buyer"], detail)
    assert (returned["returnStatus"], returned["paymentStatus"]) == ("RETURN_COMPLETED", "REFUNDED")
    assert await stock(client, goods_id) == 5
    report = await shop.goods.check_stock(repair=False)
    assert not _mismatches(report)


def _mismatches(report: Any) -> list[Any]:
    if isinstance(report, dict):
        return report.get("mismatches", [])
    return getattr(report, "mismatches", [])


async def test_return_window_is_one_day_after_delivery(client, shop, clock, people):
    goods_id = await register_goods(client, people["seller"])
    detail = (await (await order(client, people["buyer"], goods_id)).json())["data"]["items"][0][
        "orderDetailId"
    ]
    await shop.bus.drain(timeout=20)
    reason = {"reason": "Changed my mind, sorry"}
    resp = await client.post(
        f"/api/auth/orders/{detail}/return", json=reason, headers=bearer(people["buyer"])
    )
    assert resp.status == 409  # not delivered yet
    for _ in range(2):
        clock.advance(days=1, seconds=1)
        await shop.jobs.run("shipping")
    clock.advance(days=1, seconds=1)
    resp = await client.post(
        f"/api/auth/orders/{detail}/return", json=reason, headers=bearer(people["buyer"])
    )
    assert resp.status == 409 and "one day" in (await resp.json())["msg"]
    resp = await client.post(
        f"/api/auth/orders/{detail}/return",
        json={"reason": "short"},
        headers=bearer(people["buyer"]),
    )
    assert resp.status == 400 and "reason" in (await resp.json())["data"]


async def test_abandon_rate_one_gives_every_unit_back(make_client):
    shop, client = await make_client(**LONG_TOKENS, payment_abandon_rate=1.0, payment_seed=7)
    _, seller = await add_user(shop, "seller@example.com")
    _, buyer = await add_user(shop, "buyer@example.com")
    goods_id = await register_goods(client, seller, stock=30)
    answers = await asyncio.gather(*(order(client, buyer, goods_id, 1) for _ in range(30)))
    assert [r.status for r in answers] == [201] * 30
    assert await stock(client, goods_id) == 0
    assert await shop.bus.drain(timeout=30)
    page = await shop.order_views.list(user_id=None, size=100)
    assert page.total_items == 30
    assert {i.order_status for i in page.items} == {"CANCELED"}
    assert {i.payment_status for i in page.items} == {"PAYMENT_ABORTED"}
    assert {i.shipping_status for i in page.items} == {"CANCELED"}
    assert await stock(client, goods_id) == 30
    assert not _mismatches(await shop.goods.check_stock(repair=False))


async def test_cancel_refunds_and_releases_once_under_concurrency(client, shop, people):
    goods_id = await register_goods(client, people["seller"], stock=4)
    detail = (await (await order(client, people["buyer"], goods_id, 3)).json())["data"]["items"][0][
        "orderDetailId"
    ]
    await shop.bus.drain(timeout=20)
    answers = await asyncio.gather(
        *(
            client.post(f"/api/auth/orders/{detail}/cancel", headers=bearer(people["buyer"]))
            for _ in range(20)
        )
    )
    assert sorted(r.status for r in answers) == [200] + [409] * 19
    [won] = [r for r in answers if r.status == 200]
    assert (await won.json())["data"]["paymentStatus"] == "REFUNDED"  # the answer shows it
    assert await stock(client, goods_id) == 4
    await shop.bus.drain(timeout=20)
    got = await item(client, people["buyer"], detail)
    assert (got["orderStatus"], got["paymentStatus"], got["shippingStatus"]) == (
        "CANCELED",
        "REFUNDED",
        "CANCELED",
    )


async def test_cancel_racing_payment_abort_and_expiry_releases_once(make_client, clock):
    shop, client = await make_client(**LONG_TOKENS, payment_abandon_rate=1.0, payment_timeout=60)
    _, seller = await add_user(shop, "seller@example.com")
    _, buyer = await add_user(shop, "buyer@example.com")
    goods_id = await register_goods(client, seller, stock=50)
    details = []
    for _ in range(25):
        body = await (await order(client, buyer, goods_id, 2)).json()
        details.append(body["data"]["items"][0]["orderDetailId"])
    assert await stock(client, goods_id) == 0
    clock.advance(seconds=61)
    # Buyer cancels, payment aborts and expiry all go at once.
    cancels = [client.post(f"/api/auth/orders/{d}/cancel", headers=bearer(buyer)) for d in details]
    await asyncio.gather(*cancels, shop.bus.drain(timeout=30), shop.jobs.run("payment-expiry"))
    assert await shop.bus.drain(timeout=30)
    assert await stock(client, goods_id) == 50
    page = await shop.order_views.list(size=100)
    assert {i.order_status for i in page.items} == {"CANCELED"}
    # Each payment ended once and says how: aborted, or refunded with nothing taken (the cancel
    # came first); no money was taken, so none was given back.
    assert {i.payment_status for i in page.items} <= {"PAYMENT_ABORTED", "REFUNDED"}
    told = await shop.db.read(
        lambda c: c.execute("SELECT COUNT(*) FROM outbox WHERE type = 'PaymentRefunded'").fetchone()
    )
    assert told[0] == 0
    assert not _mismatches(await shop.goods.check_stock(repair=False))


async def test_unpaid_items_expire(make_client, clock):
    shop, client = await make_client(**LONG_TOKENS, payment_timeout=900)
    _, seller = await add_user(shop, "seller@example.com")
    _, buyer = await add_user(shop, "buyer@example.com")
    goods_id = await register_goods(client, seller, stock=3)
    detail = (await (await order(client, buyer, goods_id, 3)).json())["data"]["items"][0][
        "orderDetailId"
    ]
    # The gateway has not answered (the bus has not run): the item waits for payment.
    assert await shop.jobs.run("payment-expiry") == 0
    clock.advance(minutes=15, seconds=1)
    assert await shop.jobs.run("payment-expiry") == 1
    assert await stock(client, goods_id) == 3
    # The late gateway answer does not bring the item back; the money goes back.
    assert await shop.bus.drain(timeout=20)
    got = await item(client, buyer, detail)
    assert got["orderStatus"] == "CANCELED"
    assert got["paymentStatus"] in ("PAYMENT_ABORTED", "REFUNDED")
    assert await stock(client, goods_id) == 3


async def test_idempotent_retry_creates_one_order(client, shop, people):
    goods_id = await register_goods(client, people["seller"], stock=10)
    first = await order(client, people["buyer"], goods_id, 2, key="retry-1")
    again = await asyncio.gather(
        *(order(client, people["buyer"], goods_id, 2, key="retry-1") for _ in range(10))
    )
    assert first.status == 201
    body = await first.json()
    for resp in again:
        assert resp.status == 201
        assert (await resp.json())["data"] == body["data"]
    assert await stock(client, goods_id) == 8
    assert (await shop.order_views.list(size=100)).total_items == 1
    # Same key, other body.
    resp = await order(client, people["buyer"], goods_id, 3, key="retry-1")
    assert resp.status == 409 and (await resp.json())["error"] == "IDEMPOTENCY_CONFLICT"
    # Another user may use the same key for their own order.
    resp = await order(client, people["other"], goods_id, 2, key="retry-1")
    assert resp.status == 201
    resp = await order(client, people["buyer"], goods_id, 1, key="x" * 65)
    assert resp.status == 400


async def test_concurrent_first_requests_with_one_key_make_one_order(client, shop, people):
    goods_id = await register_goods(client, people["seller"], stock=10)
    answers = await asyncio.gather(
        *(order(client, people["buyer"], goods_id, 1, key="same") for _ in range(20))
    )
    bodies = {str((await r.json())["data"]) for r in answers}
    assert {r.status for r in answers} == {201} and len(bodies) == 1
    assert await stock(client, goods_id) == 9


async def test_idempotent_refusal_is_replayed(client, shop, people):
    goods_id = await register_goods(client, people["seller"], stock=1)
    resp = await order(client, people["buyer"], goods_id, 5, key="big")
    assert resp.status == 409 and (await resp.json())["error"] == "SOLD_OUT"
    resp = await order(client, people["buyer"], goods_id, 5, key="big")
    assert resp.status == 409 and (await resp.json())["error"] == "SOLD_OUT"


async def test_order_refusals(client, shop, clock, people):
    opens = (clock.now() + timedelta(hours=1)).isoformat()
    later = await register_goods(client, people["seller"], stock=5, opens=opens)
    resp = await order(client, people["buyer"], later)
    assert resp.status == 409 and (await resp.json())["error"] == "SALE_NOT_OPEN"
    clock.advance(hours=1)
    assert (await order(client, people["buyer"], later)).status == 201

    limited = await register_goods(client, people["seller"], stock=10, limit=2)
    assert (await order(client, people["buyer"], limited, 2)).status == 201
    resp = await order(client, people["buyer"], limited, 1)
    assert resp.status == 409 and (await resp.json())["error"] == "LIMIT_EXCEEDED"

    resp = await order(client, people["buyer"], limited, 100)
    assert resp.status == 409
    resp = await order(client, people["buyer"], 999999)
    assert resp.status == 404
    for bad in (
        {"goodsId": limited, "quantity": 0, "address": ADDRESS},
        {"goodsId": limited, "quantity": -1, "address": ADDRESS},
        {"goodsId": limited, "quantity": "1", "address": ADDRESS},
        {"goodsId": limited, "quantity": 1.5, "address": ADDRESS},
        {"goodsId": limited, "quantity": 10**30, "address": ADDRESS},
        {"goodsId": limited, "quantity": 1, "address": "<script>"},
        {"goodsId": limited, "quantity": 1},
    ):
        resp = await client.post("/api/auth/orders", json=bad, headers=bearer(people["buyer"]))
        assert resp.status == 400, bad
        assert (await resp.json())["error"] == "VALIDATION_FAILED"
    resp = await client.post(
        "/api/auth/orders", json={"goodsId": limited, "quantity": 1, "address": ADDRESS}
    )
    assert resp.status == 401
    assert await stock(client, limited) == 8


async def test_orders_are_private(client, shop, people):
    goods_id = await register_goods(client, people["seller"])
    detail = (await (await order(client, people["buyer"], goods_id)).json())["data"]["items"][0][
        "orderDetailId"
    ]
    for method, path in (
        ("GET", f"/api/auth/orders/{detail}"),
        ("POST", f"/api/auth/orders/{detail}/cancel"),
    ):
        resp = await client.request(method, path, headers=bearer(people["other"]))
        assert resp.status == 404
    resp = await client.get("/api/auth/orders", headers=bearer(people["other"]))
    assert (await resp.json())["data"]["totalItems"] == 0
    resp = await client.get("/api/auth/orders", headers=bearer(people["buyer"]))
    page = (await resp.json())["data"]
    assert page["totalItems"] == 1 and page["items"][0]["orderDetailId"] == detail
    assert (await client.get("/api/auth/orders/abc", headers=bearer(people["buyer"]))).status == 404


async def test_wishlist_order_is_all_or_nothing(client, shop, people):
    plenty = await register_goods(client, people["seller"], stock=10)
    scarce = await register_goods(client, people["seller"], stock=1)
    ids = []
    for goods_id, qty in ((plenty, 3), (scarce, 2)):
        resp = await client.post(
            "/api/auth/wishlist",
            json={"goodsId": goods_id, "goodsQuantity": qty},
            headers=bearer(people["buyer"]),
        )
        assert resp.status == 201, await resp.text()
        ids.append((await resp.json())["data"]["wishListId"])
    body = {"wishListIds": ids, "address": ADDRESS}
    resp = await client.post(
        "/api/auth/orders/from-wishlist", json=body, headers=bearer(people["buyer"])
    )
    assert resp.status == 409 and (await resp.json())["error"] == "SOLD_OUT"
    assert await stock(client, plenty) == 10 and await stock(client, scarce) == 1
    resp = await client.post(
        "/api/auth/orders/from-wishlist", json=body, headers=bearer(people["other"])
    )
    assert resp.status == 404

    resp = await client.patch(
        f"/api/auth/wishlist/{ids[1]}", json={"goodsQuantity": 1}, headers=bearer(people["buyer"])
    )
    assert resp.status == 200, await resp.text()
    resp = await client.post(
        "/api/auth/orders/from-wishlist", json=body, headers=bearer(people["buyer"])
    )
    assert resp.status == 201, await resp.text()
    placed = (await resp.json())["data"]
    assert len(placed["items"]) == 2 and placed["totalPrice"] == 4000
    assert await stock(client, plenty) == 7 and await stock(client, scarce) == 0
    resp = await client.get("/api/auth/wishlist", headers=bearer(people["buyer"]))
    assert (await resp.json())["data"]["totalItems"] == 0


async def test_my_page_and_admin_views(client, shop, people):
    goods_id = await register_goods(client, people["seller"], stock=3)
    await order(client, people["buyer"], goods_id, 1)
    await shop.bus.drain(timeout=20)
    resp = await client.get("/api/auth/users", headers=bearer(people["buyer"]))
    page = (await resp.json())["data"]
    assert page["orders"]["totalItems"] == 1
    assert page["orders"]["items"][0]["goodsId"] == goods_id

    resp = await client.get("/api/admin/orders", headers=bearer(people["buyer"]))
    assert resp.status == 403
    resp = await client.get("/api/admin/orders?status=COMPLETED", headers=bearer(people["admin"]))
    assert resp.status == 200 and (await resp.json())["data"]["totalItems"] == 1
    resp = await client.get("/api/admin/orders?status=NOPE", headers=bearer(people["admin"]))
    assert resp.status == 400
    resp = await client.get("/api/admin/stats", headers=bearer(people["admin"]))
    stats = (await resp.json())["data"]
    assert stats["orders"] == 1 and stats["paymentOutcomes"]["PAYMENT_COMPLETED"] == 1
    assert stats["soldPerGoods"][0]["sold"] == 1
    assert stats["bus"]["pending"] == 0


async def test_placed_order_is_durable_with_its_event(client, shop, people):
    goods_id = await register_goods(client, people["seller"], stock=3)
    resp = await order(client, people["buyer"], goods_id, 1)
    detail = (await resp.json())["data"]["items"][0]["orderDetailId"]

    def committed(conn: Any) -> tuple[int, int, bytes]:  # on a reader: what was committed
        return (
            conn.execute(
                "SELECT COUNT(*) FROM shipping WHERE order_item_id = ?", (detail,)
            ).fetchone()[0],
            conn.execute("SELECT COUNT(*) FROM outbox WHERE type = 'OrderPlaced'").fetchone()[0],
            bytes(conn.execute("SELECT address_enc FROM orders").fetchone()[0]),
        )

    shipping, events, address = await shop.db.read(committed)
    assert shipping == 1
    assert events == 1
    assert ADDRESS.encode() not in address


async def test_metrics_show_the_sale(client, shop, people):
    goods_id = await register_goods(client, people["seller"], stock=2)
    await order(client, people["buyer"], goods_id, 2)
    await order(client, people["buyer"], goods_id, 1)  # sold out
    await shop.bus.drain(timeout=20)
    text = await (await client.get("/metrics")).text()
    assert "miri_orders_placed_total 1.0" in text
    assert "miri_sold_out_total 1.0" in text
    assert f'miri_stock{{goods_id="{goods_id}"}} 0.0' in text
    assert 'miri_payments_total{outcome="completed"} 1.0' in text
    assert "miri_bus_pending 0.0" in text
    assert 'route="/api/auth/orders",status="201"' in text
