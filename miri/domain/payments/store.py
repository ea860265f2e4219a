"""Every statement on the payments table.

Every status change is a guarded UPDATE (``WHERE status IN (...)``), so a payment that a cancel
or an expiry already settled is never moved on by a gateway answer that arrives late.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from miri.domain.events import OrderedItem
from miri.domain.payments.gateway import PaymentRequest

SCREEN_ENTERED = "PAYMENT_SCREEN_ENTERED"
IN_PROGRESS = "PAYMENT_IN_PROGRESS"
COMPLETED = "PAYMENT_COMPLETED"
ABORTED = "PAYMENT_ABORTED"
REFUNDED = "REFUNDED"
OPEN = (SCREEN_ENTERED, IN_PROGRESS)


def _in(statuses: Sequence[str]) -> str:
    return f"({', '.join('?' * len(statuses))})"


def open_payment(
    conn: sqlite3.Connection, item: OrderedItem, order_id: int, user_id: int, now: float
) -> PaymentRequest | None:
    """A payment for the item at its screen; None if the item has a payment already (a cancel
    that arrived first settled it as REFUNDED)."""
    amount = item.unit_price * item.quantity
    row = conn.execute(
        "INSERT INTO payments (order_item_id, order_id, user_id, amount,"
        " status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (order_item_id) DO NOTHING RETURNING id",
        (item.order_item_id, order_id, user_id, amount, SCREEN_ENTERED, now, now),
    ).fetchone()
    if row is None:
        return None
    return PaymentRequest(row[0], item.order_item_id, user_id, amount)


def still_open(conn: sqlite3.Connection, order_id: int) -> list[tuple[PaymentRequest, str]]:
    """The order's payments not settled yet, each with where its walk stopped."""
    rows = conn.execute(
        "SELECT id, order_item_id, user_id, amount, status FROM payments"
        f" WHERE order_id = ? AND status IN {_in(OPEN)}",
        (order_id, *OPEN),
    ).fetchall()
    return [(PaymentRequest(*r[:4]), r[4]) for r in rows]


def move(
    conn: sqlite3.Connection, payment_id: int, old: Sequence[str], new: str, now: float
) -> bool:
    """``old`` -> ``new``; False if the payment was in none of ``old``."""
    return (
        conn.execute(
            f"UPDATE payments SET status = ?, updated_at = ? WHERE id = ? AND status IN {_in(old)}",
            (new, now, payment_id, *old),
        ).rowcount
        == 1
    )


def settle(
    conn: sqlite3.Connection,
    order_item_id: int,
    order_id: int,
    user_id: int,
    status: str,
    settles: Sequence[str],
    now: float,
) -> None:
    """The item's payment becomes ``status`` if it is in one of ``settles``; an item with no
    payment yet gets one, already settled (its ``OrderPlaced`` will open nothing)."""
    conn.execute(
        "INSERT INTO payments (order_item_id, order_id, user_id, amount, status,"
        " created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?, ?)"
        " ON CONFLICT (order_item_id) DO UPDATE SET status = excluded.status,"
        f" updated_at = excluded.updated_at WHERE payments.status IN {_in(settles)}",
        (order_item_id, order_id, user_id, status, now, now, *settles),
    )


def outcomes(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, COUNT(*) FROM payments GROUP BY status").fetchall())
