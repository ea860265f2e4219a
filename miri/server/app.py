"""The aiohttp app factory."""

from __future__ import annotations

from aiohttp import web

from miri import __version__
from miri.infra.proxies import parse_networks
from miri.server import goods_pages, limiter, middlewares
from miri.server.api import MAX_BODY, Api, openapi, register
from miri.server.keys import METRICS, OPENAPI, PROXIES, SHOP
from miri.server.routes import (
    admin,
    goods,
    ops,
    orders,
    payments,
    queue,
    sales,
    stock_stream,
    users,
    wishlist,
)
from miri.shop import Shop


def route_tables() -> list[Api]:
    """Every module's route table, in the order the OpenAPI document lists them."""
    return [
        ops.api,
        users.api,
        goods.api,
        stock_stream.api,
        queue.api,
        wishlist.api,
        orders.api,
        sales.api,
        payments.api,
        admin.api,
    ]


def create_app(shop: Shop) -> web.Application:
    config = limiter.parse(shop.settings)
    bound = limiter.InFlightBound(config) if config else None
    # The bound comes first: a request over it is refused before any other work is done.
    first = [limiter.middleware(bound)] if bound else []
    app = web.Application(
        middlewares=[*first, middlewares.front],
        client_max_size=MAX_BODY,
    )
    app[SHOP] = shop
    app[limiter.BOUND] = bound
    if bound:
        app[limiter.PUBLISHED] = published = [0] * len(limiter.CLASSES)
        app.cleanup_ctx.append(limiter.publisher(bound, shop.metrics, published))
    app[METRICS] = shop.metrics
    app[PROXIES] = parse_networks(shop.settings.trusted_proxies)
    tables = route_tables()
    register(app, tables)
    for method, path, handler in [*ops.PLAIN, *payments.PLAIN]:
        app.router.add_route(method, path, handler)
    app[OPENAPI] = openapi(tables, __version__)
    stock_stream.install(app)
    goods_pages.install(app, shop)
    return app
