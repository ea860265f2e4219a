"""Request id, the error envelope, metrics and token checks, applied to every route."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import redis.exceptions
from aiohttp import web

from miri.domain.errors import (
    Forbidden,
    PayloadTooLarge,
    RateLimited,
    ShopError,
    Unauthenticated,
)
from miri.domain.events import new_event_id
from miri.infra.sqlite import DatabaseUnavailable
from miri.server.api import fail, status_of
from miri.server.keys import METRICS, SHOP

log = logging.getLogger("miri.server")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_PROTECTED = ("/api/auth/", "/api/admin/")

# aiohttp's own HTTP errors, in the envelope with the API's codes.
_HTTP_CODES = {
    404: ("NOT_FOUND", "no such route"),
    405: ("METHOD_NOT_ALLOWED", "method not allowed on this route"),
    413: ("PAYLOAD_TOO_LARGE", PayloadTooLarge.message),
}


def _shop_error(exc: ShopError) -> web.Response:
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    return fail(status_of(exc.code), exc.code, exc.message, exc.data, headers)


@web.middleware
async def envelope(request: web.Request, handler) -> web.StreamResponse:
    """Request id on every answer; every failure in the envelope; never a bare 500."""
    given = request.headers.get("X-Request-Id", "")
    rid = given if given and _REQUEST_ID.match(given) else new_event_id()
    request["request_id"] = rid
    try:
        response = await handler(request)
    except ShopError as exc:
        response = _shop_error(exc)
    except web.HTTPException as exc:
        code, msg = _HTTP_CODES.get(exc.status, ("HTTP_ERROR", exc.reason))
        response = fail(exc.status, code, msg)
        if exc.status == 405:
            response.headers["Allow"] = exc.headers.get("Allow", "")
    except (TimeoutError, DatabaseUnavailable, redis.exceptions.RedisError, ConnectionError) as exc:
        log.warning("dependency unavailable [%s]: %r", rid, exc)
        response = fail(503, "UNAVAILABLE", "a dependency is unavailable; nothing was changed")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected fault [%s] %s %s", rid, request.method, request.path)
        response = fail(500, "INTERNAL", f"unexpected fault; request id {rid}")
    response.headers["X-Request-Id"] = rid
    return response


@web.middleware
async def metrics(request: web.Request, handler) -> web.StreamResponse:
    m = request.app[METRICS]
    started = time.perf_counter()
    response = await handler(request)
    info = request.match_info.route.resource
    route = info.canonical if info is not None else "unmatched"
    m.requests.labels(request.method, route, str(response.status)).inc()
    m.latency.labels(route).observe(time.perf_counter() - started)
    return response


@web.middleware
async def auth(request: web.Request, handler) -> web.StreamResponse:
    """Every path under /api/auth/ and /api/admin/ needs a live token; admin paths need ADMIN."""
    path = request.path
    if path.startswith(_PROTECTED):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("an Authorization: Bearer token is required")
        claims = await request.app[SHOP].users.authenticate(token.strip())
        if path.startswith("/api/admin/") and claims.role != "ADMIN":
            raise Forbidden("administrators only")
        request["claims"] = claims
        request["token"] = token.strip()
    return await handler(request)
