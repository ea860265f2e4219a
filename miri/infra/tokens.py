"""Access tokens: HS256 JWTs with ``sub``, ``role``, ``jti``, ``iat`` and ``exp``.

Decoded claims of recent tokens are cached (the signature check is the costly part of every
request); revocation is checked separately by the caller, so the cache never hides a logout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
import orjson

from miri.infra.clock import Clock

ALGORITHM = "HS256"
# The header segment PyJWT writes for every token this service issues.
_OWN_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class InvalidToken(Exception):
    """Malformed, wrongly signed, or expired.

    ``public`` is what a client may be told; the library's own message stays in ``str(exc)``.
    """

    def __init__(self, detail: str, public: str = "invalid token") -> None:
        super().__init__(detail)
        self.public = public


def _expired() -> InvalidToken:
    return InvalidToken("token expired", "invalid token: expired")


@dataclass(frozen=True)
class Claims:
    user_id: int
    role: str
    jti: str
    issued_at: float
    expires_at: float


class TokenService:
    def __init__(self, secret: str, ttl: int, clock: Clock, cache_size: int = 10_000) -> None:
        self._secret = secret
        self._key = secret.encode()
        self.ttl = ttl
        self._clock = clock
        self._cache: OrderedDict[str, Claims] = OrderedDict()
        self._cache_size = cache_size

    def issue(self, user_id: int, role: str) -> tuple[str, Claims]:
        now = self._clock.timestamp()
        claims = Claims(user_id, role, uuid.uuid4().hex, now, now + self.ttl)
        token = jwt.encode(
            {
                "sub": str(user_id),
                "role": role,
                "jti": claims.jti,
                # Sub-second iat: a password change must revoke a token issued in the same second.
                "iat": now,
                "exp": int(claims.expires_at),
            },
            self._secret,
            algorithm=ALGORITHM,
        )
        return token, claims

    def decode(self, token: str) -> Claims:
        now = self._clock.timestamp()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at <= now:
                raise _expired()
            return cached
        try:
            raw = self._verify_own(token)
            if raw is None:
                raw = self._verify_strict(token)
            claims = Claims(
                int(raw["sub"]),
                str(raw.get("role", "USER")),
                str(raw["jti"]),
                float(raw["iat"]),
                float(raw["exp"]),
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, UnicodeError) as exc:
            raise InvalidToken(str(exc)) from None
        # Expiry against the shop's clock, not the wall clock, so tests can move time.
        if claims.expires_at <= now:
            raise _expired()
        self._cache[token] = claims
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return claims

    def _verify_own(self, token: str) -> dict[str, Any] | None:
        """Tokens exactly as this service issues them (HS256 header), checked in ~7 µs.

        PyJWT takes ~95 µs per token and a flash sale sees thousands of new tokens a second.
        Only the one header this service writes takes this path; anything else (``alg: none``,
        other algorithms, extra header fields) goes through PyJWT's strict decode and fails
        there. The signature is compared in constant time before the payload is even parsed.
        """
        head, dot, rest = token.partition(".")
        if head != _OWN_HEADER or not dot:
            return None
        payload, dot, signature = rest.partition(".")
        if not dot or "." in signature:
            raise ValueError("malformed token")
        expected = hmac.new(self._key, f"{head}.{payload}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _b64(signature)):
            raise ValueError("signature verification failed")
        raw = orjson.loads(_b64(payload))
        if not isinstance(raw, dict):
            raise ValueError("the payload is not an object")
        for name in ("sub", "exp", "jti", "iat"):
            if name not in raw:
                raise ValueError(f"token is missing the {name!r} claim")
        if not isinstance(raw["sub"], str) or not isinstance(raw["jti"], str):
            raise ValueError("sub and jti must be strings")
        for name in ("exp", "iat"):
            if isinstance(raw[name], bool) or not isinstance(raw[name], int | float):
                raise ValueError(f"{name} must be a number")
        return raw

    def _verify_strict(self, token: str) -> dict[str, Any]:
        try:
            raw = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],  # pinned: "none" and other algorithms are refused
                # Times are judged below against the shop's clock, never PyJWT's wall clock.
                options={
                    "require": ["sub", "exp", "jti", "iat"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise ValueError(str(exc)) from None
        return raw
