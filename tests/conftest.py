"""Shared fixtures: a real SQLite file and a real embedded Redis per test, a real SMTP server."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from miri.config import Settings, load_settings
from miri.infra.clock import FixedClock
from miri.server.app import create_app
from miri.shop import Shop, open_shop

# Cheap hashing in tests only: the production default stays at OWASP's argon2id minimum.
CHEAP_HASH = {"argon2_memory_kib": 1024, "argon2_time_cost": 1}
TOKEN_RE = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values = {**CHEAP_HASH, "stock_sync_interval": 3600.0, "payment_abandon_rate": 0.0}
    values.update(overrides)
    return load_settings(data_dir=data_dir, env={}, **values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(data_dir)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 23, 1, 0, tzinfo=UTC))


class Inbox:
    """Messages received by the loopback SMTP server."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content)
        msg["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        self.messages.append(msg)
        return "250 OK"

    def tokens_for(self, email: str) -> list[str]:
        found = []
        for msg in self.messages:
            if email in msg["To"]:
                body = msg.get_payload(decode=True).decode()
                found += TOKEN_RE.findall(body)
        return found

    async def wait_token(self, email: str, timeout: float = 5.0) -> str:
        for _ in range(int(timeout * 50)):
            tokens = self.tokens_for(email)
            if tokens:
                return tokens[-1]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no mail for {email}")


@pytest.fixture
def smtp() -> Any:
    inbox = Inbox()
    inbox.port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture
async def shop(settings: Settings, clock: FixedClock) -> AsyncIterator[Shop]:
    async with open_shop(settings, clock=clock) as s:
        yield s


@pytest.fixture
async def mail_shop(data_dir: Path, clock: FixedClock, smtp: Any) -> AsyncIterator[Shop]:
    """A shop that sends mail to the loopback SMTP server."""
    settings = make_settings(data_dir, smtp_host="127.0.0.1", smtp_port=smtp.port)
    async with open_shop(settings, clock=clock) as s:
        yield s


@pytest.fixture
async def client(aiohttp_client: Any, shop: Shop) -> Any:
    return await aiohttp_client(create_app(shop))


@pytest.fixture
async def mail_client(aiohttp_client: Any, mail_shop: Shop) -> Any:
    return await aiohttp_client(create_app(mail_shop))


async def add_user(
    shop: Shop, email: str = "buyer@example.com", *, admin: bool = False
) -> tuple[int, str]:
    """An account made through the operator path, and a token for it."""
    user_id = await shop.users.add_user(
        email=email,
        password="password123!",
        user_name="Kim Miri",
        phone_number="010-1234-5678",
        address="Seoul Gangnam 1",
        role="ADMIN" if admin else "USER",
    )
    return user_id, shop.users.issue_token(user_id, "ADMIN" if admin else "USER")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- added for the accounts tests ------------------------------------------------------------------
@pytest.fixture
async def make_client(aiohttp_client: Any, data_dir: Path, clock: FixedClock) -> Any:
    """``await make_client(**settings_overrides)`` -> (shop, client) on the test's data dir."""
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:

        async def factory(**overrides: Any) -> tuple[Shop, Any]:
            settings = make_settings(data_dir, **overrides)
            opened = await stack.enter_async_context(open_shop(settings, clock=clock))
            return opened, await aiohttp_client(create_app(opened))

        yield factory


def outbox_tokens(settings: Settings, email: str) -> list[str]:
    """Sign-up tokens the console mailer wrote to ``mail/outbox.log`` for ``email``, oldest first."""
    path = settings.mail_dir / "outbox.log"
    if not path.exists():
        return []
    found = []
    for message in path.read_text(encoding="utf-8").split("\nFrom: "):
        if f"To: {email}\n" in message:
            found += TOKEN_RE.findall(message)
    return found
