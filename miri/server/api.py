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
                    method, path, handler, summary, body, query, response, status, errors, self.tag
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
            if params:
                op["parameters"] = params
            if r.body:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _schema(r.body, defs)}},
                }
            if protected:
                op["security"] = [{"bearer": []}]
            paths.setdefault(r.path, {})[r.method.lower()] = op
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
