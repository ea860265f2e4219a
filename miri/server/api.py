"""A route table that validates with pydantic and writes the OpenAPI document from the same models.

Handlers receive ``body=`` and ``query=`` already validated when the route declares models, and
answer with :func:`ok`. Errors are raised as domain errors and turned into the envelope by the
error middleware.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from miri.domain.errors import MalformedJson, NotFound, PayloadTooLarge, ValidationFailed

MAX_BODY = 64 * 1024
Handler = Callable[..., Awaitable[web.StreamResponse]]
_PARAM = re.compile(r"\{(\w+)\}")


def ok(
    data: Any = None, *, status: int = 200, msg: str = "OK", headers: Any = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps({"code": 1, "msg": msg, "data": data}),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def fail(status: int, error: str, msg: str, data: Any = None, headers: Any = None) -> web.Response:
    return web.Response(
        body=orjson.dumps({"code": -1, "msg": msg, "error": error, "data": data}),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _clean(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def field_errors(exc: ValidationError) -> dict[str, str]:
    """pydantic errors as ``{field: message}``; the first message for a field wins."""
    out: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        out.setdefault(loc, _clean(err["msg"]))
    return out


async def read_json(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise PayloadTooLarge()
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge() from None
    if not raw.strip():
        raise MalformedJson("the body must be a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MalformedJson("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedJson("the body must be a JSON object")
    return data


def validate(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(data=field_errors(exc)) from None


def path_id(request: web.Request, name: str) -> int:
    """A positive integer path parameter; anything else names nothing, so 404."""
    raw = request.match_info.get(name, "")
    if not raw.isdigit() or len(raw) > 18 or int(raw) <= 0:
        raise NotFound(f"no such {name}")
    return int(raw)


@dataclass
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: Any
    status: int
    errors: tuple[str, ...]
    tag: str
    headers: tuple[str, ...] = ()  # request headers it reads, named in REQUEST_HEADERS
    cache: str | None = None  # its Cache-Control: answers carry ETag, If-None-Match gets 304
    media_type: str = "application/json"  # of the success answer; other types are not enveloped
    also: tuple[int, ...] = ()  # further success statuses (200 for a resource that existed)
    raw_body: type[BaseModel] | None = None  # described only: the handler reads the bytes


class Api:
    """Collects routes from every module; registers them on an app and describes them."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: Any = None,
        status: int = 200,
        errors: tuple[str, ...] = (),
        headers: tuple[str, ...] = (),
        cache: str | None = None,
        media_type: str = "application/json",
        also: tuple[int, ...] = (),
        raw_body: type[BaseModel] | None = None,
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            async def handler(request: web.Request) -> web.StreamResponse:
                kwargs: dict[str, Any] = {}
                if body is not None:
                    kwargs["body"] = validate(body, await read_json(request))
                if query is not None:
                    kwargs["query"] = validate(query, dict(request.query))
                return await fn(request, **kwargs)

            handler.__name__ = fn.__name__
            self.routes.append(
                Route(
                    method,
                    path,
                    handler,
                    summary,
                    body,
                    query,
                    response,
                    status,
                    errors,
                    self.tag,
                    tuple(headers),
                    cache,
                    media_type,
                    also,
                    raw_body,
                )
            )
            return fn

        return deco


def register(app: web.Application, apis: list[Api]) -> None:
    for api in apis:
        for r in api.routes:
            # Ids are digits: "/api/auth/orders/from-wishlist" must not also match
            # "/api/auth/orders/{orderDetailId}", or a 405 would advertise that route's GET.
            path = _PARAM.sub(r"{\1:[0-9]+}", r.path)
            app.router.add_route(r.method, path, r.handler, name=f"{r.tag}.{r.handler.__name__}")


# -- OpenAPI --------------------------------------------------------------------------------------
_STATUS_OF = {
    "VALIDATION_FAILED": 400,
    "MALFORMED_JSON": 400,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "QUEUE_PASS_REQUIRED": 403,
    "NOT_FOUND": 404,
    "SOLD_OUT": 409,
    "SALE_NOT_OPEN": 409,
    "LIMIT_EXCEEDED": 409,
    "EMAIL_TAKEN": 409,
    "INVALID_STATE": 409,
    "IDEMPOTENCY_CONFLICT": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "RATE_LIMITED": 429,
    "UNAVAILABLE": 503,
}


def status_of(code: str) -> int:
    return _STATUS_OF.get(code, 500)


def _schema(model: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if model is None:
        return {}
    if isinstance(model, dict):
        return model
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs.update(schema.pop("$defs", {}))
    defs[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


# Request headers a route may declare (``headers=``), as OpenAPI header parameters.
REQUEST_HEADERS: dict[str, dict[str, Any]] = {
    "Idempotency-Key": {
        "description": "Makes a retried order safe: the same key with the same body within 24 h"
        " answers the first order again instead of placing another; the same key with another"
        " body is 409 IDEMPOTENCY_CONFLICT. 1-64 printable ASCII characters.",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "pattern": "^[!-~]([ -~]{0,62}[!-~])?$",
        },
    },
    "X-Queue-Pass": {
        "description": "The pass of the caller's own waiting-room ticket, for goods behind a"
        " waiting room (403 QUEUE_PASS_REQUIRED without it).",
        "schema": {"type": "string"},
    },
    "If-None-Match": {
        "description": "An ETag from an earlier answer: 304 with no body while it still holds.",
        "schema": {"type": "string"},
    },
}


def _cache_headers(cache: str) -> dict[str, Any]:
    return {
        "ETag": {
            "description": "Identifies this answer; send it back in If-None-Match.",
            "schema": {"type": "string"},
        },
        "Cache-Control": {
            "description": f"How long a browser or CDN may reuse the answer: `{cache}`.",
            "schema": {"type": "string", "examples": [cache]},
        },
        "Vary": {
            "description": "The request headers the answer depends on.",
            "schema": {"type": "string"},
        },
    }


_COMPONENT = re.compile(r"[^A-Za-z0-9._-]")
_GENERIC = re.compile(r"^(\w+)\[(.+)\]$")


def component_name(name: str) -> str:
    """A component name OpenAPI 3.1 accepts: pydantic's ``Page[GoodsSummary]`` is
    ``GoodsSummaryPage``; anything else outside ``[A-Za-z0-9._-]`` becomes ``_``."""
    generic = _GENERIC.match(name)
    if generic:
        outer, inner = generic.groups()
        return "".join(component_name(part.strip()) for part in inner.split(",")) + outer
    return _COMPONENT.sub("_", name)


def _rename_components(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                prefix, _, name = value.rpartition("/")
                value = f"{prefix}/{names.get(name, name)}"
            out[key] = _rename_components(value, names)
        return out
    if isinstance(node, list):
        return [_rename_components(v, names) for v in node]
    return node


def openapi(apis: list[Api], version: str) -> dict[str, Any]:
    defs: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["code", "msg", "error"],
            "properties": {
                "code": {"const": -1},
                "msg": {"type": "string"},
                "error": {"type": "string"},
                "data": {},
            },
        }
    }
    paths: dict[str, Any] = {}
    for api in apis:
        for r in api.routes:
            protected = r.path.startswith(("/api/auth/", "/api/admin/"))
            codes = set(r.errors) | {"VALIDATION_FAILED"} if (r.body or r.query) else set(r.errors)
            if r.body:
                codes |= {"MALFORMED_JSON", "PAYLOAD_TOO_LARGE"}
            if protected:
                codes.add("UNAUTHENTICATED")
            if r.path.startswith("/api/admin/"):
                codes.add("FORBIDDEN")
            if _PARAM.search(r.path):
                codes.add("NOT_FOUND")
            if r.path != "/api/health":  # over the in-flight bound (server/limiter.py)
                codes.add("UNAVAILABLE")
            responses: dict[str, Any] = {
                str(r.status): {
                    "description": "success",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["code", "msg", "data"],
                                "properties": {
                                    "code": {"const": 1},
                                    "msg": {"type": "string"},
                                    "data": _schema(r.response, defs),
                                },
                            }
                        }
                    },
                }
            }
            if r.media_type != "application/json":
                success = responses[str(r.status)]
                success["content"] = {r.media_type: {"schema": {"type": "string"}}}
            for status in r.also:
                responses[str(status)] = responses[str(r.status)]
            for status in sorted({status_of(c) for c in codes} | {500}):
                responses[str(status)] = {
                    "description": ", ".join(sorted(c for c in codes if status_of(c) == status))
                    or "unexpected fault",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
            op: dict[str, Any] = {
                "summary": r.summary,
                "operationId": r.handler.__name__,
                "tags": [r.tag],
                "responses": responses,
            }
            params = [
                {
                    "name": p,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                }
                for p in _PARAM.findall(r.path)
            ]
            if r.query:
                q = r.query.model_json_schema()
                for name, prop in q.get("properties", {}).items():
                    params.append(
                        {
                            "name": name,
                            "in": "query",
                            "required": name in q.get("required", []),
                            "schema": prop,
                        }
                    )
            for name in r.headers:
                params.append({"name": name, "in": "header", **REQUEST_HEADERS[name]})
            if r.cache:
                params.append(
                    {"name": "If-None-Match", "in": "header", **REQUEST_HEADERS["If-None-Match"]}
                )
                responses[str(r.status)]["headers"] = _cache_headers(r.cache)
                responses["304"] = {
                    "description": "not modified: the If-None-Match ETag still holds; no body",
                    "headers": {k: v for k, v in _cache_headers(r.cache).items() if k != "Vary"},
                }
                responses = dict(sorted(responses.items()))
                op["responses"] = responses
            if params:
                op["parameters"] = params
            if r.body or r.raw_body:
                op["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _schema(r.body or r.raw_body, defs)}
                    },
                }
            if protected:
                op["security"] = [{"bearer": []}]
            paths.setdefault(r.path, {})[r.method.lower()] = op
    names = {name: component_name(name) for name in defs}
    if len(set(names.values())) != len(names):
        raise ValueError(f"two schemas would share a component name: {names}")
    defs = {names[k]: v for k, v in defs.items()}
    paths = _rename_components(paths, names)
    defs = _rename_components(defs, names)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Miri",
            "version": version,
            "description": "Pre-order and flash-sale shop. See API.md.",
        },
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
