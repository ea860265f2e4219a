"""Every statement on the payments table.

Every status change is a guarded UPDATE (``WHERE status IN (...)``), so a payment that a cancel
or an expiry already settled is never moved on by a gateway answer that arrives late.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from miri.domain.events import OrderedItem
from miri.domain.payments.gateway import PaymentRequest

SCREEN_ENTERED = "PAYMENT_SCREEN_ENTERED"
IN_PROGRESS = "PAYMENT_IN_PROGRESS"
COMPLETED = "PAYMENT_COMPLETED"
ABORTED = "PAYMENT_ABORTED"
REFUNDED = "REFUNDED"
OPEN = (SCREEN_ENTERED, IN_PROGRESS)

# Checkout sessions (one per order): open until the provider says how the payment ended.
SESSION_OPEN = "OPEN"
SESSION_PAID = "PAID"
SESSION_FAILED = "FAILED"


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
    return PaymentRequest(row[0], item.order_item_id, user_id, amount, order_id)


def still_open(conn: sqlite3.Connection, order_id: int) -> list[tuple[PaymentRequest, str]]:
    """The order's payments not settled yet, each with where its walk stopped."""
    rows = conn.execute(
        "SELECT id, order_item_id, user_id, amount, order_id, status FROM payments"
        f" WHERE order_id = ? AND status IN {_in(OPEN)}",
        (order_id, *OPEN),
    ).fetchall()
    return [(PaymentRequest(*r[:5]), r[5]) for r in rows]


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


@dataclass(frozen=True)
class Payment:
    id: int
    order_item_id: int
    order_id: int
    user_id: int
    amount: int
    status: str
    session_id: str | None
    paid_at: float | None  # when the provider took the money (a webhook said so)
    refunded_at: float | None  # when the provider gave it back

    @property
    def taken(self) -> bool:
        """Money was taken: the simulated walk completed, or a provider confirmed a payment
        (also one that arrived after the item expired or was canceled)."""
        return self.status == COMPLETED or self.paid_at is not None


_PAYMENT = (
    "SELECT id, order_item_id, order_id, user_id, amount, status, session_id, paid_at,"
    " refunded_at FROM payments"
)


def payment_of(conn: sqlite3.Connection, order_item_id: int) -> Payment | None:
    row = conn.execute(f"{_PAYMENT} WHERE order_item_id = ?", (order_item_id,)).fetchone()
    return None if row is None else Payment(*row)


def ensure(
    conn: sqlite3.Connection,
    order_item_id: int,
    order_id: int,
    user_id: int,
    status: str,
    now: float,
) -> None:
    """An item with no payment yet gets one, already ``status`` (its ``OrderPlaced``, arriving
    later, opens nothing); an existing payment is left as it is."""
    conn.execute(
        "INSERT INTO payments (order_item_id, order_id, user_id, amount, status,"
        " created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?, ?)"
        " ON CONFLICT (order_item_id) DO NOTHING",
        (order_item_id, order_id, user_id, status, now, now),
    )


def refunded(conn: sqlite3.Connection, payment: Payment, now: float) -> bool:
    """The payment becomes REFUNDED: with the money given back (``refunded_at``) when it was
    taken, else only while it is still open and nothing was taken. False if another refund, or
    a payment that arrived meanwhile, got there first."""
    if payment.taken:
        sql = (
            "UPDATE payments SET status = ?, refunded_at = ?, updated_at = ?"
            " WHERE id = ? AND refunded_at IS NULL"
        )
        args: tuple = (REFUNDED, now, now, payment.id)
    else:
        sql = (
            "UPDATE payments SET status = ?, updated_at = ?"
            f" WHERE id = ? AND paid_at IS NULL AND status IN {_in(OPEN)}"
        )
        args = (REFUNDED, now, payment.id, *OPEN)
    return conn.execute(sql, args).rowcount == 1


def mark_paid(conn: sqlite3.Connection, payment_id: int, now: float) -> bool:
    """The provider took the money for this payment; False if it was recorded already."""
    return (
        conn.execute(
            "UPDATE payments SET paid_at = ?, updated_at = ? WHERE id = ? AND paid_at IS NULL",
            (now, now, payment_id),
        ).rowcount
        == 1
    )


def statuses(conn: sqlite3.Connection, order_id: int) -> dict[int, str]:
    """Order item -> its payment's status, for the items of ``order_id`` that have one."""
    rows = conn.execute(
        "SELECT order_item_id, status FROM payments WHERE order_id = ?", (order_id,)
    ).fetchall()
    return {r[0]: r[1] for r in rows}


# -- checkout sessions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Session:
    payment_id: str
    order_id: int
    user_id: int
    amount: int
    checkout_url: str
    status: str
    expires_at: float
    created_at: float


_SESSION = (
    "SELECT payment_id, order_id, user_id, amount, checkout_url, status, expires_at, created_at"
    " FROM checkout_sessions"
)


def session(conn: sqlite3.Connection, payment_id: str) -> Session | None:
    row = conn.execute(f"{_SESSION} WHERE payment_id = ?", (payment_id,)).fetchone()
    return None if row is None else Session(*row)


def session_of_order(conn: sqlite3.Connection, order_id: int) -> Session | None:
    row = conn.execute(f"{_SESSION} WHERE order_id = ?", (order_id,)).fetchone()
    return None if row is None else Session(*row)


def add_session(
    conn: sqlite3.Connection, s: Session, provider: str, order_item_ids: Sequence[int]
) -> bool:
    """Store the order's session and put its items' payments in it (open ones move on to
    PAYMENT_IN_PROGRESS); False, and nothing stored, if the order has a session already."""
    added = conn.execute(
        "INSERT INTO checkout_sessions (payment_id, order_id, user_id, amount, provider,"
        " checkout_url, status, expires_at, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING",
        (
            s.payment_id,
            s.order_id,
            s.user_id,
            s.amount,
            provider,
            s.checkout_url,
            s.status,
            s.expires_at,
            s.created_at,
            s.created_at,
        ),
    ).rowcount
    if not added:
        return False
    # Every item paid for joins, also one canceled a moment ago: if the buyer pays anyway, its
    # share is refunded like any late payment.
    conn.execute(
        f"UPDATE payments SET session_id = ? WHERE order_item_id IN {_in(order_item_ids)}",
        (s.payment_id, *order_item_ids),
    )
    conn.execute(
        "UPDATE payments SET status = ?, updated_at = ? WHERE session_id = ? AND status = ?",
        (IN_PROGRESS, s.created_at, s.payment_id, SCREEN_ENTERED),
    )
    return True


def end_session(conn: sqlite3.Connection, payment_id: str, status: str, now: float) -> bool:
    """OPEN -> ``status`` (PAID also from FAILED: money taken is a fact); False otherwise."""
    allowed = (SESSION_OPEN, SESSION_FAILED) if status == SESSION_PAID else (SESSION_OPEN,)
    return (
        conn.execute(
            "UPDATE checkout_sessions SET status = ?, updated_at = ?"
            f" WHERE payment_id = ? AND status IN {_in(allowed)}",
            (status, now, payment_id, *allowed),
        ).rowcount
        == 1
    )


def session_payments(conn: sqlite3.Connection, payment_id: str) -> list[Payment]:
    rows = conn.execute(f"{_PAYMENT} WHERE session_id = ? ORDER BY id", (payment_id,)).fetchall()
    return [Payment(*r) for r in rows]


def outcomes(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, COUNT(*) FROM payments GROUP BY status").fetchall())
