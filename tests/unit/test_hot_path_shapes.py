"""What the hot path builds by hand must stay what the slower, declared way builds (issue 13):
the 201 answer of an order, the mail headers, the collector settings of a serving process."""

from __future__ import annotations

import gc
import random
from email.message import EmailMessage

import orjson
import pytest

from miri.domain.orders.model import OrderLine, PlacedOrder
from miri.infra.mail import _message, compose
from miri.server.models import OrderOut, order_out
from miri.server.runner import GC_THRESHOLDS, settle_heap


@pytest.mark.parametrize(
    "order",
    [
        PlacedOrder(7, [OrderLine(11, 3, 2, 1500)], 3000),
        PlacedOrder(8, [OrderLine(12, 3, 1, 10, "PAYMENT_COMPLETED"), OrderLine(13, 4, 5, 0)], 10),
        PlacedOrder(9, [], 0),
    ],
)
def test_order_answer_is_the_declared_model_byte_for_byte(order: PlacedOrder) -> None:
    declared = OrderOut.of(order).model_dump()
    assert order_out(order) == declared
    assert orjson.dumps(order_out(order)) == orjson.dumps(declared)  # key order too


def _standard(sender: str, to: str, subject: str, body: str, message_id: str | None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    if message_id:
        msg["Message-ID"] = message_id
    msg.set_content(body)
    return bytes(msg)


def test_mail_with_kept_headers_is_the_standard_mail_byte_for_byte() -> None:
    cases = [
        ("shop@example.com", f"kim{n}@example.com", subject, f"Hello {n}\nthere é\n", mid)
        for n in range(30)
        for subject, mid in (
            ("Order confirmed", f"<{n}@miri>"),
            ("배송 시작: a long subject line " * 4, None),
        )
    ]
    for _ in range(2):  # the second pass reads the kept headers
        for case in cases:
            assert bytes(_message(*case)) == _standard(*case)


def _mail_cases() -> list[tuple[str, str, str, str, str | None]]:
    """Senders, addresses, subjects and bodies of every shape the shop writes, and some it does
    not: non-ASCII, long lines, display names, odd Message-IDs, empty bodies."""
    rng = random.Random(20261201)
    alphabet = "abcXYZ019 .,:;-_!?é한정판운동화🙂\t"
    senders = ["Miri <no-reply@miri.local>", "shop@example.com", "미리 상점 <shop@example.com>"]
    addresses = [
        "kim@example.com",
        "o'neil+tag@sub.example.co.kr",
        "Kim Lee <kim@example.com>",
        "x" * 70 + "@example.com",
    ]
    subjects = [
        "Order confirmed: Bench goods",
        "주문 확인: 한정판 운동화",
        "Shipped: " + "a" * 90,
        "Refunded:  two  spaces",
        "",
    ]
    bodies = [
        "Your payment is complete.\n\n  Goods:  x 1\n",
        "결제가 완료되었습니다.\n\n  상품: 한정판 운동화 x 1\n",
        "no newline at the end",
        "",
        "a line far too long for any folding " * 5 + "\n",
        "긴 줄 " * 30 + "\n",
        "windows\r\nline\r\nends\r\n",
        ".leading dot\nFrom the start\n",
    ]
    bodies += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 160))) for _ in range(40)]
    ids = [None, "<0192f3a4-b5c6.order-confirmed@miri>", "<weird id@miri>", "<a@b>"]
    return [
        (rng.choice(senders), rng.choice(addresses), rng.choice(subjects), body, rng.choice(ids))
        for body in bodies
        for _ in range(4)
    ]


def test_composed_mail_is_the_standard_mail_character_for_character() -> None:
    cases = _mail_cases()
    for _ in range(2):  # the second pass reads the kept headers
        for case in cases:
            assert compose(*case) == _message(*case).as_string(), case


def test_composed_mail_refuses_a_header_with_a_line_break() -> None:
    with pytest.raises(ValueError):
        compose("shop@example.com", "kim@example.com", "two\nlines", "body\n")


def test_a_serving_process_freezes_its_startup_heap() -> None:
    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
