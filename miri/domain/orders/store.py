"""Every statement on the orders module's tables: orders, order_items, shipping, idempotency_keys.

Each function runs on a connection inside the caller's ``db.read``/``db.write`` job, so a caller
can put several of them (and other modules' store calls) in one transaction.

Every path that gives stock back (cancel, payment abort, expiry, return) flips the item's
``stock_released`` flag from 0 to 1 in a guarded UPDATE; only the transaction that flipped it
releases the stock in Redis, so a race between two of them releases exactly once.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from miri.domain.errors import NotFound
from miri.domain.goods.store import read_epoch
from miri.domain.orders.model import Released


# -- placing -----------------------------------------------------------------------------------
def insert_order(
    conn: sqlite3.Connection, user_id: int, total_price: int, address_enc: bytes, now: float
) -> int:
    return conn.execute(
        "INSERT INTO orders (user_id, total_price, address_enc, created_at) VALUES (?, ?, ?, ?)",
        (user_id, total_price, address_enc, now),
    ).lastrowid


def insert_item(
    conn: sqlite3.Connection,
    order_id: int,
    user_id: int,
    goods_id: int,
    quantity: int,
    unit_price: int,
    now: float,
) -> int:
    """An item waiting for payment, with its shipping row (PENDING)."""
    item_id = conn.execute(
        "INSERT INTO order_items (order_id, user_id, goods_id, quantity, unit_price,"
        " status, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, 'PAYMENT_PENDING', ?, ?)",
        (order_id, user_id, goods_id, quantity, unit_price, now, now),
    ).lastrowid
    conn.execute(
        "INSERT INTO shipping (order_item_id, status, status_at) VALUES (?, 'PENDING', ?)",
        (item_id, now),
    )
    return item_id


# -- idempotency keys --------------------------------------------------------------------------
def claim_key(
    conn: sqlite3.Connection,
    user_id: int,
    key: str,
    request_hash: str,
    status: int,
    body: str,
    now: float,
    expired_before: float,
) -> bool:
    """Store the answer for a key; False if the key holds an answer newer than ``expired_before``."""
    return (
        conn.execute(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, status, body, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, key) DO UPDATE SET"
            " request_hash = excluded.request_hash, status = excluded.status,"
            " body = excluded.body, created_at = excluded.created_at"
            " WHERE idempotency_keys.created_at <= ?",
            (user_id, key, request_hash, status, body, now, expired_before),
        ).rowcount
        == 1
    )


def find_key(
    conn: sqlite3.Connection, user_id: int, key: str, newer_than: float
) -> sqlite3.Row | None:
    """``request_hash``, ``status`` and ``body`` stored for a key, if newer than ``newer_than``."""
    return conn.execute(
        "SELECT request_hash, status, body FROM idempotency_keys"
        " WHERE user_id = ? AND key = ? AND created_at > ?",
        (user_id, key, newer_than),
    ).fetchone()


# -- one item's state --------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemState:
    user_id: int
    order_id: int
    goods_id: int
    status: str
    return_status: str | None
    shipping: str
    shipping_at: float


def owned_item(conn: sqlite3.Connection, user_id: int | None, item_id: int) -> ItemState:
    """An item with its shipping; another user's item is as absent as a missing one."""
    row = conn.execute(
        "SELECT d.user_id, d.order_id, d.goods_id, d.status, d.return_status, s.status AS shipping,"
        " s.status_at FROM order_items d JOIN shipping s ON s.order_item_id = d.id"
        " WHERE d.id = ?",
        (item_id,),
    ).fetchone()
    if row is None or (user_id is not None and row["user_id"] != user_id):
        raise NotFound("no such order")
    return ItemState(
        row["user_id"],
        row["order_id"],
        row["goods_id"],
        row["status"],
        row["return_status"],
        row["shipping"],
        row["status_at"],
    )


def ask_return(conn: sqlite3.Connection, item_id: int, reason: str, now: float) -> None:
    conn.execute(
        "UPDATE order_items SET return_status = 'RETURN_IN_PROGRESS', return_reason = ?,"
        " return_requested_at = ?, updated_at = ? WHERE id = ? AND return_status IS NULL",
        (reason, now, now, item_id),
    )


# -- status changes ----------------------------------------------------------------------------
def release_item(
    conn: sqlite3.Connection, item_id: int, now: float, *, require_status: str | None
) -> Released | None:
    """Flip the item to CANCELED with its stock released, once; None if it was not ours to flip.

    ``require_status``: only from that status; None: from any status but CANCELED.
    """
    if require_status is None:
        guard, args = "AND status != 'CANCELED'", (now, item_id)
    else:
        guard, args = "AND status = ?", (now, item_id, require_status)
    row = conn.execute(
        "UPDATE order_items SET status = 'CANCELED', stock_released = 1, updated_at = ?"
        f" WHERE id = ? AND stock_released = 0 {guard}"
        " RETURNING goods_id, user_id, quantity",
        args,
    ).fetchone()
    if row is None:
        return None
    conn.execute(
        "UPDATE shipping SET status = 'CANCELED', status_at = ? WHERE order_item_id = ?",
        (now, item_id),
    )
    return Released(row["goods_id"], row["user_id"], row["quantity"], read_epoch(conn))


def ship_item(
    conn: sqlite3.Connection, item_id: int, carrier: str, tracking_number: str, now: float
) -> bool:
    """A paid, still PENDING item goes IN_TRANSIT by hand; False if it was not PENDING or paid."""
    return bool(
        conn.execute(
            "UPDATE shipping SET status = 'IN_TRANSIT', status_at = ?, carrier = ?,"
            " tracking_number = ?, shipped_at = ? WHERE order_item_id = ? AND status = 'PENDING'"
            " AND order_item_id IN (SELECT id FROM order_items WHERE id = ? AND status = 'COMPLETED')",
            (now, carrier, tracking_number, now, item_id, item_id),
        ).rowcount
    )


def complete_item(conn: sqlite3.Connection, item_id: int, now: float) -> bool:
    """PAYMENT_PENDING -> COMPLETED; False if the item had left PAYMENT_PENDING meanwhile."""
    return bool(
        conn.execute(
            "UPDATE order_items SET status = 'COMPLETED', updated_at = ?"
            " WHERE id = ? AND status = 'PAYMENT_PENDING'",
            (now, item_id),
        ).rowcount
    )


@dataclass(frozen=True)
class ItemKey:
    item_id: int
    order_id: int
    user_id: int


def unpaid_since(conn: sqlite3.Connection, cutoff: float) -> list[ItemKey]:
    """Items still PAYMENT_PENDING that were placed at or before ``cutoff``."""
    rows = conn.execute(
        "SELECT id, order_id, user_id FROM order_items"
        " WHERE status = 'PAYMENT_PENDING' AND created_at <= ?",
        (cutoff,),
    ).fetchall()
    return [ItemKey(r["id"], r["order_id"], r["user_id"]) for r in rows]


def advance_shipping(conn: sqlite3.Connection, now: float, cutoff: float) -> tuple[int, int]:
    """Paid items one shipping step on if their status dates from ``cutoff`` or before;
    returns (moved to IN_TRANSIT, moved to DELIVERED)."""
    # DELIVERED first: items moved to IN_TRANSIT below get status_at = now, so the
    # same run can never take them on to DELIVERED (the original's one-night jump).
    delivered = conn.execute(
        "UPDATE shipping SET status = 'DELIVERED', status_at = ?"
        " WHERE status = 'IN_TRANSIT' AND status_at <= ?",
        (now, cutoff),
    ).rowcount
    in_transit = conn.execute(
        "UPDATE shipping SET status = 'IN_TRANSIT', status_at = ?"
        " WHERE status = 'PENDING' AND status_at <= ? AND order_item_id IN"
        " (SELECT id FROM order_items WHERE status = 'COMPLETED')",
        (now, cutoff),
    ).rowcount
    return in_transit, delivered


def complete_returns(
    conn: sqlite3.Connection, now: float, cutoff: float
) -> list[tuple[ItemKey, Released]]:
    """Returns asked for at or before ``cutoff`` complete, their stock flagged released; each
    with the item it was (payments refunds it)."""
    rows = conn.execute(
        "UPDATE order_items SET return_status = 'RETURN_COMPLETED', stock_released = 1,"
        " updated_at = ? WHERE return_status = 'RETURN_IN_PROGRESS'"
        " AND return_requested_at <= ? AND stock_released = 0"
        " RETURNING id, order_id, goods_id, user_id, quantity",
        (now, cutoff),
    ).fetchall()
    epoch = read_epoch(conn) if rows else None
    return [
        (
            ItemKey(r["id"], r["order_id"], r["user_id"]),
            Released(r["goods_id"], r["user_id"], r["quantity"], epoch),
        )
        for r in rows
    ]
