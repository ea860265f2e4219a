"""Signed webhooks: ``Miri-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``.

The timestamp is signed with the body, so an old delivery cannot be replayed with a new time,
and one older than five minutes is refused. Several ``v1`` values may be given (a provider
rolling its secret signs with both); one that verifies is enough.
"""

from __future__ import annotations

import hashlib
import hmac

from miri.domain.payments.provider import WebhookRefused

HEADER = "Miri-Signature"
TOLERANCE = 300  # seconds


def digest(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, t: int) -> str:
    """The header value for ``body`` sent at ``t``."""
    return f"t={t},v1={digest(secret, t, body)}"


def verify(
    secret: str, header: str | None, body: bytes, now: float, tolerance: int = TOLERANCE
) -> None:
    """Raises ``WebhookRefused`` unless ``header`` signs ``body`` with ``secret`` within
    ``tolerance`` seconds of ``now``."""
    if not header:
        raise WebhookRefused(HEADER, f"the {HEADER} header is missing")
    t: int | None = None
    given: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            t = int(value)
        elif key == "v1":
            given.append(value)
    if t is None or not given:
        raise WebhookRefused(HEADER, "expected t=<unix seconds>,v1=<hex signature>")
    expected = digest(secret, t, body)
    # Every candidate is compared in constant time, and all of them, so the time taken says
    # nothing about how much of a guess was right.
    matched = False
    for candidate in given:
        matched |= hmac.compare_digest(candidate.encode("utf-8", "replace"), expected.encode())
    if not matched:
        raise WebhookRefused(HEADER, "the signature does not match the body")
    if abs(now - t) > tolerance:
        raise WebhookRefused(HEADER, f"the timestamp is more than {tolerance} seconds off")
