"""Orders (API.md): place, place from the wishlist, list, detail, cancel, return."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

import orjson
from aiohttp import web
from pydantic import BaseModel, Field

from miri.domain.errors import RateLimited, ValidationFailed
from miri.domain.orders.model import Idempotency
from miri.server.api import Api, ok, path_id
from miri.server.keys import SHOP
from miri.server.models import (
    Address,
    Body,
    Int,
    OrderItem,
    OrderOut,
    Page,
    Paging,
    integer,
    order_item,
    order_out,
    page_out,
)
from miri.server.routes.queue import queue_passes

api = Api("orders")
# What placing an order can answer besides 201, for both ways of placing one.
PLACING_ERRORS = (
    "SOLD_OUT",
    "SALE_NOT_OPEN",
    "LIMIT_EXCEEDED",
    "NOT_FOUND",
    "QUEUE_PASS_REQUIRED",
    "IDEMPOTENCY_CONFLICT",
    "RATE_LIMITED",
    "UNAVAILABLE",
)
MAX_QUANTITY = 1_000_000
MAX_ID = 2**53


Id = Annotated[Int, Field(ge=1, le=MAX_ID), integer(1, MAX_ID)]


class OrderBody(Body):
    goodsId: Id
    quantity: Annotated[Int, Field(ge=1, le=MAX_QUANTITY), integer(1, MAX_QUANTITY)]
    address: Address


class WishlistOrderBody(Body):
    wishListIds: list[Id] = Field(min_length=1, max_length=100)
    address: Address


class ReturnBody(Body):
    reason: str = Field(min_length=10, max_length=50)


# Printable ASCII, no space at either end (HTTP strips those): the OpenAPI pattern says the same.
IDEMPOTENCY_KEY = re.compile(r"[!-~](?:[ -~]{0,62}[!-~])?")


def idempotency(request: web.Request, body: BaseModel) -> Idempotency | None:
    """``Idempotency-Key`` (1–64 printable ASCII characters), bound to this path and body."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if IDEMPOTENCY_KEY.fullmatch(key) is None:
        raise ValidationFailed(
            data={"Idempotency-Key": "must be 1 to 64 printable ASCII characters"}
        )
    digest = hashlib.sha256(
        request.path.encode() + b"\n" + orjson.dumps(body.model_dump(), option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    return Idempotency(key, digest)


async def _order_rate(request: web.Request) -> None:
    """The operator's optional per-buyer order rate (orders per second)."""
    shop = request.app[SHOP]
    rate = shop.settings.order_rate_per_buyer
    if rate > 0:
        wait = await shop.limiter.hit(f"order:{request['claims'].user_id}", rate, 1)
        if wait is not None:
            raise RateLimited(wait, "ordering too fast; slow down")


@api.route(
    "POST",
    "/api/auth/orders",
    summary="Order goods",
    body=OrderBody,
    response=OrderOut,
    status=201,
    errors=PLACING_ERRORS,
    headers=("Idempotency-Key", "X-Queue-Pass"),
)
async def place_order(request: web.Request, body: OrderBody) -> web.Response:
    await _order_rate(request)
    order = await request.app[SHOP].orders.placing.place(
        request["claims"].user_id,
        body.goodsId,
        body.quantity,
        body.address,
        idempotency(request, body),
        queue_passes(request),
    )
    return ok(order_out(order), status=201, msg="order placed; payment follows")


@api.route(
    "POST",
    "/api/auth/orders/from-wishlist",
    summary="Order wishlist entries, all or none",
    body=WishlistOrderBody,
    response=OrderOut,
    status=201,
    errors=PLACING_ERRORS,
    headers=("Idempotency-Key", "X-Queue-Pass"),
)
async def place_wishlist_order(request: web.Request, body: WishlistOrderBody) -> web.Response:
    await _order_rate(request)
    order = await request.app[SHOP].orders.placing.place_from_wishlist(
        request["claims"].user_id,
        body.wishListIds,
        body.address,
        idempotency(request, body),
        queue_passes(request),
    )
    return ok(order_out(order), status=201, msg="order placed; payment follows")


@api.route(
    "GET",
    "/api/auth/orders",
    summary="My order items, newest first",
    query=Paging,
    response=Page[OrderItem],
)
async def my_orders(request: web.Request, query: Paging) -> web.Response:
    page = await request.app[SHOP].order_views.list(
        user_id=request["claims"].user_id, page=query.page, size=query.size
    )
    return ok(page_out(page, order_item))


@api.route(
    "GET", "/api/auth/orders/{orderDetailId}", summary="One of my order items", response=OrderItem
)
async def my_order(request: web.Request) -> web.Response:
    item = await request.app[SHOP].order_views.get(
        request["claims"].user_id, path_id(request, "orderDetailId")
    )
    return ok(order_item(item))


@api.route(
    "POST",
    "/api/auth/orders/{orderDetailId}/cancel",
    summary="Cancel before shipping",
    response=OrderItem,
    errors=("INVALID_STATE",),
)
async def cancel_order(request: web.Request) -> web.Response:
    shop, user_id = request.app[SHOP], request["claims"].user_id
    item_id = path_id(request, "orderDetailId")
    await shop.orders.changes.cancel(user_id, item_id)
    item = await shop.order_views.get(user_id, item_id)
    return ok(order_item(item), msg="canceled; stock returned and payment refunded")


@api.route(
    "POST",
    "/api/auth/orders/{orderDetailId}/return",
    summary="Ask for a return",
    body=ReturnBody,
    response=OrderItem,
    errors=("INVALID_STATE",),
)
async def return_order(request: web.Request, body: ReturnBody) -> web.Response:
    shop, user_id = request.app[SHOP], request["claims"].user_id
    item_id = path_id(request, "orderDetailId")
    await shop.orders.changes.request_return(user_id, item_id, body.reason)
    item = await shop.order_views.get(user_id, item_id)
    return ok(order_item(item), msg="return requested")
