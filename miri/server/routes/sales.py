"""Selling and fulfilment (API.md): my sales, the packing list, ship; the admin's item detail."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, StrictStr

from miri.domain.views.sales import Sale
from miri.server.api import Api, ok, path_id
from miri.server.keys import SHOP
from miri.server.models import Body, OrderItem, Page, Paging, page_out

api = Api("sales")

OrderStatus = Literal["PAYMENT_PENDING", "COMPLETED", "CANCELED"]
ShippingStatus = Literal["PENDING", "IN_TRANSIT", "DELIVERED", "CANCELED"]
Carrier = Annotated[StrictStr, Field(min_length=1, max_length=30, pattern=r"^[^\x00-\x1f\x7f]+$")]
TrackingNumber = Annotated[
    StrictStr, Field(min_length=4, max_length=40, pattern=r"^[A-Za-z0-9-]+$")
]


class SalesFilter(BaseModel):
    status: OrderStatus | None = None  # the order item's status
    shippingStatus: ShippingStatus | None = None
    goodsId: int | None = Field(None, ge=1, le=2**53)


class SalesQuery(SalesFilter, Paging):
    pass


class ShipBody(Body):
    carrier: Carrier
    trackingNumber: TrackingNumber


class SaleItem(OrderItem):
    buyerName: str
    phoneNumber: str
    address: str
    carrier: str | None
    trackingNumber: str | None
    shippedAt: str | None


class Buyer(BaseModel):
    userId: int
    userName: str
    email: str
    phoneNumber: str


class AdminOrderItem(OrderItem):
    buyer: Buyer
    address: str
    sellerId: int
    carrier: str | None
    trackingNumber: str | None
    shippedAt: str | None
    shippingStatusAt: str


def _when(value: Any) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def sale_item(sale: Sale) -> dict[str, Any]:
    """An item as its seller sees it (the packing list has the same columns)."""
    return {
        **OrderItem.of(sale.item).model_dump(),
        "buyerName": sale.buyer_name,
        "phoneNumber": sale.phone_number,
        "address": sale.address,
        "carrier": sale.carrier,
        "trackingNumber": sale.tracking_number,
        "shippedAt": _when(sale.shipped_at),
    }


def admin_item(sale: Sale) -> dict[str, Any]:
    """An item with its buyer, address, payment and shipping details (admins; the CLI's --json)."""
    return {
        **OrderItem.of(sale.item).model_dump(),
        "buyer": {
            "userId": sale.buyer_id,
            "userName": sale.buyer_name,
            "email": sale.email,
            "phoneNumber": sale.phone_number,
        },
        "address": sale.address,
        "sellerId": sale.seller_id,
        "carrier": sale.carrier,
        "trackingNumber": sale.tracking_number,
        "shippedAt": _when(sale.shipped_at),
        "shippingStatusAt": _when(sale.shipping_at),
    }


CSV_COLUMNS = list(SaleItem.model_fields)


def csv_safe(value: Any) -> Any:
    """A cell a spreadsheet will not run as a formula (buyers type their own names)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


async def packing_list(sales: Any, out: io.StringIO | Any) -> int:
    """Write the packing list's CSV (header and one line per item) to ``out``; returns rows."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    async for sale in sales:
        row = sale_item(sale)
        writer.writerow([csv_safe(row[c]) for c in CSV_COLUMNS])
        count += 1
    return count


@api.route(
    "GET",
    "/api/auth/my/sales",
    summary="Items bought from me, with buyer and address",
    query=SalesQuery,
    response=Page[SaleItem],
)
async def my_sales(request: web.Request, query: SalesQuery) -> web.Response:
    page = await request.app[SHOP].sales.page(
        request["claims"].user_id,
        status=query.status,
        shipping=query.shippingStatus,
        goods_id=query.goodsId,
        page=query.page,
        size=query.size,
    )
    return ok(page_out(page, sale_item))


@api.route(
    "GET",
    "/api/auth/my/sales.csv",
    summary="My packing list (text/csv, one line per item)",
    query=SalesFilter,
    media_type="text/csv",
)
async def my_sales_csv(request: web.Request, query: SalesFilter) -> web.StreamResponse:
    sales = request.app[SHOP].sales.every(
        request["claims"].user_id,
        status=query.status,
        shipping=query.shippingStatus,
        goods_id=query.goodsId,
    )
    out = io.StringIO()
    await packing_list(sales, out)
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="packing-list.csv"'},
    )


@api.route(
    "POST",
    "/api/auth/my/sales/{orderDetailId}/ship",
    summary="Ship an item bought from me",
    body=ShipBody,
    response=SaleItem,
    errors=("NOT_FOUND", "INVALID_STATE"),
)
async def ship_my_sale(request: web.Request, body: ShipBody) -> web.Response:
    shop, seller_id = request.app[SHOP], request["claims"].user_id
    item_id = path_id(request, "orderDetailId")
    await shop.orders.fulfilment.ship(seller_id, item_id, body.carrier, body.trackingNumber)
    return ok(
        sale_item(await shop.sales.get(seller_id, item_id)), msg="shipped; the buyer is mailed"
    )


@api.route(
    "GET",
    "/api/admin/orders/{orderDetailId}",
    summary="One item with buyer, address, payment and shipping (admin)",
    response=AdminOrderItem,
    errors=("NOT_FOUND",),
)
async def admin_order(request: web.Request) -> web.Response:
    sale = await request.app[SHOP].sales.get(None, path_id(request, "orderDetailId"))
    return ok(admin_item(sale))


@api.route(
    "POST",
    "/api/admin/orders/{orderDetailId}/ship",
    summary="Ship any item (admin)",
    body=ShipBody,
    response=AdminOrderItem,
    errors=("NOT_FOUND", "INVALID_STATE"),
)
async def admin_ship(request: web.Request, body: ShipBody) -> web.Response:
    shop = request.app[SHOP]
    item_id = path_id(request, "orderDetailId")
    await shop.orders.fulfilment.ship(None, item_id, body.carrier, body.trackingNumber)
    return ok(admin_item(await shop.sales.get(None, item_id)), msg="shipped; the buyer is mailed")
