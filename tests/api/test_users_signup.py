"""verify-email -> mailed token -> sign-up, through a real SMTP server on loopback."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from miri.infra.crypto import FieldCipher
from tests.support.shop import TOKEN_RE, add_user, free_port, outbox_tokens

LEE = {
    "userName": "Lee Miri",
    "password": "abcdefghij1",
    "phoneNumber": "010-1111-2222",
    "address": "Busan Haeundae 2",
}


def signup(token: str, **changes: Any) -> dict[str, Any]:
    return {"emailVerificationToken": token, **LEE, **changes}


async def count(shop: Any, table: str) -> int:
    return await shop.db.read(lambda c: c.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["code"] == -1 and body["msg"], body
    return body


async def login(client: Any, email: str, password: str) -> Any:
    return await client.post("/api/login", json={"email": email, "password": password})


async def test_mailed_token_signs_up_once(mail_client: Any, mail_shop: Any, smtp: Any) -> None:
    resp = await mail_client.post("/api/verify-email", json={"email": "Lee@Example.com"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body == {"code": 1, "msg": body["msg"], "data": None}
    token = await smtp.wait_token("lee@example.com")
    assert len(token) == 36 and TOKEN_RE.fullmatch(token)
    [msg] = smtp.messages
    assert msg["X-Envelope-To"] == "lee@example.com"
    assert "sign-up" in msg["Subject"].lower()

    resp = await mail_client.post("/api/users", json=signup(token))
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["code"] == 1
    user_id = body["data"]["userId"]
    assert isinstance(user_id, int) and user_id > 0
    profile = await mail_shop.users.profile(user_id)
    assert (profile.email, profile.user_name, profile.role) == (
        "lee@example.com",
        "Lee Miri",
        "USER",
    )

    # The token works once: reusing it is refused, even for another email's sign-up data.
    resp = await mail_client.post("/api/users", json=signup(token, userName="Other"))
    body = await error_of(resp, 400)
    assert body["error"] == "VALIDATION_FAILED" and "emailVerificationToken" in body["data"]
    assert await count(mail_shop, "users") == 1

    resp = await login(mail_client, "lee@example.com", "abcdefghij1")
    assert resp.status == 200


async def test_token_expires_after_30_minutes(
    mail_client: Any, mail_shop: Any, smtp: Any, clock: Any
) -> None:
    for email in ("early@example.com", "late@example.com"):
        resp = await mail_client.post("/api/verify-email", json={"email": email})
        assert resp.status == 200
    early = await smtp.wait_token("early@example.com")
    late = await smtp.wait_token("late@example.com")

    clock.advance(minutes=29, seconds=59)
    resp = await mail_client.post("/api/users", json=signup(early))
    assert resp.status == 201, await resp.text()

    clock.advance(seconds=1)  # exactly 30 minutes: no longer valid
    resp = await mail_client.post("/api/users", json=signup(late))
    body = await error_of(resp, 400)
    assert body["error"] == "VALIDATION_FAILED" and "emailVerificationToken" in body["data"]
    assert await count(mail_shop, "users") == 1

    # A new mail gives a new token that works.
    resp = await mail_client.post("/api/verify-email", json={"email": "late@example.com"})
    assert resp.status == 200
    for _ in range(250):
        fresh = smtp.tokens_for("late@example.com")[-1]
        if fresh != late:
            break
        await asyncio.sleep(0.02)
    assert fresh != late
    resp = await mail_client.post("/api/users", json=signup(fresh))
    assert resp.status == 201, await resp.text()


async def test_unknown_token_refused(mail_client: Any, mail_shop: Any) -> None:
    resp = await mail_client.post("/api/users", json=signup("00000000-0000-4000-8000-000000000000"))
    body = await error_of(resp, 400)
    assert body["error"] == "VALIDATION_FAILED" and "emailVerificationToken" in body["data"]
    assert await count(mail_shop, "users") == 0


async def test_token_of_another_email_refused(mail_client: Any, mail_shop: Any, smtp: Any) -> None:
    for email in ("a@example.com", "b@example.com"):
        assert (await mail_client.post("/api/verify-email", json={"email": email})).status == 200
    token_a = await smtp.wait_token("a@example.com")
    await smtp.wait_token("b@example.com")

    # A's token with B's address: refused, nothing spent.
    resp = await mail_client.post("/api/users", json=signup(token_a, email="b@example.com"))
    body = await error_of(resp, 400)
    assert body["error"] == "VALIDATION_FAILED" and set(body["data"]) == {"email"}
    assert await count(mail_shop, "users") == 0

    # With the matching email (any case) it works, and the account is A's.
    resp = await mail_client.post("/api/users", json=signup(token_a, email="A@Example.COM"))
    assert resp.status == 201, await resp.text()
    user_id = (await resp.json())["data"]["userId"]
    assert (await mail_shop.users.profile(user_id)).email == "a@example.com"
    assert (await login(mail_client, "b@example.com", LEE["password"])).status == 401


async def test_email_taken(mail_client: Any, mail_shop: Any, smtp: Any) -> None:
    await add_user(mail_shop, "taken@example.com")
    resp = await mail_client.post("/api/verify-email", json={"email": "TAKEN@example.com"})
    body = await error_of(resp, 409)
    assert body["error"] == "EMAIL_TAKEN"
    assert smtp.messages == []
    assert await count(mail_shop, "email_verifications") == 0

    # A token mailed before the account existed no longer signs up.
    resp = await mail_client.post("/api/verify-email", json={"email": "late@example.com"})
    assert resp.status == 200
    token = await smtp.wait_token("late@example.com")
    await add_user(mail_shop, "late@example.com")
    resp = await mail_client.post("/api/users", json=signup(token))
    assert (await error_of(resp, 409))["error"] == "EMAIL_TAKEN"
    assert await count(mail_shop, "users") == 2


async def test_concurrent_signups_one_email(make_client: Any) -> None:
    shop, client = await make_client(rate_limits=False)
    email = "race@example.com"
    for _ in range(8):
        assert (await client.post("/api/verify-email", json={"email": email})).status == 200
    tokens = outbox_tokens(shop.settings, email)
    assert len(set(tokens)) == 8

    resps = await asyncio.gather(
        *(
            client.post("/api/users", json=signup(t, userName=f"Racer {chr(65 + i)}"))
            for i, t in enumerate(tokens)
        )
    )
    statuses = sorted(r.status for r in resps)
    assert statuses == [201] + [409] * 7, statuses
    for r in resps:
        if r.status == 409:
            assert (await r.json())["error"] == "EMAIL_TAKEN"
    assert await count(shop, "users") == 1
    # Only the winner's token was spent.
    spent = await shop.db.read(
        lambda c: c.execute(
            "SELECT COUNT(*) FROM email_verifications WHERE used_at IS NOT NULL"
        ).fetchone()[0]
    )
    assert spent == 1


async def test_concurrent_signups_one_token(make_client: Any) -> None:
    shop, client = await make_client()
    assert (await client.post("/api/verify-email", json={"email": "one@example.com"})).status == 200
    [token] = outbox_tokens(shop.settings, "one@example.com")
    resps = await asyncio.gather(
        *(
            client.post("/api/users", json=signup(token, userName="Twin " + "ab"[i % 2]))
            for i in range(6)
        )
    )
    statuses = sorted(r.status for r in resps)
    # One wins; a loser hears that the token is spent or, if it looked later, that the email is.
    assert statuses[0] == 201 and set(statuses[1:]) <= {400, 409}, statuses
    assert await count(shop, "users") == 1


async def test_smtp_down_is_503_and_changes_nothing(make_client: Any) -> None:
    shop, client = await make_client(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_timeout=2.0)
    # Enough attempts to open the breaker: the answer stays a 503 in the envelope.
    for _ in range(7):
        resp = await client.post("/api/verify-email", json={"email": "down@example.com"})
        body = await error_of(resp, 503)
        assert body["error"] == "UNAVAILABLE"
        assert resp.headers["X-Request-Id"]
    assert await count(shop, "email_verifications") == 0
    assert not (shop.settings.mail_dir / "outbox.log").exists()


async def test_console_mailer_writes_outbox(client: Any, shop: Any) -> None:
    resp = await client.post("/api/verify-email", json={"email": "console@example.com"})
    assert resp.status == 200
    text = (shop.settings.mail_dir / "outbox.log").read_text(encoding="utf-8")
    assert "To: console@example.com" in text
    [token] = outbox_tokens(shop.settings, "console@example.com")
    assert re.search(rf"\b{token}\b", text)
    resp = await client.post("/api/users", json=signup(token))
    assert resp.status == 201, await resp.text()
    # A second mail is appended, not written over the first.
    await client.post("/api/verify-email", json={"email": "second@example.com"})
    text = (shop.settings.mail_dir / "outbox.log").read_text(encoding="utf-8")
    assert "To: console@example.com" in text and "To: second@example.com" in text


# -- personal data at rest --------------------------------------------------------------------------
PII = {
    "email": "pii.person@example.com",
    "userName": "Zyxwvu Qponm",
    "phoneNumber": "010-9876-5432",
    "address": "서울특별시 강남구 테헤란로 427",
}


def _raw(shop: Any) -> bytes:
    db = shop.settings.db_path
    data = b""
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            data += path.read_bytes()
    return data


async def test_pii_absent_from_sqlite_bytes(client: Any, shop: Any) -> None:
    resp = await client.post("/api/verify-email", json={"email": PII["email"]})
    assert resp.status == 200
    [token] = outbox_tokens(shop.settings, PII["email"])
    body = {**signup(token), **{k: v for k, v in PII.items() if k != "email"}}
    resp = await client.post("/api/users", json=body)
    assert resp.status == 201, await resp.text()
    # The operator path and a profile change write personal data too.
    await shop.users.add_user(
        email="second.person@example.com",
        password="password123!",
        user_name="Abcdef Ghijk",
        phone_number="010-5555-6666",
        address="Jeju Seogwipo 77",
    )
    resp = await client.post(
        "/api/login", json={"email": PII["email"], "password": LEE["password"]}
    )
    token_jwt = (await resp.json())["data"]["accessToken"]
    resp = await client.patch(
        "/api/auth/users",
        json={"phoneNumber": "010-1357-2468", "address": "부산광역시 해운대구 99"},
        headers={"Authorization": f"Bearer {token_jwt}"},
    )
    assert resp.status == 200

    wal = shop.settings.db_path.with_name(shop.settings.db_path.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    raw = _raw(shop)
    # The rows are in these bytes (the password hash is stored as text) ...
    assert raw.count(b"$argon2id$") >= 2
    # ... but none of the personal data is, in any common encoding.
    secrets = [
        *PII.values(),
        "second.person@example.com",
        "Abcdef Ghijk",
        "010-5555-6666",
        "Jeju Seogwipo 77",
        "010-1357-2468",
        "부산광역시 해운대구 99",
        "pii.person",
        "example.com",
        token,  # the sign-up token is stored only as a hash
    ]
    for value in secrets:
        for encoded in (value.encode(), value.encode("utf-16-le"), value.upper().encode()):
            assert encoded not in raw, value


async def test_ciphertexts_of_equal_values_differ(shop: Any) -> None:
    ids = []
    for email in ("twin1@example.com", "twin2@example.com"):
        ids.append(
            await shop.users.add_user(
                email=email,
                password="password123!",
                user_name="Same Name",
                phone_number="010-1234-5678",
                address="Same Address 1",
            )
        )
    rows = await shop.db.read(
        lambda c: c.execute(
            "SELECT name_enc, phone_enc, address_enc FROM users ORDER BY id"
        ).fetchall()
    )
    for column in ("name_enc", "phone_enc", "address_enc"):
        assert rows[0][column] != rows[1][column], column
    profiles = [await shop.users.profile(i) for i in ids]
    assert profiles[0].address == profiles[1].address == "Same Address 1"

    cipher: FieldCipher = shop.cipher
    a, b = cipher.encrypt("same", "name"), cipher.encrypt("same", "name")
    assert a != b and cipher.decrypt(a, "name") == cipher.decrypt(b, "name") == "same"
    # The blind index is deterministic (that is what makes lookups work) but is not the value.
    assert cipher.blind_index("x@example.com") == cipher.blind_index("x@example.com")
    assert b"x@example.com" not in cipher.blind_index("x@example.com")
