"""Live stock pushed (API.md): ``GET /api/goods/{goodsId}/stock/stream`` as Server-Sent Events.

Each event's ``data:`` is ``{goodsId, stockQuantity, saleOpen}``: at once, on every change, and
again after ``KEEPALIVE`` seconds without one (so proxies keep the connection and a client knows
it is live). The figures come from the process's one ``StockWatch`` poll, however many watch.
"""

from __future__ import annotations

from aiohttp import web

from miri.server import sse
from miri.server.api import Api, path_id
from miri.server.keys import SHOP
from miri.server.stock_watch import StockWatch

api = Api("goods")
WATCH: web.AppKey[StockWatch] = web.AppKey("stock_watch", StockWatch)
KEEPALIVE = 15.0  # seconds: the longest a stream stays silent


def install(app: web.Application) -> None:
    """One watch per app; its streams end when the server stops."""

    async def start(app: web.Application) -> None:
        app[WATCH] = StockWatch(app[SHOP])

    async def stop(app: web.Application) -> None:
        if WATCH in app:
            await app[WATCH].close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)


@api.route(
    "GET",
    "/api/goods/{goodsId}/stock/stream",
    summary="Live stock and whether the sale is open, pushed on change (Server-Sent Events)",
    response={
        "type": "string",
        "description": "text/event-stream; each data: {goodsId, stockQuantity, saleOpen}, on"
        " every change and at least every 15 s",
    },
    media_type="text/event-stream",
)
async def stock_stream(request: web.Request) -> web.StreamResponse:
    goods_id = path_id(request, "goodsId")
    # 404 before the stream starts when there are no such goods.
    follow = request.app[WATCH].follow(goods_id, KEEPALIVE)
    return await sse.stream(request, follow, lambda figure: figure.data)
