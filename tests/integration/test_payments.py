"""Payments through the built-in checkout provider, on SQLite and PostgreSQL: sessions, signed
webhooks (and every way one is refused), failed payments, expiry, late payments and refunds."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from miri.domain.payments import signature
from miri.domain.payments.providers.checkout import CheckoutTestProvider, Webhook
from tests.integration.test_orders import ADDRESS, item, order, register_goods, stock
from tests.support.shop import add_user, bearer, make_settings

pytestmark = pytest.mark.both_engines
PRICE = 1000


@pytest.fixture
def settings(data_dir, database_url):
    return make_settings(
        data_dir,
        database_url=database_url,
        payment_provider="checkout",
        token_ttl=30 * 24 * 3600,
    )


@pytest.fixture
async def sale(shop: Any, client: Any) -> dict[str, Any]:
    """A buyer, another buyer, and goods (5 at 1,000) on sale."""
    _, seller = await add_user(shop, "seller@example.com")
    _, buyer = await add_user(shop, "buyer@example.com")
    _, other = await add_user(shop, "other@example.com")
    goods = await register_goods(client, seller, stock=5, price=PRICE)
    return {"buyer": buyer, "other": other, "goods": goods}


def provider(shop: Any) -> CheckoutTestProvider:
    assert isinstance(shop.payments.provider, CheckoutTestProvider)
    return shop.payments.provider


async def place(client: Any, sale: dict[str, Any], quantity: int = 2) -> dict[str, Any]:
    resp = await order(client, sale["buyer"], sale["goods"], quantity)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["data"]


async def open_payment(client: Any, token: str, order_id: int) -> Any:
    return await client.post(f"/api/auth/orders/{order_id}/payment", headers=bearer(token))


async def session(client: Any, sale: dict[str, Any], order_id: int) -> dict[str, Any]:
    resp = await open_payment(client, sale["buyer"], order_id)
    assert resp.status in (200, 201), await resp.text()
    return (await resp.json())["data"]


def event(payment_id: str, kind: str = "payment.succeeded", amount: int = 2 * PRICE, **more):
    return {"eventId": "evt_1", "type": kind, "paymentId": payment_id, "amount": amount, **more}


def signed(shop: Any, body: dict[str, Any], t: int | None = None) -> Webhook:
    return provider(shop).signed(body, int(shop.clock.timestamp()) if t is None else t)


async def send(client: Any, hook: Webhook) -> Any:
    return await client.post("/api/payments/webhook", data=hook.body, headers=hook.headers)


async def state(shop: Any) -> dict[str, Any]:
    """Everything a webhook could change: payments, items, sessions, the outbox, the marks."""

    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        def rows(sql: str) -> list[tuple]:
            return [tuple(r) for r in conn.execute(sql).fetchall()]

        return {
            "payments": rows(
                "SELECT order_item_id, status, session_id, paid_at, refunded_at FROM payments"
                " ORDER BY id"
            ),
            "items": rows("SELECT id, status, stock_released FROM order_items ORDER BY id"),
            "sessions": rows("SELECT payment_id, status FROM checkout_sessions ORDER BY 1"),
            "outbox": rows("SELECT event_id, type FROM outbox ORDER BY id"),
            "handled": rows("SELECT consumer, event_id FROM handled_events ORDER BY 1, 2"),
        }

    return await shop.db.read(read)


async def refunds(shop: Any) -> list[tuple]:
    return await shop.db.read(
        lambda c: [
            tuple(r)
            for r in c.execute(
                "SELECT checkout_id, amount FROM provider_refunds ORDER BY created_at"
            ).fetchall()
        ]
    )


async def recorded(shop: Any, event_type: str) -> int:
    """How many events of ``event_type`` the outbox holds."""
    return await shop.db.read(
        lambda c: c.execute("SELECT COUNT(*) FROM outbox WHERE type = ?", (event_type,)).fetchone()[
            0
        ]
    )


async def test_session_opened_then_reused(shop, client, sale):
    placed = await place(client, sale)
    detail = placed["items"][0]["orderDetailId"]
    # Before the bus has told payments about the order: the session opens its payment itself.
    resp = await open_payment(client, sale["buyer"], placed["orderId"])
    assert resp.status == 201, await resp.text()
    first = (await resp.json())["data"]
    assert first["orderId"] == placed["orderId"] and first["amount"] == 2 * PRICE
    assert first["paymentId"].startswith("pay_")
    assert first["checkoutUrl"] == str(client.make_url(f"/pay/{first['paymentId']}"))
    assert first["expiresAt"].endswith("+09:00")
    assert await shop.bus.drain(timeout=20)

    resp = await open_payment(client, sale["buyer"], placed["orderId"])
    assert resp.status == 200
    assert (await resp.json())["data"] == first
    got = await item(client, sale["buyer"], detail)
    assert (got["orderStatus"], got["paymentStatus"]) == ("PAYMENT_PENDING", "PAYMENT_IN_PROGRESS")
    # Someone else's order is as absent as a missing one; no token, no session.
    for token, order_id in ((sale["other"], placed["orderId"]), (sale["buyer"], 999)):
        resp = await open_payment(client, token, order_id)
        assert resp.status == 404 and (await resp.json())["error"] == "NOT_FOUND"
    resp = await client.post(f"/api/auth/orders/{placed['orderId']}/payment")
    assert resp.status == 401

    page = await client.get(f"/pay/{first['paymentId']}")
    text = await page.text()
    assert page.status == 200 and page.content_type == "text/html"
    assert "Winter coat × 2" in text and "₩2,000" in text and ">Pay<" in text and ">Cancel<" in text
    assert "http" not in text.replace("http-equiv", "")  # nothing loaded from outside
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert (await client.get("/pay/pay_nothing")).status == 404


async def test_valid_webhook_completes_the_item(shop, client, sale):
    placed = await place(client, sale)
    detail = placed["items"][0]["orderDetailId"]
    opened = await session(client, sale, placed["orderId"])
    resp = await send(client, signed(shop, event(opened["paymentId"])))
    assert resp.status == 200, await resp.text()
    assert await shop.bus.drain(timeout=20)
    got = await item(client, sale["buyer"], detail)
    assert (got["orderStatus"], got["paymentStatus"]) == ("COMPLETED", "PAYMENT_COMPLETED")
    assert await stock(client, sale["goods"]) == 3
    resp = await open_payment(client, sale["buyer"], placed["orderId"])
    assert resp.status == 409 and (await resp.json())["error"] == "INVALID_STATE"


def _bad_signature(shop, body):
    hook = signed(shop, body)
    return Webhook(
        hook.body, {**hook.headers, "Miri-Signature": hook.headers["Miri-Signature"][:-4] + "0000"}
    )


def _other_secret(shop, body):
    hook = signed(shop, body)
    t = int(shop.clock.timestamp())
    return Webhook(hook.body, {**hook.headers, "Miri-Signature": signature.sign("x", hook.body, t)})


def _tampered_body(shop, body):
    hook = signed(shop, body)
    return Webhook(hook.body.replace(b"2000", b"2001"), hook.headers)


def _stale(shop, body):
    return signed(shop, body, t=int(shop.clock.timestamp()) - 301)


def _no_signature(shop, body):
    hook = signed(shop, body)
    return Webhook(hook.body, {"Content-Type": "application/json"})


def _wrong_amount(shop, body):
    return signed(shop, {**body, "amount": 1})


@pytest.mark.parametrize(
    "forge",
    [_bad_signature, _other_secret, _tampered_body, _stale, _no_signature, _wrong_amount],
)
async def test_a_refused_webhook_changes_nothing(shop, client, sale, forge, caplog):
    placed = await place(client, sale)
    detail = placed["items"][0]["orderDetailId"]
    opened = await session(client, sale, placed["orderId"])
    assert await shop.bus.drain(timeout=20)
    before = await state(shop)

    resp = await send(client, forge(shop, event(opened["paymentId"])))
    assert resp.status == 400, await resp.text()
    answer = await resp.json()
    assert answer["error"] == "VALIDATION_FAILED" and answer["data"]
    assert await shop.bus.drain(timeout=20)
    assert await state(shop) == before
    got = await item(client, sale["buyer"], detail)
    assert (got["orderStatus"], got["paymentStatus"]) == ("PAYMENT_PENDING", "PAYMENT_IN_PROGRESS")
    if forge is _wrong_amount:
        assert "differs from the checkout" in caplog.text

    # The refused delivery left no mark: the genuine event with that id still applies.
    resp = await send(client, signed(shop, event(opened["paymentId"])))
    assert resp.status == 200, await resp.text()
    assert await shop.bus.drain(timeout=20)
    assert (await item(client, sale["buyer"], detail))["orderStatus"] == "COMPLETED"


async def test_a_replayed_event_changes_nothing(shop, client, sale):
    placed = await place(client, sale)
    detail = placed["items"][0]["orderDetailId"]
    opened = await session(client, sale, placed["orderId"])
    assert (await send(client, signed(shop, event(opened["paymentId"])))).status == 200
    assert await shop.bus.drain(timeout=20)
    before = await state(shop)
    # The same delivery again, then the same event id saying something else, signed afresh.
    shop.clock.advance(seconds=30)
    for body in (event(opened["paymentId"]), event(opened["paymentId"], "payment.failed")):
        resp = await send(client, signed(shop, body))
        assert resp.status == 200 and "repeated" in (await resp.json())["msg"]
    assert await shop.bus.drain(timeout=20)
    assert await state(shop) == before
    assert (await item(client, sale["buyer"], detail))["orderStatus"] == "COMPLETED"


async def test_a_failed_payment_gives_the_stock_back(shop, client, sale):
    placed = await place(client, sale)
    detail = placed["items"][0]["orderDetailId"]
    opened = await session(client, sale, placed["orderId"])
    assert await stock(client, sale["goods"]) == 3
    resp = await send(client, signed(shop, event(opened["paymentId"], "payment.failed")))
    assert resp.status == 200, await resp.text()
    assert await shop.bus.drain(timeout=20)
    got = await item(client, sale["buyer"], detail)
    assert (got["orderStatus"], got["paymentStatus"]) == ("CANCELED", "PAYMENT_ABORTED")
    assert await stock(client, sale["goods"]) == 5
    resp = await open_payment(client, sale["buyer"], placed["orderId"])
    assert resp.status == 409 and (await resp.json())["error"] == "INVALID_STATE"
    assert await refunds(shop) == []  # nothing was taken, nothing to give back


async def test_expiry_still_frees_the_stock_of_unpaid_items(shop, client, sale):
    placed = await place(client, sale)
    detail = placed["items"][0]["orderDetailId"]
    opened = await session(client, sale, placed["orderId"])
    assert await shop.bus.drain(timeout=20)
    shop.clock.advance(seconds=shop.settings.payment_timeout + 1)
    assert await shop.orders.lifecycle.expire_unpaid() == 1
    assert await shop.bus.drain(timeout=20)
    got = await item(client, sale["buyer"], detail)
    assert (got["orderStatus"], got["paymentStatus"]) == ("CANCELED", "PAYMENT_ABORTED")
    assert await stock(client, sale["goods"]) == 5
    resp = await open_payment(client, sale["buyer"], placed["orderId"])
    assert resp.status == 409 and "expired" in (await resp.json())["msg"]
    # The provider takes no payment for an expired checkout either.
    resp = await client.post(f"/pay/{opened['paymentId']}", data={"action": "pay"})
    assert resp.status == 409 and "expired" in await resp.text()


async def test_a_late_success_is_refunded(shop, client, sale):
    """The provider took the money just as the item expired: it goes back, the item stays
    canceled and its stock stays free."""
    placed = await place(client, sale)
    detail = placed["items"][0]["orderDetailId"]
    opened = await session(client, sale, placed["orderId"])
    shop.clock.advance(seconds=shop.settings.payment_timeout + 1)
    assert await shop.orders.lifecycle.expire_unpaid() == 1
    assert await shop.bus.drain(timeout=20)

    resp = await send(client, signed(shop, event(opened["paymentId"])))
    assert resp.status == 200, await resp.text()
    assert await shop.bus.drain(timeout=20)
    got = await item(client, sale["buyer"], detail)
    assert (got["orderStatus"], got["paymentStatus"]) == ("CANCELED", "REFUNDED")
    assert await stock(client, sale["goods"]) == 5
    assert await refunds(shop) == [(opened["paymentId"], 2 * PRICE)]
    # Orders was never told of a payment for an item it no longer sells; the buyer is told of
    # the refund once.
    assert await recorded(shop, "PaymentCompleted") == 0
    assert (await recorded(shop, "PaymentTakenLate"), await recorded(shop, "PaymentRefunded")) == (
        1,
        1,
    )


async def test_paying_for_an_item_canceled_meanwhile_is_refunded(shop, client, sale):
    placed = await place(client, sale)
    detail = placed["items"][0]["orderDetailId"]
    opened = await session(client, sale, placed["orderId"])
    resp = await client.post(f"/api/auth/orders/{detail}/cancel", headers=bearer(sale["buyer"]))
    assert resp.status == 200
    assert await shop.bus.drain(timeout=20)
    assert (await item(client, sale["buyer"], detail))["paymentStatus"] == "REFUNDED"
    assert await refunds(shop) == []  # canceled before paying: nothing to give back yet
    assert await recorded(shop, "PaymentRefunded") == 0  # and no refund mail for nothing

    # The buyer pays on the still-open checkout page anyway: the money goes straight back.
    assert (await send(client, signed(shop, event(opened["paymentId"])))).status == 200
    assert await shop.bus.drain(timeout=20)
    got = await item(client, sale["buyer"], detail)
    assert (got["orderStatus"], got["paymentStatus"]) == ("CANCELED", "REFUNDED")
    assert await refunds(shop) == [(opened["paymentId"], 2 * PRICE)]
    assert await stock(client, sale["goods"]) == 5
    assert await recorded(shop, "PaymentRefunded") == 1


async def test_refund_is_once_however_often_asked(shop, client, sale):
    placed = await place(client, sale)
    detail = placed["items"][0]["orderDetailId"]
    opened = await session(client, sale, placed["orderId"])
    assert (await send(client, signed(shop, event(opened["paymentId"])))).status == 200
    assert await shop.bus.drain(timeout=20)
    for _ in range(3):
        assert await shop.payments.refund(detail) == "REFUNDED"
    assert await refunds(shop) == [(opened["paymentId"], 2 * PRICE)]
    assert await recorded(shop, "PaymentRefunded") == 1
    assert await shop.payments.refund(10_000) is None  # no such item: no payment


async def test_pay_on_the_checkout_page(shop, client, sale):
    """The page's Pay button: the provider sends the shop its signed webhook over HTTP."""
    placed = await place(client, sale)
    detail = placed["items"][0]["orderDetailId"]
    opened = await session(client, sale, placed["orderId"])
    resp = await client.post(f"/pay/{opened['paymentId']}", data={"action": "pay"})
    text = await resp.text()
    assert resp.status == 200, text
    assert "Paid. The shop confirmed your order." in text and ">Pay<" not in text
    assert await shop.bus.drain(timeout=20)
    assert (await item(client, sale["buyer"], detail))["orderStatus"] == "COMPLETED"
    # Pressed again (a reload): the same event, applied once; Cancel is refused.
    assert (await client.post(f"/pay/{opened['paymentId']}", data={"action": "pay"})).status == 200
    resp = await client.post(f"/pay/{opened['paymentId']}", data={"action": "cancel"})
    assert resp.status == 409 and "paid already" in await resp.text()
    assert (await item(client, sale["buyer"], detail))["orderStatus"] == "COMPLETED"


async def test_simulated_shops_have_no_checkout(make_client, database_url):
    shop, client = await make_client(payment_provider="simulated", token_ttl=3600)
    _, seller = await add_user(shop, "seller@example.com")
    buyer_id, buyer = await add_user(shop, "buyer@example.com")
    goods = await register_goods(client, seller, stock=5)
    placed = await shop.orders.placing.place(buyer_id, goods, 1, ADDRESS)
    resp = await open_payment(client, buyer, placed.order_id)
    assert resp.status == 409 and "simulated" in (await resp.json())["msg"]
    resp = await client.post("/api/payments/webhook", data=b"{}")
    assert resp.status == 400 and (await resp.json())["error"] == "VALIDATION_FAILED"
    assert (await client.get("/pay/pay_x")).status == 404


async def test_a_webhook_the_shop_did_not_take_can_be_sent_again(shop, client, sale, monkeypatch):
    """A provider signing with another secret (misconfigured): the shop refuses, the page says
    so and offers to send again; once the secrets agree, the same event goes through."""
    placed = await place(client, sale)
    detail = placed["items"][0]["orderDetailId"]
    opened = await session(client, sale, placed["orderId"])
    signed_right = provider(shop).signed

    def signed_wrong(event: dict[str, Any], t: int) -> Webhook:
        hook = signed_right(event, t)
        return Webhook(
            hook.body, {**hook.headers, signature.HEADER: signature.sign("x", hook.body, t)}
        )

    monkeypatch.setattr(provider(shop), "signed", signed_wrong)
    resp = await client.post(f"/pay/{opened['paymentId']}", data={"action": "pay"})
    text = await resp.text()
    assert resp.status == 502 and "did not take the webhook (400" in text
    assert ">Send again<" in text and ">Cancel<" not in text
    assert await shop.bus.drain(timeout=20)
    assert (await item(client, sale["buyer"], detail))["orderStatus"] == "PAYMENT_PENDING"

    monkeypatch.undo()
    resp = await client.post(f"/pay/{opened['paymentId']}", data={"action": "pay"})
    assert resp.status == 200 and "Paid." in await resp.text()
    assert await shop.bus.drain(timeout=20)
    assert (await item(client, sale["buyer"], detail))["orderStatus"] == "COMPLETED"
    # A form without a known action presses nothing.
    resp = await client.post(f"/pay/{opened['paymentId']}", data={"action": "refund"})
    assert resp.status == 400
