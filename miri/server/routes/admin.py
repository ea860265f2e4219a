"""Admin routes: every order, and the totals the dashboard shows."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from miri.domain.views.orders import OrderStats, Revenue
from miri.server.api import Api, ok
from miri.server.keys import SHOP
from miri.server.models import Paging, order_item, page_out

api = Api("admin")


class AdminOrderQuery(Paging):
    status: Literal["PAYMENT_PENDING", "COMPLETED", "CANCELED"] | None = None
    goodsId: int | None = Field(None, ge=1, le=2**53)


@api.route("GET", "/api/admin/orders", summary="All order items (admin)", query=AdminOrderQuery)
async def all_orders(request: web.Request, query: AdminOrderQuery) -> web.Response:
    page = await request.app[SHOP].order_views.list(
        status=query.status, goods_id=query.goodsId, page=query.page, size=query.size
    )
    return ok(page_out(page, order_item))


def _money(revenue: Revenue) -> dict[str, int]:
    return {"paid": revenue.paid, "refunded": revenue.refunded, "net": revenue.net}


def _figures(stats: OrderStats) -> dict[str, Any]:
    return {
        "orders": stats.orders,
        "ordersByStatus": stats.orders_by_status,
        "shippingByStatus": stats.shipping_by_status,
        "returnsByStatus": stats.returns_by_status,
        "paymentOutcomes": stats.payment_outcomes,
        "soldPerGoods": [
            {"goodsId": g.goods_id, "goodsName": g.goods_name, "sold": g.sold}
            for g in stats.sold_per_goods
        ],
        "revenue": {
            **_money(stats.revenue),
            "perGoods": [
                {"goodsId": g.goods_id, "goodsName": g.goods_name, **_money(g.revenue)}
                for g in stats.revenue_per_goods
            ],
        },
    }


@api.route("GET", "/api/admin/stats", summary="Totals for the dashboard (admin)")
async def stats(request: web.Request) -> web.Response:
    shop = request.app[SHOP]
    figures = _figures(await shop.order_views.stats())
    figures["bus"] = await shop.bus.views.status()
    return ok(figures)
