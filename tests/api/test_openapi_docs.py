"""/openapi.json is a valid OpenAPI 3.1 document (a strict validator says so) that names the
headers clients need; /docs renders it in the browser from the package alone."""

from __future__ import annotations

import re

from openapi_spec_validator import OpenAPIV31SpecValidator

from miri.server.api import component_name


async def _document(client) -> dict:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    return await resp.json()


async def test_openapi_document_validates_as_3_1(client):
    doc = await _document(client)
    assert doc["openapi"].startswith("3.1")
    errors = [str(e).splitlines()[0] for e in OpenAPIV31SpecValidator(doc).iter_errors()]
    assert errors == []
    names = set(doc["components"]["schemas"])
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) for n in names), names
    # Pages of rows are named after the row; every reference points at a component that exists.
    assert {"GoodsSummaryPage", "WishRowPage", "OrderItemPage"} <= names
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', str(doc).replace("'", '"')))
    assert refs and refs <= names


def test_component_names_of_generic_models():
    assert component_name("Page[GoodsSummary]") == "GoodsSummaryPage"
    assert component_name("Pair[A, B]") == "ABPair"
    assert component_name("Odd name!") == "Odd_name_"


async def test_idempotency_key_is_documented_on_orders(client):
    doc = await _document(client)
    for path in ("/api/auth/orders", "/api/auth/orders/from-wishlist"):
        params = {p["name"]: p for p in doc["paths"][path]["post"]["parameters"]}
        key = params["Idempotency-Key"]
        assert key["in"] == "header" and not key.get("required", False)
        assert key["schema"]["maxLength"] == 64 and "409" in key["description"]


async def test_docs_page_is_served_from_the_package_and_reads_the_document(client):
    resp = await client.get("/docs")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert "/openapi.json" in page
    # Nothing from elsewhere: no external script, style or font, and the policy forbids any.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page
    policy = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "http" not in policy
