"""The wishlist table's SQL: plain functions over a connection, run inside the caller's job.

An order that takes entries from the wishlist calls ``delete_entries`` inside its own commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from miri.domain.goods.store import GoodsStore
from miri.infra.database import marks


def add(
    conn: Any, user_id: int, goods_id: int, quantity: int, now: float
) -> tuple[int, int] | None:
    """Add ``quantity`` to the user's entry for the goods (one row, always): (id, new total), or
    None when the goods do not exist."""
    if not GoodsStore.exists_in(conn, goods_id):
        return None
    # One statement on the single writer: two adds at once cannot make two rows.
    wish_id, total = conn.execute(
        "INSERT INTO wishlist (user_id, goods_id, quantity, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, goods_id) DO UPDATE"
        " SET quantity = wishlist.quantity + excluded.quantity, updated_at = excluded.updated_at"
        " RETURNING id, quantity",
        (user_id, goods_id, quantity, now, now),
    ).fetchone()
    return wish_id, total


def set_quantity(conn: Any, user_id: int, wish_id: int, quantity: int, now: float) -> int | None:
    """The entry's goods id, or None when the user has no such entry."""
    row = conn.execute(
        "UPDATE wishlist SET quantity = ?, updated_at = ? WHERE id = ? AND user_id = ?"
        " RETURNING goods_id",
        (quantity, now, wish_id, user_id),
    ).fetchone()
    return None if row is None else row[0]


def delete_one(conn: Any, user_id: int, wish_id: int) -> bool:
    cur = conn.execute("DELETE FROM wishlist WHERE id = ? AND user_id = ?", (wish_id, user_id))
    return cur.rowcount == 1


def select_entries(conn: Any, user_id: int, ids: Sequence[int]) -> list[Any]:
    """(id, goods_id, quantity) rows of the user's entries among ``ids``."""
    return conn.execute(
        f"SELECT id, goods_id, quantity FROM wishlist WHERE user_id = ? AND id IN ({marks(len(ids))})",
        (user_id, *ids),
    ).fetchall()


def select_page(conn: Any, user_id: int, page: int, size: int) -> tuple[list[Any], int]:
    """A page of the user's (id, goods_id, quantity) rows, newest first, and the total."""
    total = conn.execute("SELECT COUNT(*) FROM wishlist WHERE user_id = ?", (user_id,)).fetchone()[
        0
    ]
    rows = conn.execute(
        "SELECT id, goods_id, quantity FROM wishlist WHERE user_id = ?"
        " ORDER BY id DESC LIMIT ? OFFSET ?",
        (user_id, size, page * size),
    ).fetchall()
    return rows, total


def delete_entries(conn: Any, user_id: int, wish_ids: Sequence[int]) -> int:
    """Delete the user's entries with these ids (another user's ids are left alone); how many
    went. Callers that need every entry gone compare the count with the ids they gave."""
    ids = list(dict.fromkeys(wish_ids))
    if not ids:
        return 0
    return conn.execute(
        f"DELETE FROM wishlist WHERE user_id = ? AND id IN ({marks(len(ids))})",
        (user_id, *ids),
    ).rowcount
