"""Accounts: email verification, sign-up, login and logout, profile, password change and reset."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from miri.config import Settings
from miri.domain.errors import (
    EmailTaken,
    NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable,
    ValidationFailed,
)
from miri.domain.events import PasswordResetRequested
from miri.domain.paging import Page
from miri.domain.users import rules, store
from miri.infra import keys
from miri.infra.breakers import CircuitOpen
from miri.infra.bus import Bus
from miri.infra.clock import Clock
from miri.infra.crypto import FieldCipher, sha256_hex
from miri.infra.database import Database
from miri.infra.mail import Mailer, MailUnavailable
from miri.infra.passwords import PasswordHasher
from miri.infra.ratelimit import RateLimiter
from miri.infra.redis import BatchedGet
from miri.infra.tokens import Claims, InvalidToken, TokenService

VERIFICATION_TTL = 30 * 60
RESET_TTL = 30 * 60
RESET_CONTEXT = "password-reset"  # the mail consumer decrypts the token with the same context
ROLES = ("USER", "ADMIN")


@dataclass(frozen=True)
class Profile:
    user_id: int
    email: str
    user_name: str
    phone_number: str
    address: str
    role: str
    created_at: float


@dataclass(frozen=True)
class Login:
    access_token: str
    expires_in: int
    claims: Claims


def _deny_key(jti: str) -> str:
    return keys.token_denied(jti)


def _valid_after_key(user_id: int) -> str:
    return keys.tokens_valid_after(user_id)


class UserService:
    def __init__(
        self,
        *,
        db: Database,
        redis: aioredis.Redis,
        cipher: FieldCipher,
        hasher: PasswordHasher,
        tokens: TokenService,
        mailer: Mailer,
        bus: Bus,
        limiter: RateLimiter,
        clock: Clock,
        settings: Settings,
    ) -> None:
        self._db = db
        self._redis = redis
        self._get = BatchedGet(redis)
        self._cipher = cipher
        self._hasher = hasher
        self.tokens = tokens
        self._mailer = mailer
        self._bus = bus
        self._limiter = limiter
        self._clock = clock
        self._settings = settings

    # -- sign-up ------------------------------------------------------------------------------
    async def request_verification(self, email: str, client: str) -> None:
        """Mail a one-time sign-up token for ``email``; refuses emails that have an account."""
        email = rules.email(email)
        index = self._cipher.blind_index(email)
        s = self._settings
        counted: list[str] = []
        for key, limit in (
            (f"verify:email:{index.hex()}", s.verify_email_per_email),
            (f"verify:client:{client}", s.verify_email_per_client),
        ):
            wait = await self._limiter.hit(key, limit, s.verify_email_window)
            if wait is not None:
                raise RateLimited(wait, "too many verification mails; try again later")
            counted.append(key)
        if await self._user_id_by_index(index) is not None:
            raise EmailTaken()
        token = str(uuid.uuid4())
        now = self._clock.timestamp()
        try:
            await self._mailer.send(
                email,
                "Your Miri sign-up code",
                f"Your Miri sign-up code is:\n\n    {token}\n\nIt works once, for 30 minutes.\n",
            )
        except (MailUnavailable, CircuitOpen) as exc:
            # No mail went out, so it does not count against the limits either.
            for key in counted:
                await self._limiter.undo(key)
            raise Unavailable("the mail server is unavailable; try again later") from exc
        email_enc = self._cipher.encrypt(email, "email")
        expires = now + VERIFICATION_TTL
        await self._db.write(
            lambda c: store.add_verification(c, sha256_hex(token), index, email_enc, expires, now)
        )

    async def sign_up(
        self,
        *,
        token: str,
        user_name: str,
        password: str,
        phone_number: str,
        address: str,
        email: str | None = None,
    ) -> int:
        """Create an account with a mailed token; the token is spent only if the account is made."""
        token_hash = sha256_hex(token.strip())
        now = self._clock.timestamp()
        row = await self._db.read(lambda c: store.verification(c, token_hash))
        if row is None or row["used_at"] is not None or row["expires_at"] <= now:
            raise ValidationFailed(
                "the verification token is invalid, used or expired",
                {"emailVerificationToken": "invalid, already used or expired"},
            )
        verified = self._cipher.decrypt(row["email_enc"], "email")
        if email is not None and rules.email(email) != verified:
            raise ValidationFailed(
                "the email does not match the verified one",
                {"email": "must be the address the token was mailed to"},
            )
        index = row["email_index"]
        if await self._user_id_by_index(index) is not None:
            raise EmailTaken()
        hashed = await self._hasher.hash(password)
        return await self._db.write(
            lambda c: self._insert_user(
                c,
                index,
                verified,
                user_name,
                phone_number,
                address,
                hashed,
                "USER",
                now,
                spend_token=token_hash,
            )
        )

    async def add_user(
        self,
        *,
        email: str,
        password: str,
        user_name: str,
        phone_number: str,
        address: str,
        role: str = "USER",
    ) -> int:
        """Operator path (CLI, benchmarks): no mail, same rules, same encryption."""
        errors: dict[str, str] = {}
        values: dict[str, str] = {}
        for field, rule, value in (
            ("email", rules.email, email),
            ("password", rules.password, password),
            ("userName", rules.user_name, user_name),
            ("phoneNumber", rules.phone_number, phone_number),
            ("address", rules.address, address),
        ):
            try:
                values[field] = rule(value)
            except ValueError as exc:
                errors[field] = str(exc)
        if role not in ROLES:
            errors["role"] = "role must be USER or ADMIN"
        if errors:
            raise ValidationFailed(data=errors)
        index = self._cipher.blind_index(values["email"])
        hashed = await self._hasher.hash(password)
        now = self._clock.timestamp()
        return await self._db.write(
            lambda c: self._insert_user(
                c, index, values["email"], user_name, phone_number, address, hashed, role, now
            )
        )

    async def add_bench_users(
        self, count: int, prefix: str, role: str = "USER", batch: int = 500
    ) -> list[tuple[int, str]]:
        """Benchmark buyers: ``(user_id, access token)`` for ``count`` new accounts, fast.

        No argon2 per account (one shared hash of a random password nobody knows), so 5,000
        buyers take seconds; personal data is still encrypted. Emails are
        ``bench-<prefix>-<n>@bench.miri``.
        """
        if role not in ROLES:
            raise ValidationFailed(data={"role": "role must be USER or ADMIN"})
        shared_hash = await self._hasher.hash(uuid.uuid4().hex + "Aa1!")
        now = self._clock.timestamp()
        made: list[int] = []
        for start in range(0, count, batch):
            rows = [
                (f"bench-{prefix}-{n}@bench.miri", "Bench Buyer", "010-0000-0000", "Seoul 1")
                for n in range(start, min(start + batch, count))
            ]

            def insert(conn: Any, rows: list[tuple[str, ...]] = rows) -> list[int]:
                index = self._cipher.blind_index
                return [
                    self._insert_user(conn, index(e), e, nm, ph, ad, shared_hash, role, now)
                    for e, nm, ph, ad in rows
                ]

            made += await self._db.write(insert)
        return [(uid, self.tokens.issue(uid, role)[0]) for uid in made]

    def _insert_user(
        self,
        conn: Any,
        index: bytes,
        email: str,
        user_name: str,
        phone_number: str,
        address: str,
        password_hash: str,
        role: str,
        now: float,
        spend_token: str | None = None,
    ) -> int:
        if spend_token is not None:
            store.spend_verification(conn, spend_token, now)
        enc = self._cipher.encrypt
        return store.add_user(
            conn,
            email_index=index,
            email_enc=enc(email, "email"),
            name_enc=enc(user_name, "name"),
            phone_enc=enc(phone_number, "phone"),
            address_enc=enc(address, "address"),
            password_hash=password_hash,
            role=role,
            now=now,
        )

    # -- sign-in ------------------------------------------------------------------------------
    async def login(self, email: str, password: str, client: str = "unknown") -> Login:
        """Same answer for an unknown email and a wrong password, in about the same time.

        Failures count per email *and* client address (a guesser cannot lock the buyer out of
        their own address) and per client address across emails (credential stuffing).
        """
        try:
            email = rules.email(email)
        except ValueError:
            email = email.strip().lower()
        index = self._cipher.blind_index(email)
        s = self._settings
        per_email = f"login:{index.hex()}:{client}"
        per_client = f"login-client:{client}"
        # Count the attempt before checking the password (an atomic INCR), so concurrent guesses
        # cannot all pass a check-then-count; a success takes its counts back below.
        counted: list[str] = []
        for key, limit in (
            (per_email, s.login_failures_per_email),
            (per_client, s.login_failures_per_client),
        ):
            wait = await self._limiter.hit(key, limit, s.login_failure_window)
            if wait is not None:
                for done in counted:  # refused before the password was tried: not a guess
                    await self._limiter.undo(done)
                raise RateLimited(wait, "too many failed logins; try again later")
            counted.append(key)
        row = await self._db.read(lambda c: store.credentials(c, index))
        ok = await self._hasher.verify(password, row["password_hash"] if row else None)
        if row is None or not ok:
            raise Unauthenticated("wrong email or password")
        await self._limiter.reset(per_email)
        await self._limiter.undo(per_client)
        token, claims = self.tokens.issue(row["id"], row["role"])
        return Login(token, self.tokens.ttl, claims)

    async def authenticate(self, token: str) -> Claims:
        """Signature, expiry, logout and password-change checks in one Redis round trip."""
        try:
            claims = self.tokens.decode(token)
        except InvalidToken as exc:
            # Only our own words: library messages (codec errors, parser details) stay in here.
            raise Unauthenticated(exc.public) from None
        denied, valid_after = await self._get(
            _deny_key(claims.jti), _valid_after_key(claims.user_id)
        )
        if denied is not None:
            raise Unauthenticated("this token has been logged out")
        if valid_after is not None and claims.issued_at < float(valid_after):
            raise Unauthenticated("this token was issued before a password change")
        return claims

    async def logout(self, claims: Claims) -> None:
        ttl = max(int(claims.expires_at - self._clock.timestamp()) + 1, 1)
        await self._redis.set(_deny_key(claims.jti), "1", ex=ttl)

    def issue_token(self, user_id: int, role: str) -> str:
        return self.tokens.issue(user_id, role)[0]

    # -- profile ------------------------------------------------------------------------------
    async def profile(self, user_id: int) -> Profile:
        row = await self._db.read(lambda c: store.user(c, user_id))
        if row is None:
            raise NotFound("no such user")
        return self._profile(row)

    async def emails(self, user_ids: Collection[int]) -> dict[int, str]:
        """The address of each of these users that still has an account (one read for all)."""
        ids = list(user_ids)
        rows = await self._db.read(lambda c: store.emails(c, ids))
        return {row[0]: self._cipher.decrypt(row[1], "email") for row in rows}

    async def update_profile(
        self, user_id: int, phone_number: str | None = None, address: str | None = None
    ) -> Profile:
        enc = self._cipher.encrypt
        now = self._clock.timestamp()
        phone_enc = (
            enc(rules.phone_number(phone_number), "phone") if phone_number is not None else None
        )
        address_enc = enc(rules.address(address), "address") if address is not None else None

        def update(conn: Any) -> None:
            if not store.update_contact(conn, user_id, now, phone_enc, address_enc):
                raise NotFound("no such user")

        await self._db.write(update)
        return await self.profile(user_id)

    async def change_password(self, user_id: int, current: str, new: str) -> None:
        """Every token issued before now stops working, the caller's included."""
        current_hash = await self._db.read(lambda c: store.password_hash(c, user_id))
        if current_hash is None:
            raise NotFound("no such user")
        if not await self._hasher.verify(current, current_hash):
            raise ValidationFailed(
                "the current password is not correct", {"currentPassword": "is not correct"}
            )
        if current == new:
            raise ValidationFailed(
                "the new password must differ", {"newPassword": "must differ from the current one"}
            )
        hashed = await self._hasher.hash(new)
        now = self._clock.timestamp()
        await self._db.write(lambda c: store.set_password(c, user_id, hashed, now))
        # Tokens live at most token_ttl, so the mark can expire with the last one it refuses.
        await self._redis.set(_valid_after_key(user_id), repr(now), ex=self.tokens.ttl + 60)

    # -- password reset -----------------------------------------------------------------------
    async def request_reset(self, email: str, client: str) -> None:
        """Mail a one-time reset token to an existing account; the same answer, after the same
        work (one lookup, one commit), for an email that has none: no account discovery.

        The mail goes through the outbox (``PasswordResetRequested``), so the answer never
        waits on the mail server, whose delay would tell the two cases apart.
        """
        try:
            email = rules.email(email)
        except ValueError:
            email = email.strip().lower()
        index = self._cipher.blind_index(email)
        s = self._settings
        for key, limit in (
            (f"reset:email:{index.hex()}", s.verify_email_per_email),
            (f"reset:client:{client}", s.verify_email_per_client),
        ):
            wait = await self._limiter.hit(key, limit, s.verify_email_window)
            if wait is not None:
                raise RateLimited(wait, "too many password resets asked; try again later")
        user_id = await self._user_id_by_index(index)
        token = str(uuid.uuid4())
        now = self._clock.timestamp()
        token_enc = base64.b64encode(self._cipher.encrypt(token, RESET_CONTEXT)).decode()

        def record(conn: Any) -> None:
            if user_id is None:
                return  # an empty commit: the same wait as the real one
            store.add_reset(conn, sha256_hex(token), user_id, now + RESET_TTL, now)
            self._bus.record(conn, PasswordResetRequested(user_id=user_id, token_enc=token_enc))

        await self._db.write(record)
        if user_id is not None:
            self._bus.notify()

    async def reset_password(self, token: str, new_password: str) -> None:
        """A mailed token sets a new password, once; every access token issued before is refused."""
        refused = ValidationFailed(
            "the reset token is invalid, used or expired",
            {"token": "invalid, already used or expired"},
        )
        token_hash = sha256_hex(token.strip())
        now = self._clock.timestamp()
        # Checked before the costly hash; spent for real in the write below (two confirms of one
        # token: one wins).
        if not await self._db.read(lambda c: store.reset_is_live(c, token_hash, now)):
            raise refused
        hashed = await self._hasher.hash(new_password)
        now = self._clock.timestamp()

        def reset(conn: Any) -> int:
            user_id = store.spend_reset(conn, token_hash, now)
            if user_id is None:
                raise refused
            store.set_password(conn, user_id, hashed, now)
            return user_id

        user_id = await self._db.write(reset)
        await self._redis.set(_valid_after_key(user_id), repr(now), ex=self.tokens.ttl + 60)

    async def restore_revocations(self) -> int:
        """Put password-change marks back into Redis after it lost data; returns how many."""
        horizon = self._clock.timestamp() - self.tokens.ttl
        rows = await self._db.read(lambda c: store.revoked_since(c, horizon))
        for row in rows:
            await self._redis.set(
                _valid_after_key(row["id"]),
                repr(row["tokens_valid_after"]),
                ex=self.tokens.ttl + 60,
                nx=True,
            )
        return len(rows)

    # -- lookups for operators and other modules ------------------------------------------------
    async def find(self, email_or_id: str) -> Profile:
        text = email_or_id.strip()
        if text.isdigit():
            return await self.profile(int(text))
        index = self._cipher.blind_index(text.lower())
        user_id = await self._user_id_by_index(index)
        if user_id is None:
            raise NotFound("no such user")
        return await self.profile(user_id)

    async def list(self, page: int = 0, size: int = 50) -> Page[Profile]:
        rows, total = await self._db.read(lambda c: store.page(c, page, size))
        return Page([self._profile(r) for r in rows], page, size, total)

    async def _user_id_by_index(self, index: bytes) -> int | None:
        return await self._db.read(lambda c: store.id_by_email_index(c, index))

    def _profile(self, row: Any) -> Profile:
        dec = self._cipher.decrypt
        return Profile(
            user_id=row["id"],
            email=dec(row["email_enc"], "email"),
            user_name=dec(row["name_enc"], "name"),
            phone_number=dec(row["phone_enc"], "phone"),
            address=dec(row["address_enc"], "address"),
            role=row["role"],
            created_at=row["created_at"],
        )
