"""Attacks over HTTP: other people's things, cached tokens, injection, odd Unicode, deep JSON,
bad numbers, big bodies, brute force and floods. Token forgeries and per-field validation are in
test_auth_tokens.py and test_users_validation.py; this file does not repeat them."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from tests.support.goods import GOODS_FIELDS, post_goods
from tests.support.shop import add_user, bearer, make_settings, outbox_tokens

ADDRESS = "Seoul Mapo 12"
GOODS = {**GOODS_FIELDS, "goodsPrice": 1000, "stockQuantity": 50}
INJECTIONS = [
    "' OR 1=1 --",
    "'; DROP TABLE goods; --",
    '" OR ""="',
    "1); DELETE FROM orders; --",
    "%",
    "_",
    "\\",
    "<script>alert(1)</script>",
    "{{7*7}}${7*7}",
    "${jndi:ldap://x/a}",
    "../../etc/passwd",
    "\u0000nul",
    "\u202eevil\u202c",  # right-to-left override
    "zero\u200bwidth",
    "😀🛒",
    "e\u0301\u0301\u0301",  # stacked combining marks
    "\ufeffbom",
    "한글 이름",
    "𝕄𝕚𝕣𝕚",
    "\r\nX-Injected: 1",
]


@pytest.fixture
def settings(data_dir: Any) -> Any:
    return make_settings(data_dir, token_ttl=30 * 24 * 3600)


def count(shop: Any, table: str) -> int:
    raw = sqlite3.connect(shop.settings.db_path)
    try:
        return raw.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        raw.close()


async def refused(resp: Any, status: int, error: str | None = None) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["code"] == -1, body
    if error:
        assert body["error"] == error, body
    return body


# -- other people's things ----------------------------------------------------------------------
async def test_other_peoples_orders_wishlist_and_goods(client: Any, shop: Any) -> None:
    _, alice = await add_user(shop, "alice@example.com")  # sells
    _, bob = await add_user(shop, "bob@example.com")  # buys
    _, eve = await add_user(shop, "eve@example.com")  # attacks
    goods_id = await post_goods(client, alice)
    resp = await client.post(
        "/api/auth/orders",
        json={"goodsId": goods_id, "quantity": 2, "address": "Bob Secret 7"},
        headers=bearer(bob),
    )
    item = (await resp.json())["data"]["items"][0]["orderDetailId"]
    resp = await client.post(
        "/api/auth/wishlist", json={"goodsId": goods_id, "goodsQuantity": 3}, headers=bearer(bob)
    )
    wish = (await resp.json())["data"]["wishListId"]
    snapshot = {
        "order": (await (await client.get(f"/api/auth/orders/{item}", headers=bearer(bob))).json()),
        "wishlist": (await (await client.get("/api/auth/wishlist", headers=bearer(bob))).json()),
        "goods": (await (await client.get(f"/api/goods/{goods_id}")).json()),
        "stock": (await (await client.get(f"/api/goods/{goods_id}/stock")).json()),
    }
    as_eve = bearer(eve)
    attempts = [
        ("GET", f"/api/auth/orders/{item}", None, 404),
        ("POST", f"/api/auth/orders/{item}/cancel", None, 404),
        ("POST", f"/api/auth/orders/{item}/return", {"reason": "I want it back now"}, 404),
        ("PATCH", f"/api/auth/wishlist/{wish}", {"goodsQuantity": 99}, 404),
        ("DELETE", f"/api/auth/wishlist/{wish}", None, 404),
        (
            "POST",
            "/api/auth/orders/from-wishlist",
            {"wishListIds": [wish], "address": ADDRESS},
            404,
        ),
        ("PATCH", f"/api/auth/goods/{goods_id}", {"goodsName": "Mine now"}, 403),
        ("PATCH", f"/api/auth/goods/{goods_id}", {"goodsPrice": 1}, 403),
        ("POST", f"/api/auth/goods/{goods_id}/restock", {"quantity": 1000}, 403),
        ("GET", "/api/admin/orders", None, 403),
        ("GET", "/api/admin/stats", None, 403),
    ]
    for method, path, body, status in attempts:
        resp = await client.request(method, path, json=body, headers=as_eve)
        answer = await refused(resp, status)
        text = await resp.text()
        # Nothing of Bob's comes back: at most the ids Eve sent herself.
        assert answer["data"] in (None, {"wishListIds": [wish]}), answer
        assert "Bob" not in text and "Secret" not in text
    # Walking the ids finds nothing of anyone else's.
    for other in range(1, item + 5):
        resp = await client.get(f"/api/auth/orders/{other}", headers=as_eve)
        await refused(resp, 404, "NOT_FOUND")
    for path in ("/api/auth/orders", "/api/auth/wishlist", "/api/auth/my/goods"):
        data = (await (await client.get(path, headers=as_eve)).json())["data"]
        assert data["items"] == [] and data["totalItems"] == 0, path
    page = (await (await client.get("/api/auth/users", headers=as_eve)).json())["data"]
    assert page["email"] == "eve@example.com" and page["orders"]["items"] == []
    assert page["wishList"]["items"] == [] and page["registeredGoods"]["items"] == []
    # Bob's and Alice's things are exactly as they were.
    assert snapshot == {
        "order": (await (await client.get(f"/api/auth/orders/{item}", headers=bearer(bob))).json()),
        "wishlist": (await (await client.get("/api/auth/wishlist", headers=bearer(bob))).json()),
        "goods": (await (await client.get(f"/api/goods/{goods_id}")).json()),
        "stock": (await (await client.get(f"/api/goods/{goods_id}/stock")).json()),
    }


async def test_cached_tokens_are_still_checked_on_the_order_path(
    client: Any, shop: Any, clock: Any
) -> None:
    """The hot path caches decoded tokens; logout, a password change and expiry still win."""
    _, seller = await add_user(shop, "seller@example.com")
    await add_user(shop, "buyer@example.com")
    goods_id = await post_goods(client, seller)

    async def login() -> str:
        resp = await client.post(
            "/api/login", json={"email": "buyer@example.com", "password": "password123!"}
        )
        return (await resp.json())["data"]["accessToken"]

    async def buy(token: str) -> Any:
        body = {"goodsId": goods_id, "quantity": 1, "address": ADDRESS}
        return await client.post("/api/auth/orders", json=body, headers=bearer(token))

    first, second, third = await login(), await login(), await login()
    for token in (first, second, third):
        assert (await buy(token)).status == 201  # now cached
    assert (await client.post("/api/auth/logout", headers=bearer(first))).status == 200
    await refused(await buy(first), 401, "UNAUTHENTICATED")
    clock.advance(seconds=1)
    resp = await client.patch(
        "/api/auth/users/change-password",
        json={"currentPassword": "password123!", "newPassword": "another-pass9"},
        headers=bearer(second),
    )
    assert resp.status == 200, await resp.text()
    await refused(await buy(second), 401, "UNAUTHENTICATED")
    await refused(await buy(third), 401, "UNAUTHENTICATED")
    clock.advance(seconds=1)
    resp = await client.post(
        "/api/login", json={"email": "buyer@example.com", "password": "another-pass9"}
    )
    fresh = (await resp.json())["data"]["accessToken"]
    assert (await buy(fresh)).status == 201
    clock.advance(days=31)  # past the token's lifetime
    await refused(await buy(fresh), 401, "UNAUTHENTICATED")
    assert count(shop, "orders") == 4


# -- injection and odd Unicode ------------------------------------------------------------------
async def test_injection_and_odd_unicode_in_every_text_field(client: Any, shop: Any) -> None:
    user_id, token = await add_user(shop, "seller@example.com")
    auth = bearer(token)
    plain = await post_goods(client, token, goodsName="Plain goods")
    stored: dict[int, tuple[str, str]] = {}
    for text in INJECTIONS:
        name, description = text[:20], f"about {text}"
        resp = await client.post(
            "/api/auth/goods",
            json={**GOODS, "goodsName": name, "goodsDescription": description},
            headers=auth,
        )
        if resp.status == 201:  # stored and shown exactly as given (trimmed at the edges)
            data = (await resp.json())["data"]
            stored[data["goodsId"]] = (name.strip(), description.strip())
            assert (data["goodsName"], data["goodsDescription"]) == stored[data["goodsId"]]
        else:
            await refused(resp, 400, "VALIDATION_FAILED")
        for field, value in (("category", text), ("reservationStartTime", text)):
            resp = await client.post("/api/auth/goods", json={**GOODS, field: value}, headers=auth)
            await refused(resp, 400, "VALIDATION_FAILED")
        resp = await client.patch(
            f"/api/auth/goods/{plain}", json={"goodsDescription": f"edited to {text}"}, headers=auth
        )
        assert resp.status in (200, 400), await resp.text()
        # Search: the text is matched literally ("%" and "_" are not wildcards).
        resp = await client.get("/api/goods", params={"q": text, "size": 100})
        if "\x00" in text:  # SQLite's LIKE would stop at the NUL and match every name
            await refused(resp, 400, "VALIDATION_FAILED")
        else:
            assert resp.status == 200, (text, await resp.text())
            names = [g["goodsName"] for g in (await resp.json())["data"]["items"]]
            assert all(text.lower() in n.lower() for n in names), (text, names)
        # Users: every text field refuses what its rule does not allow, never a 500.
        for path, method, body in [
            ("/api/verify-email", "POST", {"email": text}),
            ("/api/login", "POST", {"email": text, "password": text}),
            ("/api/auth/users", "PATCH", {"address": text}),
            ("/api/auth/users", "PATCH", {"phoneNumber": text}),
            (
                "/api/auth/users/change-password",
                "PATCH",
                {"currentPassword": text, "newPassword": text},
            ),
            ("/api/auth/orders", "POST", {"goodsId": plain, "quantity": 1, "address": text}),
            ("/api/auth/orders/1/return", "POST", {"reason": f"because {text} broke"}),
        ]:
            resp = await client.request(method, path, json=body, headers=auth)
            assert resp.status in (200, 201, 400, 401, 404, 409), (path, text, await resp.text())
    assert count(shop, "goods") == 1 + len(stored)
    assert stored, "every odd name was refused"
    for goods_id, (name, description) in stored.items():
        data = (await (await client.get(f"/api/goods/{goods_id}")).json())["data"]
        assert (data["goodsName"], data["goodsDescription"]) == (name, description)
    # Nothing was dropped or rewritten by an injected statement.
    assert count(shop, "users") == 1
    profile = await shop.users.profile(user_id)
    assert profile.email == "seller@example.com"
    for raw in (b'{"email": "\\ud800@example.com"}', b'{"email": "a\xff@example.com"}'):
        resp = await client.post(
            "/api/verify-email", data=raw, headers={"Content-Type": "application/json"}
        )
        await refused(resp, 400)
    for query in ({"page": "' OR 1=1"}, {"size": "-1"}, {"size": "1e9"}, {"category": "ETC'--"}):
        await refused(await client.get("/api/goods", params=query), 400, "VALIDATION_FAILED")


# -- deeply nested JSON, bad numbers, big bodies ------------------------------------------------
async def test_deeply_nested_json(client: Any, shop: Any) -> None:
    _, token = await add_user(shop)
    goods_id = await post_goods(client, token)
    headers = {**bearer(token), "Content-Type": "application/json"}
    for depth, expected in ((100, 400), (2000, 400), (30_000, 400), (40_000, 413)):
        nested = "[" * depth + "]" * depth
        bodies = [
            f'{{"goodsId": {goods_id}, "quantity": 1, "address": "{ADDRESS}", "x": {nested}}}',
            f'{{"goodsId": {nested}, "quantity": 1, "address": "{ADDRESS}"}}',
            nested,
        ]
        for raw in bodies:
            if depth == 100 and raw.endswith('"x": ' + nested + "}"):
                continue  # an unknown field is ignored: that order is fine
            resp = await client.post("/api/auth/orders", data=raw.encode(), headers=headers)
            assert resp.status == expected, (depth, await resp.text())
            assert (await resp.json())["code"] == -1
    assert count(shop, "orders") == 0
    objects = '{"a": ' * 3000 + "1" + "}" * 3000
    resp = await client.post("/api/login", data=objects.encode(), headers=headers)
    await refused(resp, 400, "MALFORMED_JSON")


BAD_NUMBERS = [-1, 0, -(2**63), 2**63, 2**64, 10**30, 1e308, 1.5, -0.5, "1", True, None, [], {}]


async def test_negative_zero_huge_and_non_integer_numbers(client: Any, shop: Any) -> None:
    _, token = await add_user(shop)
    auth = bearer(token)
    goods_id = await post_goods(client, token, perBuyerLimit=5)
    resp = await client.post(
        "/api/auth/wishlist", json={"goodsId": goods_id, "goodsQuantity": 1}, headers=auth
    )
    wish = (await resp.json())["data"]["wishListId"]
    before = await client.get(f"/api/goods/{goods_id}")
    before = (await before.json())["data"]
    targets = [
        ("POST", "/api/auth/orders", {"goodsId": goods_id, "address": ADDRESS}, "quantity"),
        ("POST", "/api/auth/orders", {"quantity": 1, "address": ADDRESS}, "goodsId"),
        ("POST", "/api/auth/wishlist", {"goodsId": goods_id}, "goodsQuantity"),
        ("PATCH", f"/api/auth/wishlist/{wish}", {}, "goodsQuantity"),
        ("POST", f"/api/auth/goods/{goods_id}/restock", {}, "quantity"),
        ("PATCH", f"/api/auth/goods/{goods_id}", {}, "goodsPrice"),
        ("PATCH", f"/api/auth/goods/{goods_id}", {}, "perBuyerLimit"),
        (
            "POST",
            "/api/auth/goods",
            {k: v for k, v in GOODS.items() if k != "goodsPrice"},
            "goodsPrice",
        ),
        (
            "POST",
            "/api/auth/goods",
            {k: v for k, v in GOODS.items() if k != "stockQuantity"},
            "stockQuantity",
        ),
    ]
    for method, path, body, field in targets:
        for value in BAD_NUMBERS:
            if value is None and field == "perBuyerLimit":
                continue  # null clears the limit: allowed
            if value == 0 and field in ("goodsPrice", "stockQuantity"):
                continue  # free goods and empty stock are allowed
            resp = await client.request(method, path, json={**body, field: value}, headers=auth)
            answer = await refused(resp, 400)
            assert answer["error"] == "VALIDATION_FAILED" and field in answer["data"], answer
    headers = {**auth, "Content-Type": "application/json"}
    for literal in ("NaN", "Infinity", "-Infinity", "1e400", "0x10", "01", "+1"):
        raw = f'{{"goodsId": {goods_id}, "quantity": {literal}, "address": "{ADDRESS}"}}'
        resp = await client.post("/api/auth/orders", data=raw.encode(), headers=headers)
        await refused(resp, 400)
    assert count(shop, "orders") == 0 and count(shop, "goods") == 1
    after = (await (await client.get(f"/api/goods/{goods_id}")).json())["data"]
    assert after == before
    # A whole number written as 2.0 is the integer 2 (JSON Schema counts it as one).
    body = {"goodsId": float(goods_id), "quantity": 2.0, "address": ADDRESS}
    resp = await client.post("/api/auth/orders", json=body, headers=auth)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["data"]["items"][0]["quantity"] == 2


async def test_bodies_over_64_kib_on_the_shop_routes(client: Any, shop: Any) -> None:
    _, token = await add_user(shop)
    goods_id = await post_goods(client, token)
    headers = {**bearer(token), "Content-Type": "application/json"}
    filler = "x" * (64 * 1024)
    for method, path, body in [
        ("POST", "/api/auth/orders", {"goodsId": goods_id, "quantity": 1, "address": ADDRESS}),
        ("POST", "/api/auth/orders/from-wishlist", {"wishListIds": [1], "address": ADDRESS}),
        ("POST", "/api/auth/goods", GOODS),
        ("PATCH", f"/api/auth/goods/{goods_id}", {"goodsName": "Big"}),
        ("POST", f"/api/auth/goods/{goods_id}/restock", {"quantity": 1}),
        ("POST", "/api/auth/wishlist", {"goodsId": goods_id, "goodsQuantity": 1}),
        ("POST", "/api/auth/orders/1/return", {"reason": "too big to be true"}),
    ]:
        resp = await client.request(method, path, json={**body, "pad": filler}, headers=headers)
        await refused(resp, 413, "PAYLOAD_TOO_LARGE")
    assert count(shop, "orders") == 0 and count(shop, "goods") == 1
    assert count(shop, "wishlist") == 0


# -- brute force and floods, all at once --------------------------------------------------------
async def test_concurrent_login_brute_force_hits_429(client: Any, shop: Any) -> None:
    await add_user(shop, "kim@example.com")
    limit = shop.settings.login_failures_per_email

    async def guess(n: int) -> Any:
        body = {"email": "kim@example.com", "password": f"guess-{n:06d}x"}
        return await client.post("/api/login", json=body)

    answers = await asyncio.gather(*(guess(n) for n in range(40)))
    statuses = [r.status for r in answers]
    assert statuses.count(401) <= limit and statuses.count(200) == 0
    assert statuses.count(429) >= 40 - limit
    for resp in answers:
        if resp.status == 429:
            retry = int(resp.headers["Retry-After"])
            assert 1 <= retry <= shop.settings.login_failure_window
    # Even the right password waits now.
    resp = await client.post(
        "/api/login", json={"email": "kim@example.com", "password": "password123!"}
    )
    await refused(resp, 429, "RATE_LIMITED")


async def test_verify_email_flood_hits_429(client: Any, shop: Any) -> None:
    s = shop.settings

    async def ask(email: str) -> Any:
        return await client.post("/api/verify-email", json={"email": email})

    answers = await asyncio.gather(*(ask("target@example.com") for _ in range(30)))
    statuses = [r.status for r in answers]
    assert statuses.count(200) == s.verify_email_per_email, statuses
    assert statuses.count(429) == 30 - s.verify_email_per_email
    assert all(
        1 <= int(r.headers["Retry-After"]) <= s.verify_email_window
        for r in answers
        if r.status == 429
    )
    assert len(outbox_tokens(s, "target@example.com")) == s.verify_email_per_email
    # Many addresses from one client: the per-client limit.
    answers = await asyncio.gather(*(ask(f"spray{n}@example.com") for n in range(40)))
    sent = sum(r.status == 200 for r in answers)
    assert sent == s.verify_email_per_client - s.verify_email_per_email
    assert all(r.status in (200, 429) for r in answers)
