"""Outgoing mail: SMTP through aiosmtplib, or the console mailer when no SMTP host is set."""

from __future__ import annotations

import asyncio
import logging
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


def _message(
    sender: str, to: str, subject: str, body: str, message_id: str | None = None
) -> EmailMessage:
    msg = EmailMessage()
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
