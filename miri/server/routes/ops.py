"""Health, metrics and the OpenAPI document."""

from __future__ import annotations

import orjson
from aiohttp import web

from miri.server.api import Api, ok
from miri.server.keys import METRICS, OPENAPI, SHOP

api = Api("operations")


@api.route(
    "GET",
    "/api/health",
    summary="Readiness of Redis, the database, the bus and breakers",
    errors=("UNAVAILABLE",),
)
async def health(request: web.Request) -> web.Response:
    report = await request.app[SHOP].health()
    if report["status"] != "ok":
        return web.Response(
            body=orjson.dumps(
                {"code": -1, "msg": "not ready", "error": "UNAVAILABLE", "data": report}
            ),
            status=503,
            content_type="application/json",
        )
    return ok(report)


async def metrics(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    return web.Response(body=m.render(), headers={"Content-Type": m.content_type})


async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(request.app[OPENAPI]), content_type="application/json")


# Plain routes: their answers are not in the envelope, so they stay out of the route table.
PLAIN = [("GET", "/metrics", metrics), ("GET", "/openapi.json", openapi_document)]
