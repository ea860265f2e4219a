"""Login, access tokens (expiry, logout, password change, forgeries) and the profile."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest

from tests.support.shop import add_user, bearer

EMAIL = "buyer@example.com"
PASSWORD = "password123!"  # what add_user gives


async def login(client: Any, email: str = EMAIL, password: str = PASSWORD) -> Any:
    return await client.post("/api/login", json={"email": email, "password": password})


async def token_of(client: Any, email: str = EMAIL, password: str = PASSWORD) -> str:
    resp = await login(client, email, password)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["data"]["accessToken"]


async def me(client: Any, token: str) -> Any:
    return await client.get("/api/auth/users", headers=bearer(token))


async def assert_401(resp: Any) -> dict[str, Any]:
    assert resp.status == 401, await resp.text()
    body = await resp.json()
    assert body["code"] == -1 and body["error"] == "UNAUTHENTICATED" and body["msg"]
    assert body["data"] is None
    return body


def jwt_key(shop: Any) -> str:
    return (shop.settings.data_dir / "keys" / "jwt.key").read_text().strip()


# -- login -------------------------------------------------------------------------------------------
async def test_login_token_and_claims(client: Any, shop: Any, clock: Any) -> None:
    user_id, _ = await add_user(shop)
    resp = await login(client, "  Buyer@Example.COM ")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["code"] == 1
    data = body["data"]
    assert data["tokenType"] == "Bearer"
    assert data["expiresIn"] == shop.settings.token_ttl == 3600
    token = data["accessToken"]
    assert resp.headers["Authorization"] == f"Bearer {token}"

    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    claims = jwt.decode(token, jwt_key(shop), algorithms=["HS256"], options={"verify_exp": False})
    assert claims["sub"] == str(user_id)
    assert claims["role"] == "USER"
    assert len(claims["jti"]) >= 16
    now = clock.now().timestamp()
    assert claims["exp"] == int(now + 3600)
    assert claims["iat"] == pytest.approx(now)

    # Each login gets its own jti; both tokens work.
    other = await token_of(client)
    assert jwt.decode(other, options={"verify_signature": False})["jti"] != claims["jti"]
    for t in (token, other):
        resp = await me(client, t)
        assert resp.status == 200
        assert (await resp.json())["data"]["userId"] == user_id


async def test_admin_role_in_token(client: Any, shop: Any) -> None:
    await add_user(shop, "boss@example.com", admin=True)
    token = await token_of(client, "boss@example.com")
    assert jwt.decode(token, options={"verify_signature": False})["role"] == "ADMIN"
    assert (await (await me(client, token)).json())["data"]["role"] == "ADMIN"


async def test_wrong_password_and_unknown_email_look_the_same(client: Any, shop: Any) -> None:
    await add_user(shop)
    answers = []
    for email, password in [
        (EMAIL, "wrong-password1"),
        ("nobody@example.com", PASSWORD),
        ("nobody@example.com", "wrong-password1"),
        ("not-an-email", PASSWORD),
        (EMAIL, PASSWORD + "x"),
        (EMAIL, PASSWORD.upper()),
    ]:
        resp = await login(client, email, password)
        assert resp.status == 401, (email, password, await resp.text())
        assert "Authorization" not in resp.headers
        answers.append(await resp.json())
    assert all(a == answers[0] for a in answers), answers
    assert answers[0]["error"] == "UNAUTHENTICATED"


async def test_expired_token(make_client: Any, clock: Any) -> None:
    shop, client = await make_client(token_ttl=120)
    await add_user(shop)
    resp = await login(client)
    assert (await resp.json())["data"]["expiresIn"] == 120
    token = (await resp.json())["data"]["accessToken"]
    assert (await me(client, token)).status == 200  # also caches the decoded claims
    clock.advance(seconds=119)
    assert (await me(client, token)).status == 200
    clock.advance(seconds=1)
    assert (await assert_401(await me(client, token)))["msg"] == "invalid token: expired"
    await assert_401(await client.post("/api/auth/logout", headers=bearer(token)))
    # A fresh login works again.
    assert (await me(client, await token_of(client))).status == 200


async def test_logout(client: Any, shop: Any) -> None:
    await add_user(shop)
    token, other = await token_of(client), await token_of(client)
    resp = await client.post("/api/auth/logout", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["code"] == 1
    await assert_401(await me(client, token))
    await assert_401(await client.post("/api/auth/logout", headers=bearer(token)))
    await assert_401(
        await client.patch("/api/auth/users", json={"address": "x"}, headers=bearer(token))
    )
    # Only that token: the user's other token still works.
    assert (await me(client, other)).status == 200


async def test_logout_outlives_a_restart(make_client: Any) -> None:
    shop, client = await make_client()
    await add_user(shop)
    token = await token_of(client)
    assert (await client.post("/api/auth/logout", headers=bearer(token))).status == 200
    # Another shop on the same data dir (another worker, or after a restart) refuses it too.
    _, again = await make_client()
    await assert_401(await me(again, token))


async def test_change_password_revokes_older_tokens(client: Any, shop: Any, clock: Any) -> None:
    user_id, operator_token = await add_user(shop)
    used, other = await token_of(client), await token_of(client)
    clock.advance(seconds=1)  # the tokens above are older than the change
    resp = await client.patch(
        "/api/auth/users/change-password",
        json={"currentPassword": PASSWORD, "newPassword": "new-Password9"},
        headers=bearer(used),
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["code"] == 1
    for token in (used, other, operator_token):
        await assert_401(await me(client, token))
    await assert_401(await login(client, EMAIL, PASSWORD))
    fresh = await token_of(client, EMAIL, "new-Password9")
    resp = await me(client, fresh)
    assert resp.status == 200 and (await resp.json())["data"]["userId"] == user_id
    # Later tokens keep working; the old ones stay refused.
    clock.advance(minutes=10)
    assert (await me(client, fresh)).status == 200
    await assert_401(await me(client, other))


async def test_password_change_survives_a_redis_flush(make_client: Any, clock: Any) -> None:
    shop, client = await make_client()
    await add_user(shop)
    old = await token_of(client)
    clock.advance(seconds=1)
    resp = await client.patch(
        "/api/auth/users/change-password",
        json={"currentPassword": PASSWORD, "newPassword": "new-Password9"},
        headers=bearer(old),
    )
    assert resp.status == 200
    await shop.redis.client.flushall()
    # A restart puts the revocation back from SQLite.
    _, again = await make_client()
    await assert_401(await me(again, old))


async def test_change_password_errors(client: Any, shop: Any) -> None:
    await add_user(shop)
    token = await token_of(client)
    resp = await client.patch(
        "/api/auth/users/change-password",
        json={"currentPassword": "not-the-password1", "newPassword": "new-Password9"},
        headers=bearer(token),
    )
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "VALIDATION_FAILED" and set(body["data"]) == {"currentPassword"}
    resp = await client.patch(
        "/api/auth/users/change-password",
        json={"currentPassword": PASSWORD, "newPassword": PASSWORD},
        headers=bearer(token),
    )
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "VALIDATION_FAILED" and set(body["data"]) == {"newPassword"}
    # Nothing changed: the token and the old password still work, the new one does not.
    assert (await me(client, token)).status == 200
    assert (await login(client)).status == 200
    assert (await login(client, EMAIL, "new-Password9")).status == 401


# -- forged and broken tokens ------------------------------------------------------------------------
def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_forged_tokens_refused(client: Any, shop: Any, clock: Any) -> None:
    user_id, _ = await add_user(shop)
    victim_id, _ = await add_user(shop, "victim@example.com")
    good = await token_of(client)
    claims = jwt.decode(good, options={"verify_signature": False})
    head, payload, signature = good.split(".")
    admin_claims = {**claims, "role": "ADMIN"}
    victim_claims = {**claims, "sub": str(victim_id)}
    forged = {
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "alg none, no dot": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}",
        "alg None, empty sig": f"{_b64({'alg': 'None', 'typ': 'JWT'})}.{payload}.",
        "another key": jwt.encode(claims, "another-secret-key-of-decent-length", algorithm="HS256"),
        "right key, HS512": jwt.encode(claims, jwt_key(shop), algorithm="HS512"),
        "tampered role": f"{head}.{_b64(admin_claims)}.{signature}",
        "tampered sub": f"{head}.{_b64(victim_claims)}.{signature}",
        "truncated signature": good[:-4],
        "flipped signature": f"{head}.{payload}.{signature[::-1]}",
        "two parts": f"{head}.{payload}",
        "garbage": "not-a-token",
        "no sub": jwt.encode(
            {k: v for k, v in claims.items() if k != "sub"}, jwt_key(shop), algorithm="HS256"
        ),
        "no jti": jwt.encode(
            {k: v for k, v in claims.items() if k != "jti"}, jwt_key(shop), algorithm="HS256"
        ),
        "no exp": jwt.encode(
            {k: v for k, v in claims.items() if k != "exp"}, jwt_key(shop), algorithm="HS256"
        ),
        "sub not a number": jwt.encode(
            {**claims, "sub": "admin"}, jwt_key(shop), algorithm="HS256"
        ),
    }
    # Bytes that are not UTF-8 and JSON that is not JSON, under a valid-looking header.
    bad_bytes = base64.urlsafe_b64encode(b"\xb7\xff\xfe").rstrip(b"=").decode()
    forged["payload not utf-8"] = f"{head}.{bad_bytes}.{signature}"
    forged["payload not utf-8, other header"] = f"{_b64({'alg': 'HS256'})}.{bad_bytes}.{signature}"
    forged["header not utf-8"] = f"{bad_bytes}.{payload}.{signature}"
    forged["bad base64"] = f"{head}.@@@.{signature}"
    for name, token in forged.items():
        resp = await me(client, token)
        assert resp.status == 401, (name, await resp.text())
        body = await resp.json()
        assert body["error"] == "UNAUTHENTICATED", name
        # Our words only: never a codec, parser or PyJWT message.
        assert body["msg"] == "invalid token", (name, body["msg"])
    # The real token still works and is the buyer's.
    resp = await me(client, good)
    assert (await resp.json())["data"]["userId"] == user_id


async def test_token_valid_whatever_the_wall_clock(client: Any, shop: Any, clock: Any) -> None:
    """Only the shop's clock decides: a clock ahead of the wall clock still accepts fresh tokens."""
    await add_user(shop)
    clock.advance(days=400)
    token = await token_of(client)
    resp = await me(client, token)
    assert resp.status == 200, await resp.text()


PROTECTED = [
    ("GET", "/api/auth/users"),
    ("PATCH", "/api/auth/users"),
    ("PATCH", "/api/auth/users/change-password"),
    ("POST", "/api/auth/logout"),
    ("GET", "/api/auth/no-such-route"),
]


@pytest.mark.parametrize("method, path", PROTECTED)
async def test_missing_or_malformed_authorization(
    client: Any, shop: Any, method: str, path: str
) -> None:
    _, token = await add_user(shop)
    before = await shop.users.find(EMAIL)
    body = {"address": "Changed 1", "currentPassword": PASSWORD, "newPassword": "new-Password9"}
    for headers in [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": token},
        {"Authorization": f"Basic {token}"},
        {"Authorization": f"Token {token}"},
        {"Authorization": f"Bearer{token}"},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": "Bearer a.b.c"},
        {"X-Access-Token": token},
    ]:
        resp = await client.request(method, path, json=body, headers=headers)
        await assert_401(resp)
        assert resp.headers["X-Request-Id"]
    assert (await shop.users.find(EMAIL)) == before
    assert (await login(client)).status == 200


# -- profile -----------------------------------------------------------------------------------------
async def test_profile_is_only_ever_my_own(client: Any, shop: Any) -> None:
    kim_id, kim = await add_user(shop, "kim@example.com")
    park_id = await shop.users.add_user(
        email="park@example.com",
        password="parkpass1234",
        user_name="박 지성",
        phone_number="010-2222-3333",
        address="Daegu 3",
    )
    park = await token_of(client, "park@example.com", "parkpass1234")

    resp = await me(client, kim)
    data = (await resp.json())["data"]
    assert data["userId"] == kim_id and data["email"] == "kim@example.com"
    assert {"registeredGoods", "wishList", "orders"} <= set(data)
    resp = await me(client, park)
    data = (await resp.json())["data"]
    assert data == {
        **data,
        "userId": park_id,
        "email": "park@example.com",
        "userName": "박 지성",
        "phoneNumber": "010-2222-3333",
        "address": "Daegu 3",
        "role": "USER",
    }

    # Park changes their phone; Kim's profile is untouched, and extra fields are ignored.
    resp = await client.patch(
        "/api/auth/users",
        json={"phoneNumber": "010-4444-5555", "role": "ADMIN", "email": "kim@example.com"},
        headers=bearer(park),
    )
    assert resp.status == 200, await resp.text()
    data = (await resp.json())["data"]
    assert data["phoneNumber"] == "010-4444-5555" and data["address"] == "Daegu 3"
    assert data["role"] == "USER" and data["email"] == "park@example.com"
    kim_profile = await shop.users.profile(kim_id)
    assert (kim_profile.phone_number, kim_profile.email) == ("010-1234-5678", "kim@example.com")

    resp = await client.patch(
        "/api/auth/users", json={"address": "대구 수성구 7"}, headers=bearer(park)
    )
    data = (await resp.json())["data"]
    assert data["phoneNumber"] == "010-4444-5555" and data["address"] == "대구 수성구 7"
    resp = await client.patch(
        "/api/auth/users",
        json={"phoneNumber": "010-7777-8888", "address": "Incheon 8"},
        headers=bearer(park),
    )
    data = (await resp.json())["data"]
    assert (data["phoneNumber"], data["address"]) == ("010-7777-8888", "Incheon 8")
    # What GET shows is what was stored.
    data = (await (await me(client, park)).json())["data"]
    assert (data["phoneNumber"], data["address"]) == ("010-7777-8888", "Incheon 8")


async def test_encoded_paths_are_still_protected(client: Any) -> None:
    from yarl import URL

    for path in ("/api/%61uth/users", "/api/auth/users/", "/api/auth/./users", "/api/auth%2Fusers"):
        resp = await client.get(URL(path, encoded=True))
        await assert_401(resp)
