"""The webhook signature (``Miri-Signature``) and where its secret comes from."""

from __future__ import annotations

import pytest

from miri.domain.payments import signature
from miri.domain.payments.provider import WebhookRefused
from miri.infra import secrets
from miri.infra.secrets import MissingSharedKey
from tests.support.shop import make_settings

BODY = b'{"eventId":"evt_1","type":"payment.succeeded","paymentId":"pay_1","amount":2000}'
NOW = 1_790_000_000


def test_a_signature_verifies_its_body_at_its_time():
    header = signature.sign("s3cret", BODY, NOW)
    assert header.startswith(f"t={NOW},v1=")
    signature.verify("s3cret", header, BODY, NOW + 299)
    signature.verify("s3cret", header, BODY, NOW - 299)  # a provider clock a little ahead


@pytest.mark.parametrize(
    ("header", "body", "now", "reason"),
    [
        (None, BODY, NOW, "missing"),
        ("", BODY, NOW, "missing"),
        ("v1=abc", BODY, NOW, "expected t="),
        (f"t={NOW}", BODY, NOW, "expected t="),
        (f"t=x,v1={'0' * 64}", BODY, NOW, "expected t="),
        (signature.sign("other", BODY, NOW), BODY, NOW, "does not match"),
        (signature.sign("s3cret", BODY, NOW), BODY + b" ", NOW, "does not match"),
        (
            signature.sign("s3cret", BODY, NOW).replace(f"t={NOW}", f"t={NOW + 1}"),
            BODY,
            NOW,
            "does not match",
        ),  # the time is signed with the body
        (signature.sign("s3cret", BODY, NOW), BODY, NOW + 301, "seconds off"),
        (signature.sign("s3cret", BODY, NOW), BODY, NOW - 301, "seconds off"),
        (f"t={NOW},v1=é", BODY, NOW, "does not match"),
    ],
)
def test_anything_else_is_refused(header, body, now, reason):
    with pytest.raises(WebhookRefused) as refused:
        signature.verify("s3cret", header, body, now)
    assert reason in refused.value.message
    assert refused.value.code == "VALIDATION_FAILED" and "Miri-Signature" in refused.value.data


def test_one_of_several_signatures_is_enough():
    """A provider rolling its secret signs with the old and the new one."""
    old = signature.sign("old", BODY, NOW).split(",")[1]
    new = signature.sign("new", BODY, NOW)
    signature.verify("new", f"{new},{old}", BODY, NOW)
    signature.verify("old", f"{new},{old}", BODY, NOW)


def test_the_secret_is_generated_locally_and_required_with_a_shared_database(tmp_path):
    local = make_settings(tmp_path / "a")
    first = secrets.payment_webhook_secret(local)
    assert first and secrets.payment_webhook_secret(local) == first
    assert (tmp_path / "a" / "keys" / "payment-webhook.key").stat().st_mode & 0o077 == 0

    shared = make_settings(tmp_path / "b", database_url="postgresql://db.example/shop")
    assert secrets.payment_webhook_secret(shared) == shared.payment_webhook_secret
    with pytest.raises(MissingSharedKey, match="MIRI_PAYMENT_WEBHOOK_SECRET"):
        secrets.payment_webhook_secret(shared.replace(payment_webhook_secret=None))
