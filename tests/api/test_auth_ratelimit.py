"""Rate limits: verify-email per email and per client, login failures per email and client and
per client across emails, client addresses behind trusted proxies; all limits can be off."""

from __future__ import annotations

import asyncio
from typing import Any

from miri.config import load_settings
from tests.support.shop import add_user, outbox_tokens


async def verify(client: Any, email: str) -> Any:
    return await client.post("/api/verify-email", json={"email": email})


async def login(client: Any, email: str, password: str, via: str | None = None) -> Any:
    """``via``: the X-Forwarded-For a proxy would add (believed only from a trusted peer)."""
    headers = {"X-Forwarded-For": via} if via else None
    return await client.post(
        "/api/login", json={"email": email, "password": password}, headers=headers
    )


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


async def test_guesses_from_one_address_do_not_lock_out_the_buyer(make_client: Any) -> None:
    # The test client's peer is 127.0.0.1; listing it makes it the shop's reverse proxy.
    shop, client = await make_client(login_failures_per_email=3, trusted_proxies="127.0.0.1/32")
    await add_user(shop, "kim@example.com")
    attacker, buyer = "203.0.113.9", "198.51.100.7"
    for _ in range(3):
        assert (await login(client, "kim@example.com", "wrong-password1", attacker)).status == 401
    await assert_429(await login(client, "kim@example.com", "password123!", attacker), 900)
    # The buyer, from their own address, logs in as usual.
    assert (await login(client, "kim@example.com", "password123!", buyer)).status == 200
    # And their own typo counts for their address only.
    assert (await login(client, "kim@example.com", "wrong-password1", buyer)).status == 401
    assert (await login(client, "kim@example.com", "password123!", buyer)).status == 200


async def test_credential_stuffing_is_limited_per_client(make_client: Any) -> None:
    shop, client = await make_client(
        login_failures_per_email=3, login_failures_per_client=4, trusted_proxies="127.0.0.0/8"
    )
    await add_user(shop, "kim@example.com")
    stuffer = "203.0.113.9"
    for i in range(4):
        resp = await login(client, f"victim{i}@example.com", "leaked-password1", stuffer)
        assert resp.status == 401
    # A fifth email from the same address: refused before any password is tried.
    await assert_429(await login(client, "kim@example.com", "password123!", stuffer), 900)
    # Another address is untouched, and successes never count against an address.
    for _ in range(6):
        assert (
            await login(client, "kim@example.com", "password123!", "198.51.100.7")
        ).status == 200


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(make_client: Any) -> None:
    # No trusted proxies: a client cannot pick a fresh address per guess with the header.
    shop, client = await make_client(login_failures_per_email=3)
    await add_user(shop, "kim@example.com")
    for i in range(3):
        resp = await login(client, "kim@example.com", "wrong-password1", f"203.0.113.{i}")
        assert resp.status == 401
    await assert_429(await login(client, "kim@example.com", "password123!", "203.0.113.77"), 900)


async def test_forwarded_for_from_a_peer_outside_the_trusted_list(make_client: Any) -> None:
    shop, client = await make_client(verify_email_per_client=2, trusted_proxies="10.0.0.0/8")
    for i in range(2):
        resp = await client.post(
            "/api/verify-email",
            json={"email": f"u{i}@example.com"},
            headers={"X-Forwarded-For": f"198.51.100.{i}"},
        )
        assert resp.status == 200
    resp = await client.post(
        "/api/verify-email",
        json={"email": "u9@example.com"},
        headers={"X-Forwarded-For": "198.51.100.50"},
    )
    await assert_429(resp, 600)


async def test_verify_email_counts_the_forwarded_client(make_client: Any) -> None:
    shop, client = await make_client(verify_email_per_client=2, trusted_proxies="127.0.0.1")

    async def from_(address: str, email: str) -> Any:
        return await client.post(
            "/api/verify-email", json={"email": email}, headers={"X-Forwarded-For": address}
        )

    # Behind the proxy, each client has its own allowance instead of the whole shop sharing one.
    for i in range(2):
        assert (await from_("198.51.100.1", f"a{i}@example.com")).status == 200
        assert (await from_("198.51.100.2", f"b{i}@example.com")).status == 200
    await assert_429(await from_("198.51.100.1", "a9@example.com"), 600)
    # A spoofed left part does not help: the proxy's own (rightmost) entry is the client.
    await assert_429(await from_("1.2.3.4, 198.51.100.1", "a8@example.com"), 600)


def test_client_address_rules() -> None:
    from miri.infra.proxies import client_address, parse_networks

    proxies = parse_networks("10.0.0.0/8, 127.0.0.1, ::1")
    assert client_address("8.8.8.8", "1.1.1.1", proxies) == "8.8.8.8"  # untrusted peer
    assert client_address("10.1.2.3", "1.1.1.1", proxies) == "1.1.1.1"
    assert client_address("10.1.2.3", "6.6.6.6, 1.1.1.1", proxies) == "1.1.1.1"
    assert client_address("10.1.2.3", "1.1.1.1, 10.9.9.9", proxies) == "1.1.1.1"  # two proxies
    assert client_address("10.1.2.3", "garbage", proxies) == "10.1.2.3"
    assert client_address("10.1.2.3", None, proxies) == "10.1.2.3"
    assert client_address("::1", "2001:db8::5", proxies) == "2001:db8::5"
    assert client_address("10.1.2.3", "[2001:db8::5]:443", proxies) == "2001:db8::5"
    assert client_address("10.1.2.3", "1.1.1.1", ()) == "10.1.2.3"


def test_trusted_proxies_setting(tmp_path: Any) -> None:
    import pytest

    from miri.config import SettingsError

    env = {"MIRI_TRUSTED_PROXIES": "10.0.0.0/8,192.168.1.1"}
    assert load_settings(data_dir=tmp_path, env=env).trusted_proxies == "10.0.0.0/8,192.168.1.1"
    with pytest.raises(SettingsError, match="trusted_proxies"):
        load_settings(data_dir=tmp_path, env={"MIRI_TRUSTED_PROXIES": "10.0.0.0/33"})
