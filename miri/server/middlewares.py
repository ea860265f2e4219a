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
from miri.infra.writer import DatabaseUnavailable
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
async def front(request: web.Request, handler) -> web.StreamResponse:
    """Request id, token check, the error envelope and metrics, for every route.

    One middleware rather than one per concern: each layer of aiohttp's middleware chain costs
    a coroutine and a wrapper per request, which showed in the order path's profile.
    """
    started = time.perf_counter()
    given = request.headers.get("X-Request-Id")
    rid = given if given and _REQUEST_ID.match(given) else new_event_id()
    request["request_id"] = rid
    try:
        if request.path.startswith(_PROTECTED):
            await _check_token(request)
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
    info = request.match_info.route.resource
    route = info.canonical if info is not None else "unmatched"
    request.app[METRICS].http(request.method, route, response.status, time.perf_counter() - started)
    return response


async def _check_token(request: web.Request) -> None:
    """Every path under /api/auth/ and /api/admin/ needs a live token; admin paths need ADMIN."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("an Authorization: Bearer token is required")
    claims = await request.app[SHOP].users.authenticate(token)
    if claims.role != "ADMIN" and request.path.startswith("/api/admin/"):
        raise Forbidden("administrators only")
    request["claims"] = claims
    request["token"] = token
