"""Rate limits: verify-email per email and per client, login failures per email; all can be off."""

from __future__ import annotations

import asyncio
from typing import Any

from miri.config import load_settings
from tests.support.shop import add_user, outbox_tokens


async def verify(client: Any, email: str) -> Any:
    return await client.post("/api/verify-email", json={"email": email})


async def login(client: Any, email: str, password: str) -> Any:
    return await client.post("/api/login", json={"email": email, "password": password})


async def assert_429(resp: Any, window: int) -> None:
    assert resp.status == 429, await resp.text()
    body = await resp.json()
    assert body["code"] == -1 and body["error"] == "RATE_LIMITED" and body["msg"]
    assert 1 <= int(resp.headers["Retry-After"]) <= window


async def test_verify_email_per_email(make_client: Any) -> None:
    shop, client = await make_client(verify_email_per_email=2, verify_email_window=300)
    for _ in range(2):
        assert (await verify(client, "spam@example.com")).status == 200
    await assert_429(await verify(client, "spam@example.com"), 300)
    await assert_429(await verify(client, "SPAM@example.com"), 300)  # same address, other case
    assert len(outbox_tokens(shop.settings, "spam@example.com")) == 2
    assert (await verify(client, "other@example.com")).status == 200


async def test_verify_email_per_client(make_client: Any) -> None:
    shop, client = await make_client(verify_email_per_client=3, verify_email_window=300)
    for i in range(3):
        assert (await verify(client, f"user{i}@example.com")).status == 200
    await assert_429(await verify(client, "user9@example.com"), 300)
    assert outbox_tokens(shop.settings, "user9@example.com") == []


async def test_login_failures_per_email(make_client: Any) -> None:
    shop, client = await make_client(login_failures_per_email=3, login_failure_window=900)
    await add_user(shop, "kim@example.com")
    await add_user(shop, "lee@example.com")
    for _ in range(3):
        assert (await login(client, "kim@example.com", "wrong-password1")).status == 401
    # Now even the right password waits; the Retry-After says how long.
    await assert_429(await login(client, "kim@example.com", "password123!"), 900)
    await assert_429(await login(client, "KIM@example.com", "wrong-password1"), 900)
    # Another account is not affected.
    assert (await login(client, "lee@example.com", "password123!")).status == 200
    # Unknown emails are limited the same way (no hint that they do not exist).
    for _ in range(3):
        assert (await login(client, "ghost@example.com", "wrong-password1")).status == 401
    await assert_429(await login(client, "ghost@example.com", "wrong-password1"), 900)


async def test_successful_login_does_not_count(make_client: Any) -> None:
    shop, client = await make_client(login_failures_per_email=2)
    await add_user(shop, "kim@example.com")
    for _ in range(5):
        assert (await login(client, "kim@example.com", "password123!")).status == 200
    assert (await login(client, "kim@example.com", "wrong-password1")).status == 401
    assert (await login(client, "kim@example.com", "password123!")).status == 200


async def test_concurrent_guesses_cannot_pass_the_limit(make_client: Any) -> None:
    shop, client = await make_client(login_failures_per_email=3)
    await add_user(shop, "kim@example.com")
    resps = await asyncio.gather(
        *(login(client, "kim@example.com", f"guess-number{i}") for i in range(20))
    )
    statuses = [r.status for r in resps]
    assert statuses.count(401) <= 3, statuses
    assert statuses.count(429) >= 17, statuses


async def test_all_limits_off(make_client: Any) -> None:
    shop, client = await make_client(
        rate_limits=False,
        verify_email_per_email=1,
        verify_email_per_client=1,
        login_failures_per_email=1,
    )
    await add_user(shop, "kim@example.com")
    for _ in range(4):
        assert (await verify(client, "many@example.com")).status == 200
    assert len(outbox_tokens(shop.settings, "many@example.com")) == 4
    for _ in range(4):
        assert (await login(client, "kim@example.com", "wrong-password1")).status == 401
    assert (await login(client, "kim@example.com", "password123!")).status == 200


def test_rate_limits_off_from_environment(tmp_path: Any) -> None:
    assert load_settings(data_dir=tmp_path, env={}).rate_limits is True
    for off in ("off", "OFF", "false", "0", "no"):
        assert load_settings(data_dir=tmp_path, env={"MIRI_RATE_LIMITS": off}).rate_limits is False
    env = {"MIRI_LOGIN_FAILURES_PER_EMAIL": "7", "MIRI_VERIFY_EMAIL_PER_CLIENT": "9"}
    settings = load_settings(data_dir=tmp_path, env=env)
    assert (settings.login_failures_per_email, settings.verify_email_per_client) == (7, 9)
