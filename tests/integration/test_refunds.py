"""Money follows the goods, on SQLite and PostgreSQL: a cancel answers REFUNDED, a completed
return refunds, every path that gives stock back leaves the payment settled once (also when
they race), the buyer is mailed each refund once, and the admin's stats count the money."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from tests.integration.test_orders import item, order, register_goods, stock
from tests.support.shop import add_user, bearer, make_settings

pytestmark = pytest.mark.both_engines
REASON = {"reason": "The size does not fit me"}


@pytest.fixture
def settings(data_dir, database_url, smtp):
    return make_settings(
        data_dir,
        database_url=database_url,
        token_ttl=30 * 24 * 3600,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
    )


@pytest.fixture
async def people(shop: Any) -> dict[str, str]:
    _, seller = await add_user(shop, "seller@example.com")
    _, buyer = await add_user(shop, "buyer@example.com")
    _, admin = await add_user(shop, "admin@example.com", admin=True)
    return {"seller": seller, "buyer": buyer, "admin": admin}


async def refunds_told(shop: Any) -> list[int]:
    """The items each ``PaymentRefunded`` on the outbox was for (one per refund of money)."""
    rows = await shop.db.read(
        lambda c: c.execute("SELECT payload FROM outbox WHERE type = 'PaymentRefunded'").fetchall()
    )
    return sorted(orjson.loads(r[0])["order_item_id"] for r in rows)


def refund_mails(smtp: Any) -> list[Any]:
    return [m for m in smtp.messages if m["Subject"].startswith("Refunded")]


async def place_paid(client: Any, shop: Any, token: str, goods_id: int, quantity: int) -> int:
    resp = await order(client, token, goods_id, quantity)
    assert resp.status == 201, await resp.text()
    assert await shop.bus.drain(timeout=20)
    return (await resp.json())["data"]["items"][0]["orderDetailId"]


async def deliver(shop: Any, clock: Any) -> None:
    for _ in range(2):
        clock.advance(days=1, seconds=1)
        await shop.jobs.run("shipping")


async def test_a_cancel_answers_refunded_and_mails_once(client, shop, people, smtp):
    goods_id = await register_goods(client, people["seller"], stock=5)
    detail = await place_paid(client, shop, people["buyer"], goods_id, 2)
    resp = await client.post(f"/api/auth/orders/{detail}/cancel", headers=bearer(people["buyer"]))
    assert resp.status == 200, await resp.text()
    answer = (await resp.json())["data"]
    assert (answer["orderStatus"], answer["paymentStatus"]) == ("CANCELED", "REFUNDED")
    assert await shop.bus.drain(timeout=20)  # the bus delivers the same cancel: nothing more
    assert await refunds_told(shop) == [detail]
    [mail] = refund_mails(smtp)
    assert "2,000 won" in mail.get_payload(decode=True).decode()


async def test_a_cancel_before_payment_opened_answers_refunded(client, shop, people, smtp):
    goods_id = await register_goods(client, people["seller"], stock=5)
    resp = await order(client, people["buyer"], goods_id, 1)  # the bus has not run
    detail = (await resp.json())["data"]["items"][0]["orderDetailId"]
    resp = await client.post(f"/api/auth/orders/{detail}/cancel", headers=bearer(people["buyer"]))
    assert (await resp.json())["data"]["paymentStatus"] == "REFUNDED"
    assert await shop.bus.drain(timeout=20)  # OrderPlaced arrives late: no payment is walked
    got = await item(client, people["buyer"], detail)
    assert (got["orderStatus"], got["paymentStatus"]) == ("CANCELED", "REFUNDED")
    assert await refunds_told(shop) == [] and refund_mails(smtp) == []  # nothing was taken


async def test_a_completed_return_refunds(client, shop, clock, people, smtp):
    goods_id = await register_goods(client, people["seller"], stock=5)
    detail = await place_paid(client, shop, people["buyer"], goods_id, 2)
    await deliver(shop, clock)
    resp = await client.post(
        f"/api/auth/orders/{detail}/return", json=REASON, headers=bearer(people["buyer"])
    )
    assert resp.status == 200, await resp.text()
    clock.advance(days=1, seconds=1)
    assert await shop.jobs.run("returns") == {"returned": 1}
    assert await shop.bus.drain(timeout=20)
    got = await item(client, people["buyer"], detail)
    assert (got["returnStatus"], got["paymentStatus"]) == ("RETURN_COMPLETED", "REFUNDED")
    assert await stock(client, goods_id) == 5
    assert await refunds_told(shop) == [detail]
    assert len(refund_mails(smtp)) == 1


async def test_racing_return_runs_refund_each_item_once(client, shop, clock, people, smtp):
    goods_id = await register_goods(client, people["seller"], stock=20)
    details = [await place_paid(client, shop, people["buyer"], goods_id, 2) for _ in range(6)]
    await deliver(shop, clock)
    for detail in details:
        resp = await client.post(
            f"/api/auth/orders/{detail}/return", json=REASON, headers=bearer(people["buyer"])
        )
        assert resp.status == 200
    clock.advance(days=1, seconds=1)
    runs = await asyncio.gather(
        *(shop.orders.lifecycle.run_returns() for _ in range(5)), shop.bus.drain(timeout=30)
    )
    assert sum(r["returned"] for r in runs[:5]) == 6
    assert await shop.bus.drain(timeout=30)
    assert await refunds_told(shop) == sorted(details)
    assert len(refund_mails(smtp)) == 6
    assert await stock(client, goods_id) == 20
    outcomes = (await shop.order_views.stats()).payment_outcomes
    assert outcomes == {"REFUNDED": 6}


async def test_a_cancel_racing_the_payment_settles_once(make_client, clock, smtp):
    shop, client = await make_client(
        token_ttl=30 * 24 * 3600,
        payment_delay=0.002,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
    )
    _, seller = await add_user(shop, "seller@example.com")
    _, buyer = await add_user(shop, "buyer@example.com")
    goods_id = await register_goods(client, seller, stock=60)
    details = []
    for _ in range(30):
        body = await (await order(client, buyer, goods_id, 2)).json()
        details.append(body["data"]["items"][0]["orderDetailId"])

    async def cancel(detail: int) -> Any:
        await asyncio.sleep(0.001 * (detail % 10))  # some before payment, some during, some after
        return await client.post(f"/api/auth/orders/{detail}/cancel", headers=bearer(buyer))

    answers = await asyncio.gather(*(cancel(d) for d in details), shop.bus.drain(timeout=30))
    for resp in answers[:-1]:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["data"]["paymentStatus"] == "REFUNDED"
    assert await shop.bus.drain(timeout=30)
    page = await shop.order_views.list(size=100)
    assert {(i.order_status, i.payment_status) for i in page.items} == {("CANCELED", "REFUNDED")}
    assert await stock(client, goods_id) == 60
    # Money taken for some (the walk finished first): each of those refunded and mailed once.
    told = await refunds_told(shop)
    assert len(told) == len(set(told))
    assert len(refund_mails(smtp)) == len(told)
    revenue = (await shop.order_views.stats()).revenue
    assert revenue.paid == revenue.refunded == 2000 * len(told) and revenue.net == 0


async def test_admin_stats_count_the_money(client, shop, clock, people):
    coat = await register_goods(client, people["seller"], stock=5, price=1000)
    scarf = await register_goods(client, people["seller"], stock=5, price=300)
    await place_paid(client, shop, people["buyer"], coat, 2)  # kept: 2,000
    kept_scarf = await place_paid(client, shop, people["buyer"], scarf, 1)  # kept: 300
    back = await place_paid(client, shop, people["buyer"], scarf, 3)  # canceled: 900 back
    assert kept_scarf
    resp = await client.post(f"/api/auth/orders/{back}/cancel", headers=bearer(people["buyer"]))
    assert resp.status == 200
    assert await shop.bus.drain(timeout=20)
    resp = await client.get("/api/admin/stats", headers=bearer(people["admin"]))
    revenue = (await resp.json())["data"]["revenue"]
    assert {k: revenue[k] for k in ("paid", "refunded", "net")} == {
        "paid": 3200,
        "refunded": 900,
        "net": 2300,
    }
    per_goods = {g["goodsId"]: g for g in revenue["perGoods"]}
    assert per_goods[coat] == {
        "goodsId": coat,
        "goodsName": "Winter coat",
        "paid": 2000,
        "refunded": 0,
        "net": 2000,
    }
    assert (per_goods[scarf]["paid"], per_goods[scarf]["refunded"], per_goods[scarf]["net"]) == (
        1200,
        900,
        300,
    )


# -- with the hosted checkout: the provider is asked to give money back once --------------------
async def provider_refunds(shop: Any) -> list[tuple[str, int]]:
    rows = await shop.db.read(
        lambda c: c.execute("SELECT checkout_id, amount FROM provider_refunds").fetchall()
    )
    return [(r[0], r[1]) for r in rows]


async def paid_by_webhook(shop: Any, client: Any, token: str, goods_id: int) -> tuple[Any, ...]:
    """An order with its checkout open: (item, paymentId, the provider's signed success, send)."""
    from tests.integration.test_payments import event, send, signed

    placed = await (await order(client, token, goods_id, 2)).json()
    order_id = placed["data"]["orderId"]
    detail = placed["data"]["items"][0]["orderDetailId"]
    resp = await client.post(f"/api/auth/orders/{order_id}/payment", headers=bearer(token))
    payment_id = (await resp.json())["data"]["paymentId"]
    body = event(payment_id, amount=2000, eventId=f"evt_{detail}")
    return detail, payment_id, signed(shop, body), send


async def test_checkout_return_and_cancel_race_refund_once_at_the_provider(
    make_client, clock, smtp
):
    shop, client = await make_client(
        token_ttl=30 * 24 * 3600,
        payment_provider="checkout",
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
    )
    _, seller = await add_user(shop, "seller@example.com")
    _, buyer = await add_user(shop, "buyer@example.com")
    goods_id = await register_goods(client, seller, stock=10)
    # One item paid, delivered and returned, while its return run races itself.
    kept, kept_payment, hook, send = await paid_by_webhook(shop, client, buyer, goods_id)
    assert (await send(client, hook)).status == 200
    assert await shop.bus.drain(timeout=20)
    await deliver(shop, clock)
    resp = await client.post(f"/api/auth/orders/{kept}/return", json=REASON, headers=bearer(buyer))
    assert resp.status == 200, await resp.text()
    clock.advance(days=1, seconds=1)
    await asyncio.gather(*(shop.orders.lifecycle.run_returns() for _ in range(4)))
    assert await shop.bus.drain(timeout=20)
    assert await provider_refunds(shop) == [(kept_payment, 2000)]
    # Another item: its buyer cancels while the provider's success webhook lands.
    raced, raced_payment, hook, send = await paid_by_webhook(shop, client, buyer, goods_id)
    canceled, hooked = await asyncio.gather(
        client.post(f"/api/auth/orders/{raced}/cancel", headers=bearer(buyer)),
        send(client, hook),
    )
    assert canceled.status == 200 and hooked.status == 200
    assert await shop.bus.drain(timeout=20)
    got = await item(client, buyer, raced)
    assert (got["orderStatus"], got["paymentStatus"]) == ("CANCELED", "REFUNDED")
    refunds = await provider_refunds(shop)
    assert refunds.count((raced_payment, 2000)) == 1 and len(refunds) == 2
    assert await refunds_told(shop) == sorted([kept, raced])
    assert len(refund_mails(smtp)) == 2
    assert await stock(client, goods_id) == 10
