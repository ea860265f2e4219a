"""Health, metrics and the OpenAPI document."""

from __future__ import annotations

import logging
from importlib import resources

import orjson
from aiohttp import web

from miri.server import limiter
from miri.server.api import Api, ok
from miri.server.keys import METRICS, OPENAPI, SHOP

api = Api("operations")
log = logging.getLogger(__name__)


@api.route(
    "GET",
    "/api/health",
    summary="Readiness of Redis, the database, the bus and breakers",
    errors=("UNAVAILABLE",),
)
async def health(request: web.Request) -> web.Response:
    report = await request.app[SHOP].health()
    bound = request.app.get(limiter.BOUND)
    report["overload"] = bound.report() if bound else {"mode": "off"}
    if report["status"] != "ok":
        return web.Response(
            body=orjson.dumps(
                {"code": -1, "msg": "not ready", "error": "UNAVAILABLE", "data": report}
            ),
            status=503,
            content_type="application/json",
        )
    return ok(report)


STOCK_GAUGE_GOODS = 500  # the newest goods get a stock series; a scrape stays cheap


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; gauges read at scrape time (live stock per goods, the bus backlog)."""
    shop, m = request.app[SHOP], request.app[METRICS]
    bound = request.app.get(limiter.BOUND)
    if bound and limiter.PUBLISHED in request.app:
        limiter.publish(bound, m, request.app[limiter.PUBLISHED])
    try:
        listed, _ = await shop.goods.listing(0, STOCK_GAUGE_GOODS)
        for goods, stock in listed:
            m.stock.labels(str(goods.goods_id)).set(stock)
        counts = await shop.bus.views.counts()
        m.bus_pending.set(counts["pending"])
        m.bus_dead.set(counts["deadLetters"])
    except Exception as exc:  # noqa: BLE001 - a scrape answers with what it has
        log.warning("metrics: gauges not refreshed: %r", exc)
    return web.Response(body=m.render(), headers={"Content-Type": m.content_type})


# The interactive docs: one self-written page that renders /openapi.json in the browser. Nothing
# is fetched from elsewhere, and the policy below keeps it that way.
DOCS_PAGE = resources.files("miri.server").joinpath("static/docs.html").read_bytes()
DOCS_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline';"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


async def docs(request: web.Request) -> web.Response:
    return web.Response(
        body=DOCS_PAGE,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": DOCS_POLICY, "Cache-Control": "no-cache"},
    )


async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(request.app[OPENAPI]), content_type="application/json")


# Plain routes: their answers are not in the envelope, so they stay out of the route table.
PLAIN = [
    ("GET", "/metrics", metrics),
    ("GET", "/openapi.json", openapi_document),
    ("GET", "/docs", docs),
]
