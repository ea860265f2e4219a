"""Outgoing mail: SMTP through aiosmtplib, or the console mailer when no SMTP host is set."""

from __future__ import annotations

import asyncio
import email.policy
import logging
import os
import re
from collections.abc import Sequence
from email import base64mime
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from functools import lru_cache
from typing import Protocol

import aiosmtplib

from miri.config import Settings
from miri.infra.breakers import Breakers

log = logging.getLogger(__name__)


class MailUnavailable(Exception):
    """The message could not be handed to the mail server."""


Mail = tuple[str, str, str, str | None]  # to, subject, body, Message-ID


class Mailer(Protocol):
    async def send(
        self, to: str, subject: str, body: str, *, message_id: str | None = None
    ) -> None: ...

    async def send_many(self, mails: Sequence[Mail]) -> list[BaseException | None]:
        """Each mail's failure, or None where it went out (a sale's confirmations at once)."""
        ...


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


# What the fast path writes as it is: a bare address and a Message-ID of plain characters (every
# other value goes through the standard parser), on a line the standard folding leaves alone.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
_PLAIN_MESSAGE_ID = re.compile(r"<[A-Za-z0-9._:-]+@[A-Za-z0-9.-]+>")
_MAX_LINE = _POLICY.max_line_length  # 78


@lru_cache(maxsize=1024)
def _folded(name: str, value: str) -> str:
    """One header as the standard policy writes it (senders and subjects repeat: kept)."""
    return _POLICY.header_store_parse(name, value)[1].fold(policy=_POLICY)


def _plain(name: str, value: str, pattern: re.Pattern[str]) -> str:
    if len(name) + 2 + len(value) <= _MAX_LINE and pattern.fullmatch(value):
        return f"{name}: {value}\n"
    return _POLICY.header_store_parse(name, value)[1].fold(policy=_POLICY)


def compose(sender: str, to: str, subject: str, body: str, message_id: str | None = None) -> str:
    """The mail as text, exactly what ``_message(...).as_string()`` writes, at a fraction of the
    cost: a paid order's confirmation was the largest part of its CPU (issue 13). The standard
    package is still the one that writes every header that is not plain, and any body with a
    line too long for the simple encodings; a unit test holds the two equal."""
    raw = body.encode("utf-8")
    lines = raw.splitlines()
    if any(len(line) > _MAX_LINE for line in lines):
        return _message(sender, to, subject, body, message_id).as_string()
    payload = b"\n".join(lines) + b"\n"
    if payload.isascii():
        encoding, text = "7bit", payload.decode("ascii")
    else:
        encoding, text = "base64", base64mime.body_encode(payload, eol="\n")
    parts = [
        _folded("From", sender),
        _plain("To", to, _PLAIN_ADDRESS),
        _folded("Subject", subject),
    ]
    if message_id:
        parts.append(_plain("Message-ID", message_id, _PLAIN_MESSAGE_ID))
    parts.append(
        'Content-Type: text/plain; charset="utf-8"\n'
        f"Content-Transfer-Encoding: {encoding}\nMIME-Version: 1.0\n\n"
    )
    parts.append(text)
    return "".join(parts)


# Mails in flight to the SMTP server at once: the bus hands the mail consumer a sale's
# confirmations by the hundred, and a server takes a handful of connections per client.
SMTP_CONNECTIONS = 8


class SmtpMailer:
    def __init__(self, settings: Settings, breakers: Breakers) -> None:
        self._settings = settings
        self._breakers = breakers
        self._connections = asyncio.Semaphore(SMTP_CONNECTIONS)

    async def send(
        self, to: str, subject: str, body: str, *, message_id: str | None = None
    ) -> None:
        s = self._settings
        # Plain 7-bit text (base64 bodies, encoded words in headers): any server takes it.
        msg = compose(s.mail_from, to, subject, body, message_id)
        async with self._connections, self._breakers.guard("smtp"):
            try:
                await aiosmtplib.send(
                    msg,
                    sender=_sender_address(s.mail_from),
                    recipients=[to],
                    hostname=s.smtp_host,
                    port=s.smtp_port,
                    username=s.smtp_user,
                    password=s.smtp_password,
                    start_tls=s.smtp_starttls,
                    timeout=s.smtp_timeout,
                )
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                raise MailUnavailable(str(exc)) from exc

    async def send_many(self, mails: Sequence[Mail]) -> list[BaseException | None]:
        results = await asyncio.gather(
            *(self.send(to, subject, body, message_id=mid) for to, subject, body, mid in mails),
            return_exceptions=True,
        )
        return [r if isinstance(r, BaseException) else None for r in results]


@lru_cache(maxsize=16)
def _sender_address(mail_from: str) -> str:
    """The bare address of ``MIRI_MAIL_FROM`` (``Miri <no-reply@...>``) for SMTP's MAIL FROM."""
    return _POLICY.header_factory("From", mail_from).addresses[0].addr_spec


class ConsoleMailer:
    """Logs each message and appends it to ``mail/outbox.log`` in the data dir.

    Mails that arrive while a write is on its way go out together in the next one: one thread
    hop and one ``write`` per batch instead of an open file per mail (a sale's confirmations
    arrive by the thousand). ``send`` returns once its own mail is in the file.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.path = settings.mail_dir / "outbox.log"
        self._texts: list[str] = []
        self._written: asyncio.Future[None] | None = None  # the future of the batch filling up
        self._writing: asyncio.Task[None] | None = None

    async def send(
        self, to: str, subject: str, body: str, *, message_id: str | None = None
    ) -> None:
        [error] = await self.send_many([(to, subject, body, message_id)])
        if error is not None:
            raise error

    async def send_many(self, mails: Sequence[Mail]) -> list[BaseException | None]:
        mail_from = self._settings.mail_from
        texts = []
        for to, subject, body, message_id in mails:
            texts.append(compose(mail_from, to, subject, body, message_id))
            log.info("mail to %s: %s", to, subject)
        if self._written is None:
            self._written = asyncio.get_running_loop().create_future()
        written = self._written
        self._texts += texts
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_batches())
        try:
            await asyncio.shield(written)
        except Exception as exc:  # noqa: BLE001 - the file refused the lot
            return [exc] * len(mails)
        return [None] * len(mails)

    async def _write_batches(self) -> None:
        try:
            while self._texts:
                texts, written = self._texts, self._written
                self._texts, self._written = [], None
                assert written is not None
                try:
                    await asyncio.to_thread(self._append, "".join(t + "\n" for t in texts))
                except Exception as exc:  # noqa: BLE001 - handed to every sender of the batch
                    written.set_exception(exc)
                    written.exception()  # retrieved: a sender that was cancelled still sees it
                else:
                    written.set_result(None)
        finally:
            self._writing = None

    def _append(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One write on an O_APPEND descriptor: workers sharing the data dir never interleave.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            data = text.encode("utf-8")
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)


def make_mailer(settings: Settings, breakers: Breakers) -> Mailer:
    return SmtpMailer(settings, breakers) if settings.smtp_host else ConsoleMailer(settings)
