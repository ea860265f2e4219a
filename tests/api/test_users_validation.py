"""Every validation rule and body error of the accounts section, and that a refusal changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from miri.domain.users import rules
from tests.support.shop import add_user, bearer, outbox_tokens

ALL_SPECIALS = "!@#$%^&*()-_=+[]{}|;:'\",.<>/?"


# -- the rules themselves --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, expected",
    [
        ("kim@example.com", "kim@example.com"),
        ("  Kim.Lee+shop@Example.CO.KR ", "kim.lee+shop@example.co.kr"),
        ("a@b.co", "a@b.co"),
        ("x" * 21 + "@test.com", "x" * 21 + "@test.com"),  # exactly 30
    ],
)
def test_email_accepted(value: str, expected: str) -> None:
    assert rules.email(value) == expected


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "2 to 30"),
        ("a", "2 to 30"),
        ("x" * 22 + "@test.com", "2 to 30"),  # 31
        ("ab", "not a valid"),
        ("kim.example.com", "not a valid"),
        ("kim@example", "not a valid"),
        ("kim@@example.com", "not a valid"),
        ("kim lee@example.com", "not a valid"),
        ("kim@exa mple.com", "not a valid"),
        ("@example.com", "not a valid"),
        ("kim@.com", "not a valid"),
        ("kim@example.c", "not a valid"),
        ("김@example.com", "not a valid"),
        ("kim@example.com\nBcc: x@y.zz", "not a valid"),
    ],
)
def test_email_refused(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rules.email(value)


@pytest.mark.parametrize(
    "value",
    [
        "abcdefgh1!",  # 10
        "A" * 20,  # 20
        ALL_SPECIALS[:15] + "abcde",
        ALL_SPECIALS[15:] + "abcdef",
        "0123456789",
    ],
)
def test_password_accepted(value: str) -> None:
    assert rules.password(value) == value


@pytest.mark.parametrize(
    "value, message",
    [
        ("abcdefgh1", "10 to 20"),  # 9
        ("a" * 21, "10 to 20"),
        ("", "10 to 20"),
        ("abcd efgh12", "only letters"),  # space
        ("abcdefghij~", "only letters"),
        ("abcdefghij`", "only letters"),
        ("abcdefghij\\", "only letters"),
        ("비밀번호비밀번호비밀번호", "only letters"),
        ("abcdefghijé", "only letters"),
        ("abcdefghij\n", "only letters"),  # a trailing newline is not in the set
        ("abcdefghij\t", "only letters"),
    ],
)
def test_password_refused(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rules.password(value)


def test_phone_number_accepted() -> None:
    assert rules.phone_number("010-1234-5678") == "010-1234-5678"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "01012345678",
        "010-123-5678",
        "010-12345-678",
        "0101-234-5678",
        "010 1234 5678",
        "010-1234-567a",
        "abc-defg-hijk",
        "010-1234-5678\n",
        " 010-1234-5678",
        "010-1234-56789",
        "٠١٠-١٢٣٤-٥٦٧٨",  # non-ASCII digits
    ],
)
def test_phone_number_refused(value: str) -> None:
    with pytest.raises(ValueError, match="phoneNumber"):
        rules.phone_number(value)


@pytest.mark.parametrize(
    "value",
    [
        "Seoul Gangnam-gu 123, #4_5.",
        "서울시 강남구 테헤란로 123",
        "ㄱㄴ ㅏㅣ 1",
        "a",
        "A" * 50,
    ],
)
def test_address_accepted(value: str) -> None:
    assert rules.address(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "   ", "A" * 51, "Seoul@1", "Seoul/1", "Seoul (1)", "Seoul\t1", "Seoul 1\n", "Seoul 🏠"],
)
def test_address_refused(value: str) -> None:
    with pytest.raises(ValueError, match="address"):
        rules.address(value)


@pytest.mark.parametrize("value", ["Kim Miri", "김미리", "a", "가" * 20, "Kim 미리"])
def test_user_name_accepted(value: str) -> None:
    assert rules.user_name(value) == value


@pytest.mark.parametrize(
    "value", ["", " ", "가" * 21, "Kim2", "Kim-Miri", "Kim.", "Kim\n", "Kim\tLee", "Kim_Lee"]
)
def test_user_name_refused(value: str) -> None:
    with pytest.raises(ValueError, match="userName"):
        rules.user_name(value)


# -- the same rules through HTTP, in the envelope, changing nothing --------------------------------
def _signup(token: str, **changes: Any) -> dict[str, Any]:
    body = {
        "emailVerificationToken": token,
        "userName": "Lee Miri",
        "password": "abcdefghij1",
        "phoneNumber": "010-1111-2222",
        "address": "Busan Haeundae 2",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


async def _count(shop: Any, table: str) -> int:
    return await shop.db.read(lambda c: c.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def _expect_invalid(resp: Any, *fields: str) -> dict[str, str]:
    assert resp.status == 400, await resp.text()
    body = await resp.json()
    assert body["code"] == -1 and body["error"] == "VALIDATION_FAILED", body
    assert isinstance(body["msg"], str) and body["msg"]
    assert set(body["data"]) == set(fields), body["data"]
    assert all(isinstance(m, str) and m for m in body["data"].values())
    return body["data"]


async def _token(client: Any, shop: Any, email: str) -> str:
    resp = await client.post("/api/verify-email", json={"email": email})
    assert resp.status == 200, await resp.text()
    return outbox_tokens(shop.settings, email)[-1]


@pytest.mark.parametrize(
    "field, bad, message",
    [
        ("userName", "Kim2", "userName"),
        ("userName", "", "userName"),
        ("userName", "가" * 21, "userName"),
        ("password", "short1!", "10 to 20"),
        ("password", "abcdefghij\n", "only letters"),
        ("password", "has space 123", "only letters"),
        ("phoneNumber", "01011112222", "phoneNumber"),
        ("address", "A" * 51, "address"),
        ("address", "Seoul@1", "address"),
        ("email", "not-an-email", "not a valid"),
        ("email", "x" * 22 + "@test.com", "2 to 30"),
        ("emailVerificationToken", "too-short", "36"),
        ("userName", 5, "string"),
        ("password", ["abcdefghij1"], "string"),
        ("phoneNumber", None, "string"),
        ("address", {"city": "Seoul"}, "string"),
        ("emailVerificationToken", 12345, "string"),
        ("userName", True, "string"),
        ("userName", _DROP, "required"),
        ("password", _DROP, "required"),
        ("phoneNumber", _DROP, "required"),
        ("address", _DROP, "required"),
        ("emailVerificationToken", _DROP, "required"),
    ],
)
async def test_signup_field_refused_and_token_still_good(
    client: Any, shop: Any, field: str, bad: Any, message: str
) -> None:
    token = await _token(client, shop, "lee@example.com")
    resp = await client.post("/api/users", json=_signup(token, **{field: bad}))
    data = await _expect_invalid(resp, field)
    assert message in data[field]
    assert await _count(shop, "users") == 0
    # Nothing was spent: the same token still signs up.
    resp = await client.post("/api/users", json=_signup(token))
    assert resp.status == 201, await resp.text()


async def test_signup_reports_every_bad_field(client: Any, shop: Any) -> None:
    resp = await client.post(
        "/api/users",
        json={"userName": "1", "password": "x", "phoneNumber": "1", "address": "@", "email": "x"},
    )
    data = await _expect_invalid(
        resp, "emailVerificationToken", "userName", "password", "phoneNumber", "address", "email"
    )
    assert "required" in data["emailVerificationToken"].lower()
    assert await _count(shop, "users") == 0


@pytest.mark.parametrize("bad", ["kim", "", 5, None, ["kim@example.com"], "x" * 22 + "@test.com"])
async def test_verify_email_refused(client: Any, shop: Any, bad: Any) -> None:
    resp = await client.post("/api/verify-email", json={"email": bad})
    await _expect_invalid(resp, "email")
    assert await _count(shop, "email_verifications") == 0
    assert not (shop.settings.mail_dir / "outbox.log").exists()


async def test_login_wrong_types(client: Any, shop: Any) -> None:
    await add_user(shop)
    for body, fields in [
        ({"email": 5, "password": "password123!"}, ["email"]),
        ({"email": "buyer@example.com", "password": 1234567890}, ["password"]),
        ({"email": "buyer@example.com"}, ["password"]),
        ({}, ["email", "password"]),
        ({"email": "", "password": ""}, ["email", "password"]),
    ]:
        resp = await client.post("/api/login", json=body)
        await _expect_invalid(resp, *fields)


async def test_profile_patch_refused_changes_nothing(client: Any, shop: Any) -> None:
    user_id, token = await add_user(shop)
    before = await shop.users.profile(user_id)
    for body, fields in [
        ({"phoneNumber": "010-12-5678"}, ["phoneNumber"]),
        ({"address": "Seoul/1"}, ["address"]),
        ({"address": ""}, ["address"]),
        ({"phoneNumber": "010-9999-8888", "address": "Seoul@2"}, ["address"]),
        ({"phoneNumber": 1099998888}, ["phoneNumber"]),
        ({}, ["body"]),
        ({"email": "other@example.com"}, ["body"]),
    ]:
        resp = await client.patch("/api/auth/users", json=body, headers=bearer(token))
        await _expect_invalid(resp, *fields)
    assert (await shop.users.profile(user_id)) == before


async def test_change_password_invalid_new(client: Any, shop: Any) -> None:
    _, token = await add_user(shop)
    for body, fields in [
        ({"currentPassword": "password123!", "newPassword": "short"}, ["newPassword"]),
        ({"currentPassword": "password123!", "newPassword": "with space 12"}, ["newPassword"]),
        ({"currentPassword": "password123!"}, ["newPassword"]),
        ({"newPassword": "abcdefghij12"}, ["currentPassword"]),
        ({"currentPassword": 5, "newPassword": 6}, ["currentPassword", "newPassword"]),
    ]:
        resp = await client.patch(
            "/api/auth/users/change-password", json=body, headers=bearer(token)
        )
        await _expect_invalid(resp, *fields)
    # The password did not change.
    resp = await client.post(
        "/api/login", json={"email": "buyer@example.com", "password": "password123!"}
    )
    assert resp.status == 200


# -- bodies that are not JSON objects, and bodies that are too big ---------------------------------
BODY_ROUTES = [
    ("POST", "/api/verify-email", False),
    ("POST", "/api/users", False),
    ("POST", "/api/login", False),
    ("PATCH", "/api/auth/users", True),
    ("PATCH", "/api/auth/users/change-password", True),
]
NOT_OBJECTS = [b"", b"   ", b"not json", b"{", b'{"email": ', b"[1, 2]", b'"text"', b"null", b"42"]
NOT_OBJECTS += [b"\xff\xfe{}", b"{'email': 'single quotes'}"]


@pytest.mark.parametrize("method, path, auth", BODY_ROUTES)
async def test_malformed_json(client: Any, shop: Any, method: str, path: str, auth: bool) -> None:
    user_id, token = await add_user(shop)
    before = await shop.users.profile(user_id)
    headers = {"Content-Type": "application/json", **(bearer(token) if auth else {})}
    for raw in NOT_OBJECTS:
        resp = await client.request(method, path, data=raw, headers=headers)
        assert resp.status == 400, (raw, await resp.text())
        body = await resp.json()
        assert body["code"] == -1 and body["error"] == "MALFORMED_JSON", (raw, body)
        assert body["msg"]
    assert await _count(shop, "users") == 1
    assert await _count(shop, "email_verifications") == 0
    assert (await shop.users.profile(user_id)) == before


def _padded(obj: bytes, size: int) -> bytes:
    """A JSON object padded with whitespace to exactly ``size`` bytes."""
    return obj[:-1] + b" " * (size - len(obj)) + b"}"


@pytest.mark.parametrize("method, path, auth", BODY_ROUTES)
async def test_payload_too_large(
    client: Any, shop: Any, method: str, path: str, auth: bool
) -> None:
    _, token = await add_user(shop)
    headers = {"Content-Type": "application/json", **(bearer(token) if auth else {})}
    big = _padded(b'{"email": "big@example.com"}', 64 * 1024 + 1)
    resp = await client.request(method, path, data=big, headers=headers)
    assert resp.status == 413, await resp.text()
    body = await resp.json()
    assert body["code"] == -1 and body["error"] == "PAYLOAD_TOO_LARGE"
    assert resp.headers["X-Request-Id"]

    async def chunks():  # no Content-Length: the limit must hold while reading
        for _ in range(80):
            yield b" " * 1024

    resp = await client.request(method, path, data=chunks(), headers=headers)
    assert resp.status == 413, await resp.text()
    assert (await resp.json())["error"] == "PAYLOAD_TOO_LARGE"
    assert await _count(shop, "email_verifications") == 0


async def test_body_of_exactly_64_kib_is_accepted(client: Any, shop: Any) -> None:
    body = _padded(b'{"email": "edge@example.com"}', 64 * 1024)
    resp = await client.post(
        "/api/verify-email", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 200, await resp.text()
    assert len(outbox_tokens(shop.settings, "edge@example.com")) == 1
