"""Access tokens: HS256 JWTs with ``sub``, ``role``, ``jti``, ``iat`` and ``exp``.

Decoded claims of recent tokens are cached (the signature check is the costly part of every
request); revocation is checked separately by the caller, so the cache never hides a logout.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from miri.infra.clock import Clock

ALGORITHM = "HS256"


class InvalidToken(Exception):
    """Malformed, wrongly signed, or expired."""


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
        self.ttl = ttl
        self._clock = clock
        self._cache: OrderedDict[str, Claims] = OrderedDict()
        self._cache_size = cache_size

    def issue(self, user_id: int, role: str) -> tuple[str, Claims]:
        now = self._clock.now().timestamp()
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
        now = self._clock.now().timestamp()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at <= now:
                raise InvalidToken("token expired")
            return cached
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
            claims = Claims(
                int(raw["sub"]),
                str(raw.get("role", "USER")),
                str(raw["jti"]),
                float(raw["iat"]),
                float(raw["exp"]),
            )
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise InvalidToken(str(exc)) from None
        # Expiry against the shop's clock, not the wall clock, so tests can move time.
        if claims.expires_at <= now:
            raise InvalidToken("token expired")
        self._cache[token] = claims
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return claims
