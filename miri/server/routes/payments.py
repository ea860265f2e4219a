"""Payments (API.md): open a checkout session, the provider's webhook, and the built-in test
provider's checkout page (``/pay/{paymentId}``: HTML, outside the JSON envelope)."""

from __future__ import annotations

import html
import logging
from datetime import datetime
from typing import Literal
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from pydantic import BaseModel, Field

from miri.domain.errors import ShopError
from miri.domain.payments.providers.checkout import CheckoutPage, CheckoutTestProvider, Webhook
from miri.domain.payments.service import PayableItem
from miri.domain.payments.store import Session
from miri.domain.views.orders import OrderItemView
from miri.server.api import Api, ok, path_id, status_of
from miri.server.keys import SHOP
from miri.shop import Shop

api = Api("payments")
log = logging.getLogger(__name__)
WEBHOOK_PATH = "/api/payments/webhook"
DELIVERY_TIMEOUT = 10.0  # seconds the test provider waits for the shop to answer its webhook


class PaymentSession(BaseModel):
    paymentId: str
    orderId: int
    amount: int
    checkoutUrl: str
    expiresAt: str


class ProviderEventBody(BaseModel):
    """What the provider sends, signed in the ``Miri-Signature`` header (API.md, Payments)."""

    eventId: str = Field(min_length=1, max_length=100)
    type: Literal["payment.succeeded", "payment.failed"]
    paymentId: str = Field(min_length=1, max_length=100)
    amount: int = Field(ge=0)


def payable(items: list[OrderItemView]) -> list[PayableItem]:
    """An order's items as the checkout needs them."""
    return [
        PayableItem(
            order_item_id=i.order_item_id,
            goods_id=i.goods_id,
            goods_name=i.goods_name,
            quantity=i.quantity,
            unit_price=i.unit_price,
            pending=i.order_status == "PAYMENT_PENDING",
        )
        for i in items
    ]


async def open_session(shop: Shop, user_id: int | None, order_id: int) -> tuple[Session, bool]:
    """The order's checkout session (``user_id`` None: the operator, for the order's buyer)."""
    order = await shop.order_views.order(user_id, order_id)
    ordered_at = min(i.ordered_at for i in order.items).timestamp()
    return await shop.payments.open_session(
        order_id, order.user_id, payable(order.items), ordered_at
    )


def session_out(shop: Shop, session: Session, base: str) -> dict[str, object]:
    """A session as the API answers it; a checkout URL given as a path is made absolute."""
    zone = ZoneInfo(shop.settings.timezone)
    return PaymentSession(
        paymentId=session.payment_id,
        orderId=session.order_id,
        amount=session.amount,
        checkoutUrl=urljoin(base, session.checkout_url),
        expiresAt=datetime.fromtimestamp(session.expires_at, zone).isoformat(timespec="seconds"),
    ).model_dump()


@api.route(
    "POST",
    "/api/auth/orders/{orderId}/payment",
    summary="Open (or get the open) checkout session of my order",
    response=PaymentSession,
    status=201,
    also=(200,),
    errors=("INVALID_STATE", "UNAVAILABLE"),
)
async def open_payment(request: web.Request) -> web.Response:
    shop = request.app[SHOP]
    session, new = await open_session(shop, request["claims"].user_id, path_id(request, "orderId"))
    out = session_out(shop, session, str(request.url.origin()))
    if new:
        return ok(out, status=201, msg="checkout opened; pay at checkoutUrl")
    return ok(out, msg="the order's open checkout")


@api.route(
    "POST",
    WEBHOOK_PATH,
    summary="The payment provider's signed webhook (Miri-Signature)",
    raw_body=ProviderEventBody,
    errors=("VALIDATION_FAILED", "NOT_FOUND", "PAYLOAD_TOO_LARGE", "UNAVAILABLE"),
)
async def webhook(request: web.Request) -> web.Response:
    # The signature covers the exact bytes sent: read them raw, never re-encoded JSON.
    raw = await request.read()
    done = await request.app[SHOP].payments.receive(raw, request.headers)
    return ok(msg=f"webhook applied: {done}")


# -- the built-in test provider's checkout page ----------------------------------------------------
PAGE_HEADERS = {
    # Nothing from outside, no framing (a Pay button under someone else's page), no caching.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
STYLE = """
body{margin:0;background:#f4f5f7;color:#1d2433;font:16px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,"Noto Sans KR",sans-serif}
main{max-width:26rem;margin:3rem auto;background:#fff;border-radius:12px;padding:1.75rem 2rem;
box-shadow:0 2px 12px rgba(20,30,60,.08)}
.mode{display:inline-block;font-size:.75rem;letter-spacing:.06em;text-transform:uppercase;
background:#fff3cd;color:#7a5b00;border-radius:4px;padding:.1rem .5rem}
h1{font-size:1.25rem;margin:.6rem 0 1.2rem}
table{width:100%;border-collapse:collapse}
td{padding:.45rem 0;border-bottom:1px solid #eceef2}
td.n{text-align:right;white-space:nowrap}
tr.total td{border:0;font-weight:600;font-size:1.1rem;padding-top:.9rem}
form{display:flex;gap:.75rem;margin-top:1.5rem}
button{flex:1;font:inherit;font-weight:600;border-radius:8px;padding:.7rem;cursor:pointer;
border:1px solid #c9ced8;background:#fff;color:#1d2433}
button.pay{background:#2456d3;border-color:#2456d3;color:#fff}
.note{margin-top:1.5rem;padding:.8rem 1rem;border-radius:8px;background:#eef2fb}
.note.ok{background:#e6f6ec;color:#14532d}.note.bad{background:#fdecec;color:#7f1d1d}
small{display:block;margin-top:1.2rem;color:#6b7385}
"""


def won(amount: int) -> str:
    return f"₩{amount:,}"


def render(
    page: CheckoutPage | None, note: str = "", tone: str = "", retry: str | None = None
) -> str:
    """The checkout page: the goods, the amount, and Pay / Cancel while it can be paid (or a
    button to send the ``retry`` action's webhook again when the shop did not take it)."""
    e = html.escape
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        f"<title>Checkout · Miri test provider</title><style>{STYLE}</style></head><body><main>",
        "<span class=mode>Test mode · no real money moves</span>",
    ]
    if page is not None:
        parts.append("<h1>Pay Miri</h1><table>")
        for line in page.lines:
            parts.append(
                f"<tr><td>{e(line.goods_name)} × {line.quantity}</td>"
                f"<td class=n>{won(line.amount)}</td></tr>"
            )
        parts.append(
            f"<tr class=total><td>Total</td><td class=n id=amount>{won(page.amount)}</td></tr>"
            "</table>"
        )
        if page.status == "OPEN" and not page.expired:
            action = e(f"/pay/{page.payment_id}")
            parts.append(
                f'<form method=post action="{action}">'
                "<button class=pay name=action value=pay type=submit>Pay</button>"
                "<button name=action value=cancel type=submit>Cancel</button></form>"
            )
        elif retry is not None:
            action = e(f"/pay/{page.payment_id}")
            parts.append(
                f'<form method=post action="{action}">'
                f"<button name=action value={e(retry)} type=submit>Send again</button></form>"
            )
        elif not note:
            state = "expired" if page.expired else page.status.lower()
            note, tone = f"This checkout is {state}.", ""
    if note:
        parts.append(f'<p class="note {e(tone)}" id=result>{e(note)}</p>')
    parts.append(
        "<small>The shop's built-in test provider: pressing a button sends the shop a signed "
        "webhook, as a real provider would.</small></main></body></html>"
    )
    return "".join(parts)


def page_response(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text, status=status, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
    )


def _test_provider(request: web.Request) -> CheckoutTestProvider:
    provider = request.app[SHOP].payments.provider
    if not isinstance(provider, CheckoutTestProvider):
        raise web.HTTPNotFound()  # another provider's checkout lives at the provider
    return provider


async def checkout_page(request: web.Request) -> web.Response:
    provider = _test_provider(request)
    try:
        page = await provider.checkout_page(request.match_info["paymentId"])
    except ShopError as exc:
        return page_response(render(None, exc.message, "bad"), status_of(exc.code))
    return page_response(render(page))


async def deliver(request: web.Request, hook: Webhook) -> tuple[int, str]:
    """Send the webhook to this shop over HTTP, as a remote provider would: to the address this
    connection came in on (never a Host header's), so it reaches this very server."""
    if request.transport is None:
        raise ConnectionError("the buyer's connection closed")
    host, port = request.transport.get_extra_info("sockname")[:2]
    host = f"[{host}]" if ":" in host else host
    timeout = aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.post(
            f"http://{host}:{port}{WEBHOOK_PATH}", data=hook.body, headers=hook.headers
        ) as resp:
            answer = await resp.json(content_type=None)
            return resp.status, str(answer.get("msg", ""))


async def checkout_answer(request: web.Request) -> web.Response:
    """Pay or Cancel pressed: the provider records it, signs the webhook and sends it."""
    provider = _test_provider(request)
    payment_id = request.match_info["paymentId"]
    form = await request.post()
    action = form.get("action")
    if action not in ("pay", "cancel"):
        return page_response(render(None, "Press Pay or Cancel on the checkout page.", "bad"), 400)
    pay = action == "pay"
    page = None
    try:
        page = await provider.checkout_page(payment_id)
        hook = await provider.answer(payment_id, pay=pay)
    except ShopError as exc:
        return page_response(render(page, exc.message, "bad"), status_of(exc.code))
    try:
        status, answer = await deliver(request, hook)
    except (aiohttp.ClientError, TimeoutError, ConnectionError, ValueError) as exc:
        log.warning("test provider: webhook for %s not delivered: %r", payment_id, exc)
        status, answer = 0, "the shop did not answer"
    page = await provider.checkout_page(payment_id)
    if status != 200:
        note = f"The shop did not take the webhook ({status or 'no answer'}: {answer})."
        return page_response(render(page, note, "bad", retry="pay" if pay else "cancel"), 502)
    if pay:
        return page_response(render(page, "Paid. The shop confirmed your order.", "ok"))
    return page_response(render(page, "Payment canceled. Nothing was charged.", ""))


# Plain routes: HTML, outside the JSON envelope and the route table.
PLAIN = [
    ("GET", "/pay/{paymentId}", checkout_page),
    ("POST", "/pay/{paymentId}", checkout_answer),
]
