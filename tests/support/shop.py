"""Accounts, settings and mail helpers shared by the tests."""

from __future__ import annotations

import asyncio
import re
from email import message_from_bytes
from pathlib import Path
from typing import Any

from miri.config import Settings, load_settings
from miri.infra.crypto import new_key
from miri.infra.processes import free_port as free_port  # re-exported for the tests
from miri.shop import Shop

# Cheap hashing in tests only: the production default stays at OWASP's argon2id minimum.
CHEAP_HASH = {"argon2_memory_kib": 1024, "argon2_time_cost": 1}
TOKEN_RE = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


# One pair of keys for every shop of a test run on PostgreSQL: hosts of a shared database must
# share keys (the shop refuses to make its own), as an operator's hosts would.
SHARED_KEYS = {
    "jwt_secret": new_key(),
    "data_key": new_key(),
    "payment_webhook_secret": new_key(),
}


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    # Most tests follow the simulated buyer's walk; the payment tests choose "checkout".
    values = {
        **CHEAP_HASH,
        "stock_sync_interval": 3600.0,
        "payment_provider": "simulated",
        "payment_abandon_rate": 0.0,
    }
    if overrides.get("database_url"):
        values.update(SHARED_KEYS)
    values.update(overrides)
    return load_settings(data_dir=data_dir, env={}, **values)


class Inbox:
    """Messages received by the loopback SMTP server."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.refuse_once: set[str] = set()  # recipients refused (550) the next time only

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse_once:
            self.refuse_once.discard(address)
            return "550 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

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
