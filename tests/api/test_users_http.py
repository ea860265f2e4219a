"""The accounts section as the HTTP contract describes it: OpenAPI, request ids, metrics."""

from __future__ import annotations

import re
from typing import Any

from tests.support.shop import add_user, bearer

ACCOUNT_ROUTES = {
    ("post", "/api/verify-email"): "200",
    ("post", "/api/users"): "201",
    ("post", "/api/login"): "200",
    ("post", "/api/auth/logout"): "200",
    ("get", "/api/auth/users"): "200",
    ("patch", "/api/auth/users"): "200",
    ("patch", "/api/auth/users/change-password"): "200",
}


async def test_openapi_lists_every_account_route(client: Any) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1.")
    schemas = doc["components"]["schemas"]
    for (method, path), success in ACCOUNT_ROUTES.items():
        op = doc["paths"][path][method]
        assert success in op["responses"], (method, path)
        assert "500" in op["responses"]
        protected = path.startswith("/api/auth/")
        assert ("401" in op["responses"]) == protected or path == "/api/login", (method, path)
        assert bool(op.get("security")) == protected, (method, path)
    # Request bodies come from the same models the handlers validate with.
    body = doc["paths"]["/api/users"]["post"]["requestBody"]["content"]["application/json"]
    name = body["schema"]["$ref"].rsplit("/", 1)[-1]
    props = schemas[name]["properties"]
    assert {
        "emailVerificationToken",
        "email",
        "userName",
        "password",
        "phoneNumber",
        "address",
    } <= set(props)
    assert set(schemas[name]["required"]) == {
        "emailVerificationToken",
        "userName",
        "password",
        "phoneNumber",
        "address",
    }
    sign_up_errors = doc["paths"]["/api/users"]["post"]["responses"]
    assert {"400", "409", "413"} <= set(sign_up_errors)
    verify = doc["paths"]["/api/verify-email"]["post"]["responses"]
    assert {"400", "409", "429", "503"} <= set(verify)
    assert "429" in doc["paths"]["/api/login"]["post"]["responses"]


async def test_request_id_echoed_or_generated(client: Any, shop: Any) -> None:
    _, token = await add_user(shop)
    for method, path, headers in [
        ("GET", "/api/health", {}),
        ("GET", "/api/auth/users", bearer(token)),
        ("GET", "/api/auth/users", {}),  # 401
        ("POST", "/api/login", {}),  # 400
        ("GET", "/api/no-such-thing", {}),  # 404
    ]:
        resp = await client.request(method, path, headers={**headers, "X-Request-Id": "abc-123"})
        assert resp.headers["X-Request-Id"] == "abc-123", (method, path)
        if resp.status >= 400:
            assert (await resp.json())["code"] == -1
        seen = set()
        for _ in range(2):
            resp = await client.request(method, path, headers=headers)
            rid = resp.headers["X-Request-Id"]
            assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
            seen.add(rid)
        assert len(seen) == 2
    # A request id that could break a log line is replaced, not echoed.
    resp = await client.get("/api/health", headers={"X-Request-Id": "bad id\twith spaces"})
    assert resp.headers["X-Request-Id"] != "bad id\twith spaces"


async def test_metrics_by_route_and_status(client: Any, shop: Any) -> None:
    await add_user(shop)
    for password in ("password123!", "wrong-password1", "wrong-password2"):
        await client.post("/api/login", json={"email": "buyer@example.com", "password": password})
    await client.get("/api/auth/users")
    text = await (await client.get("/metrics")).text()

    def value(pattern: str) -> float:
        found = re.search(pattern + r" ([0-9.e+]+)", text)
        assert found, pattern
        return float(found.group(1))

    assert value(r'miri_http_requests_total\{method="POST",route="/api/login",status="200"\}') == 1
    assert value(r'miri_http_requests_total\{method="POST",route="/api/login",status="401"\}') == 2
    assert (
        value(r'miri_http_requests_total\{method="GET",route="/api/auth/users",status="401"\}') == 1
    )
    assert value(r'miri_http_request_seconds_count\{route="/api/login"\}') == 3
    assert value(r'miri_http_request_seconds_bucket\{le="\+Inf",route="/api/login"\}') == 3


async def test_health(client: Any) -> None:
    resp = await client.get("/api/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["code"] == 1
    data = body["data"]
    assert (data["status"], data["redis"], data["database"]) == ("ok", "ok", "ok")
    assert set(data["bus"]) == {"pending", "deadLetters"} and isinstance(data["breakers"], dict)
