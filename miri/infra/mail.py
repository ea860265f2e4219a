"""Outgoing mail: SMTP through aiosmtplib, or the console mailer when no SMTP host is set."""

from __future__ import annotations

import asyncio
import email.policy
import logging
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

from miri.config import Settings
from miri.infra.breakers import Breakers

log = logging.getLogger(__name__)


class MailUnavailable(Exception):
    """The message could not be handed to the mail server."""


class Mailer(Protocol):
    async def send(
        self, to: str, subject: str, body: str, *, message_id: str | None = None
    ) -> None: ...


class _Headers(HeaderRegistry):
    """The standard headers, with each header class made once and each parsed header kept.

    The standard registry makes a new class for every header of every message (garbage that
    only a full collection frees) and parses every value again; a paid order's mail spent more
    CPU on its headers than the order itself (issue 13). Most headers repeat (From, the content
    headers, the subjects); a parsed header is an immutable string, safe to share.
    """

    KEEP = 1024

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}
        self._parsed: dict[tuple[str, str], BaseHeader] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made

    def __call__(self, name: str, value: str) -> BaseHeader:
        if type(value) is not str:  # already a header, or an address object: as the registry does
            return super().__call__(name, value)
        key = (name, value)
        header = self._parsed.get(key)
        if header is None:
            if len(self._parsed) >= self.KEEP:
                self._parsed.clear()
            header = self._parsed[key] = super().__call__(name, value)
        return header


# email.policy.default (what EmailMessage() uses) with the header classes made once.
_POLICY = email.policy.default.clone(header_factory=_Headers())


def _message(
    sender: str, to: str, subject: str, body: str, message_id: str | None = None
) -> EmailMessage:
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    if message_id:  # one id per event: a mail client shows a resent copy once
        msg["Message-ID"] = message_id
    msg.set_content(body)
    return msg


class SmtpMailer:
    def __init__(self, settings: Settings, breakers: Breakers) -> None:
        self._settings = settings
        self._breakers = breakers

    async def send(
        self, to: str, subject: str, body: str, *, message_id: str | None = None
    ) -> None:
        s = self._settings
        msg = _message(s.mail_from, to, subject, body, message_id)
        async with self._breakers.guard("smtp"):
            try:
                await aiosmtplib.send(
                    msg,
                    hostname=s.smtp_host,
                    port=s.smtp_port,
                    username=s.smtp_user,
                    password=s.smtp_password,
                    start_tls=s.smtp_starttls,
                    timeout=s.smtp_timeout,
                )
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                raise MailUnavailable(str(exc)) from exc


class ConsoleMailer:
    """Logs each message and appends it to ``mail/outbox.log`` in the data dir."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.path = settings.mail_dir / "outbox.log"

    async def send(
        self, to: str, subject: str, body: str, *, message_id: str | None = None
    ) -> None:
        msg = _message(self._settings.mail_from, to, subject, body, message_id)
        log.info("mail to %s: %s", to, subject)
        await asyncio.to_thread(self._append, msg.as_string())

    def _append(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(text + "\n")


def make_mailer(settings: Settings, breakers: Breakers) -> Mailer:
    return SmtpMailer(settings, breakers) if settings.smtp_host else ConsoleMailer(settings)
