"""Admin routes: every order, and the totals the dashboard shows."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import Field

from miri.server.api import Api, ok
from miri.server.keys import SHOP
from miri.server.models import Paging, page_of

api = Api("admin")


class AdminOrderQuery(Paging):
    status: Literal["PAYMENT_PENDING", "COMPLETED", "CANCELED"] | None = None
    goodsId: int | None = Field(None, ge=1, le=2**53)


@api.route("GET", "/api/admin/orders", summary="All order items (admin)", query=AdminOrderQuery)
async def all_orders(request: web.Request, query: AdminOrderQuery) -> web.Response:
    items, total = await request.app[SHOP].orders.list(
        status=query.status, goods_id=query.goodsId, page=query.page, size=query.size
    )
    return ok(page_of(items, query, total))


@api.route("GET", "/api/admin/stats", summary="Totals for the dashboard (admin)")
async def stats(request: web.Request) -> web.Response:
    shop = request.app[SHOP]
    figures = await shop.orders.stats()
    figures["bus"] = await shop.bus.views.status()
    return ok(figures)
