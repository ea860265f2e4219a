from tests.support.shop import add_user, bearer


async def test_health_and_profile(client, shop):
    resp = await client.get("/api/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["data"]["redis"] == "ok" and resp.headers["X-Request-Id"]
    _, token = await add_user(shop)
    resp = await client.get("/api/auth/users", headers=bearer(token))
    assert (await resp.json())["data"]["email"] == "buyer@example.com"


async def test_signup_through_real_smtp(mail_client, smtp):
    resp = await mail_client.post("/api/verify-email", json={"email": "lee@example.com"})
    assert resp.status == 200, await resp.text()
    token = await smtp.wait_token("lee@example.com")
    resp = await mail_client.post(
        "/api/users",
        json={
            "emailVerificationToken": token,
            "userName": "Lee",
            "password": "abcdefghij1",
            "phoneNumber": "010-1111-2222",
            "address": "Busan 2",
        },
    )
    assert resp.status == 201, await resp.text()
