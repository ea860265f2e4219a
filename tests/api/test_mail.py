"""Mail a buyer expects, through the outbox to a real SMTP server (aiosmtpd on loopback):
order confirmed, shipped; none for a change that rolled back; retried while SMTP is down;
never twice for one event. And password reset by mail."""

from __future__ import annotations

import asyncio
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from miri.domain.events import ItemShipped, PaymentCompleted
from miri.infra.breakers import Breakers
from miri.infra.mail import SMTP_CONNECTIONS, SmtpMailer
from miri.server.app import create_app
from miri.shop import open_shop
from tests.support.shop import Inbox, add_user, bearer, free_port, make_settings

pytestmark = pytest.mark.both_engines
SHIP = {"carrier": "CJ Logistics", "trackingNumber": "6123-4567-8901"}
NEW_PASSWORD = "brand-New-pass9"


def body_of(msg: Message) -> str:
    return msg.get_payload(decode=True).decode()


def mails_to(inbox: Inbox, email: str, subject: str = "") -> list[Message]:
    return [m for m in inbox.messages if email in m["To"] and m["Subject"].startswith(subject)]


async def paid_item(shop: Any, client: Any) -> dict[str, Any]:
    """A seller's goods and a buyer's paid item (the bus delivered the payment)."""
    _, seller = await add_user(shop, "seller@example.com")
    _, buyer = await add_user(shop, "buyer@example.com")
    body = {
        "goodsName": "Winter coat",
        "goodsDescription": "A warm wool coat for the sale",
        "goodsPrice": 1000,
        "stockQuantity": 10,
        "category": "FASHION",
    }
    resp = await client.post("/api/auth/goods", json=body, headers=bearer(seller))
    goods_id = (await resp.json())["data"]["goodsId"]
    resp = await client.post(
        "/api/auth/orders",
        json={"goodsId": goods_id, "quantity": 2, "address": "Seoul Mapo 12"},
        headers=bearer(buyer),
    )
    item = (await resp.json())["data"]["items"][0]["orderDetailId"]
    assert await shop.bus.drain(timeout=20)
    return {"seller": seller, "buyer": buyer, "item": item}


async def test_order_confirmed_and_shipped_mails(mail_client, mail_shop, smtp):
    sale = await paid_item(mail_shop, mail_client)
    [confirmed] = mails_to(smtp, "buyer@example.com", "Order confirmed")
    text = body_of(confirmed)
    assert "Winter coat x 2" in text and "2,000 won" in text and str(sale["item"]) in text
    assert mails_to(smtp, "seller@example.com") == []

    resp = await mail_client.post(
        f"/api/auth/my/sales/{sale['item']}/ship", json=SHIP, headers=bearer(sale["seller"])
    )
    assert resp.status == 200, await resp.text()
    assert await mail_shop.bus.drain(timeout=20)
    [shipped] = mails_to(smtp, "buyer@example.com", "Shipped")
    assert "CJ Logistics" in body_of(shipped) and "6123-4567-8901" in body_of(shipped)
    assert shipped["Message-ID"] and shipped["Message-ID"] != confirmed["Message-ID"]
    # A refused second ship mails nothing.
    await mail_client.post(
        f"/api/auth/my/sales/{sale['item']}/ship", json=SHIP, headers=bearer(sale["seller"])
    )
    assert await mail_shop.bus.drain(timeout=20)
    assert len(mails_to(smtp, "buyer@example.com")) == 2


async def test_no_mail_for_a_change_that_rolled_back(mail_client, mail_shop, smtp):
    sale = await paid_item(mail_shop, mail_client)
    buyer = await mail_shop.users.find("buyer@example.com")
    event = ItemShipped(
        order_item_id=sale["item"],
        order_id=1,
        user_id=buyer.user_id,
        carrier="CJ",
        tracking_number="0000",
    )

    def ship_then_fail(conn: Any) -> None:
        mail_shop.bus.record(conn, event)
        raise RuntimeError("the rest of the change failed")

    with pytest.raises(RuntimeError):
        await mail_shop.db.write(ship_then_fail)
    assert await mail_shop.bus.drain(timeout=20)
    assert mails_to(smtp, "buyer@example.com", "Shipped") == []


async def test_the_same_event_twice_mails_once(mail_client, mail_shop, smtp):
    sale = await paid_item(mail_shop, mail_client)
    buyer = await mail_shop.users.find("buyer@example.com")
    event = ItemShipped(
        order_item_id=sale["item"],
        order_id=1,
        user_id=buyer.user_id,
        carrier="CJ",
        tracking_number="7777",
    )
    # At-least-once delivery: the consumer may see an event again (a retry, a replay, a crash).
    for _ in range(3):
        await mail_shop.mail.on_item_shipped(event)
    assert len(mails_to(smtp, "buyer@example.com", "Shipped")) == 1


async def test_mail_waits_out_an_smtp_outage(aiohttp_client, data_dir, clock, database_url):
    port = free_port()
    settings = make_settings(
        data_dir,
        database_url=database_url,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_timeout=1.0,
        bus_max_attempts=50,
        bus_retry_base=0.05,
    )
    inbox = Inbox()
    async with open_shop(settings, clock=clock) as shop:
        client = await aiohttp_client(create_app(shop))
        # Nothing listens on the port: the confirmation cannot go out yet.
        sale = await paid_item_without_drain(shop, client)
        assert not await shop.bus.drain(timeout=0.6)  # still pending: retried, not dropped
        pending = (await shop.bus.views.counts())["pending"]
        assert pending >= 1
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            assert await shop.bus.drain(timeout=30)
            [mail] = mails_to(inbox, "buyer@example.com", "Order confirmed")
            assert str(sale["item"]) in body_of(mail)
            assert (await shop.bus.views.counts())["deadLetters"] == 0
        finally:
            controller.stop()


async def paid_item_without_drain(shop: Any, client: Any) -> dict[str, Any]:
    """As ``paid_item``, but the payment is delivered by the drain the test makes."""
    _, seller = await add_user(shop, "seller@example.com")
    _, buyer = await add_user(shop, "buyer@example.com")
    body = {
        "goodsName": "Winter coat",
        "goodsDescription": "A warm wool coat for the sale",
        "goodsPrice": 1000,
        "stockQuantity": 10,
        "category": "FASHION",
    }
    resp = await client.post("/api/auth/goods", json=body, headers=bearer(seller))
    goods_id = (await resp.json())["data"]["goodsId"]
    resp = await client.post(
        "/api/auth/orders",
        json={"goodsId": goods_id, "quantity": 1, "address": "Seoul 1"},
        headers=bearer(buyer),
    )
    return {"item": (await resp.json())["data"]["items"][0]["orderDetailId"]}


# -- password reset ------------------------------------------------------------------------------
async def ask_reset(client: Any, email: str) -> Any:
    return await client.post("/api/password-reset", json={"email": email})


async def confirm(client: Any, token: str, password: str = NEW_PASSWORD) -> Any:
    return await client.post(
        "/api/password-reset/confirm", json={"token": token, "newPassword": password}
    )


async def login(client: Any, email: str, password: str) -> Any:
    return await client.post("/api/login", json={"email": email, "password": password})


async def test_password_reset_by_mail(mail_client, mail_shop, smtp, clock):
    _, old_token = await add_user(mail_shop, "kim@example.com")
    assert (await mail_client.get("/api/auth/users", headers=bearer(old_token))).status == 200
    resp = await ask_reset(mail_client, "Kim@Example.com")
    assert resp.status == 200, await resp.text()
    known = await resp.json()
    assert await mail_shop.bus.drain(timeout=20)
    token = await smtp.wait_token("kim@example.com")
    [mail] = mails_to(smtp, "kim@example.com", "Reset your Miri password")
    # The outbox never holds the token in clear.
    outbox = await mail_shop.db.read(
        lambda c: " ".join(r[0] for r in c.execute("SELECT payload FROM outbox").fetchall())
    )
    assert token not in outbox

    clock.advance(seconds=1)
    resp = await confirm(mail_client, token)
    assert resp.status == 200, await resp.text()
    # Every token issued before the reset is refused; the new password works, the old does not.
    assert (await mail_client.get("/api/auth/users", headers=bearer(old_token))).status == 401
    assert (await login(mail_client, "kim@example.com", "password123!")).status == 401
    resp = await login(mail_client, "kim@example.com", NEW_PASSWORD)
    assert resp.status == 200
    fresh = (await resp.json())["data"]["accessToken"]
    assert (await mail_client.get("/api/auth/users", headers=bearer(fresh))).status == 200
    # One time only.
    resp = await confirm(mail_client, token, "another-Pass99")
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "VALIDATION_FAILED" and "token" in body["data"]

    # An email with no account: the same answer, and no mail.
    resp = await ask_reset(mail_client, "nobody@example.com")
    assert resp.status == 200
    assert (await resp.json())["msg"] == known["msg"]
    assert await mail_shop.bus.drain(timeout=20)
    assert mails_to(smtp, "nobody@example.com") == []


async def test_reset_tokens_expire_and_older_ones_die_with_a_reset(
    mail_client, mail_shop, smtp, clock
):
    await add_user(mail_shop, "kim@example.com")
    for _ in range(2):
        assert (await ask_reset(mail_client, "kim@example.com")).status == 200
    assert await mail_shop.bus.drain(timeout=20)
    first, second = smtp.tokens_for("kim@example.com")
    clock.advance(minutes=30, seconds=1)
    assert (await confirm(mail_client, first)).status == 400  # expired
    assert (await ask_reset(mail_client, "kim@example.com")).status == 200
    assert await mail_shop.bus.drain(timeout=20)
    third = smtp.tokens_for("kim@example.com")[-1]
    assert (await confirm(mail_client, third)).status == 200
    assert (await confirm(mail_client, second)).status == 400
    for bad in ("", "x" * 101, "00000000-0000-4000-8000-000000000000"):
        resp = await confirm(mail_client, bad)
        assert resp.status == 400 and (await resp.json())["error"] == "VALIDATION_FAILED"
    resp = await confirm(mail_client, third, "short")
    assert resp.status == 400 and "newPassword" in (await resp.json())["data"]


async def test_concurrent_confirms_of_one_token_reset_once(mail_client, mail_shop, smtp):
    await add_user(mail_shop, "kim@example.com")
    await ask_reset(mail_client, "kim@example.com")
    assert await mail_shop.bus.drain(timeout=20)
    token = await smtp.wait_token("kim@example.com")
    answers = await asyncio.gather(
        *(confirm(mail_client, token, f"parallel-Pass{i:02d}") for i in range(8))
    )
    assert sorted(r.status for r in answers) == [200] + [400] * 7


async def test_password_reset_is_rate_limited_alike(make_client):
    shop, client = await make_client(verify_email_per_email=2, verify_email_per_client=50)
    await add_user(shop, "kim@example.com")
    for email in ("kim@example.com", "nobody@example.com"):
        for _ in range(2):
            assert (await ask_reset(client, email)).status == 200
        resp = await ask_reset(client, email)
        assert resp.status == 429 and resp.headers["Retry-After"]


async def test_a_batch_with_one_refused_mail_sends_each_once(mail_client, mail_shop, smtp):
    """The bus hands the mail consumer a sale's confirmations many at a time. One refused mail
    fails the batch, but the mails that went out are recorded: delivered again, one by one (as
    the bus does after a failed batch), each buyer has exactly one mail per event."""
    sale = await paid_item(mail_shop, mail_client)
    buyer = await mail_shop.users.find("buyer@example.com")
    _, other = await add_user(mail_shop, "other@example.com")
    other_id = (await mail_shop.users.find("other@example.com")).user_id
    resp = await mail_client.post(
        "/api/auth/orders",
        json={"goodsId": 1, "quantity": 1, "address": "Busan 7"},
        headers=bearer(other),
    )
    other_item = (await resp.json())["data"]["items"][0]["orderDetailId"]
    assert await mail_shop.bus.drain(timeout=20)
    before = len(smtp.messages)
    events = [
        PaymentCompleted(order_item_id=sale["item"], order_id=1, user_id=buyer.user_id),
        PaymentCompleted(order_item_id=other_item, order_id=2, user_id=other_id),
    ]
    smtp.refuse_once.add("buyer@example.com")
    with pytest.raises(Exception, match="550|refused"):
        await mail_shop.mail.on_payments_completed(events)
    got = smtp.messages[before:]
    assert [m["To"] for m in got] == ["other@example.com"]  # the refused one is not recorded
    for event in events:  # the bus's one-by-one delivery after the failed batch
        await mail_shop.mail.on_payment_completed(event)
    await mail_shop.mail.on_payments_completed(events)  # and a repeat of the whole batch
    got = smtp.messages[before:]
    assert sorted(m["Message-ID"] for m in got) == sorted(
        f"<{e.event_id}.order-confirmed@miri>" for e in events
    )


async def test_smtp_mails_go_out_over_a_few_connections_at_once(data_dir):
    """A batch of a sale's confirmations reaches the mailer at once: it opens at most
    ``SMTP_CONNECTIONS`` to the server, and every mail arrives."""

    class SlowInbox(Inbox):
        def __init__(self) -> None:
            super().__init__()
            self.open = self.most = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.open += 1
            self.most = max(self.most, self.open)
            await asyncio.sleep(0.05)
            self.open -= 1
            return await super().handle_DATA(server, session, envelope)

    inbox = SlowInbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = make_settings(data_dir, smtp_host="127.0.0.1", smtp_port=port)
        mailer = SmtpMailer(settings, Breakers())
        await asyncio.gather(
            *(mailer.send(f"b{i}@example.com", f"Mail {i}", "Hello") for i in range(30))
        )
    finally:
        controller.stop()
    assert sorted(m["Subject"] for m in inbox.messages) == sorted(f"Mail {i}" for i in range(30))
    assert 1 < inbox.most <= SMTP_CONNECTIONS
