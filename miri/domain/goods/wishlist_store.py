"""The wishlist table's SQL: plain functions over a connection, run inside the caller's job."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence


def _marks(n: int) -> str:
    return ",".join("?" * n)


def delete_entries(conn: sqlite3.Connection, user_id: int, wish_ids: Sequence[int]) -> int:
    """Delete the user's entries with these ids (another user's ids are left alone); how many
    went. Callers that need every entry gone compare the count with the ids they gave."""
    ids = list(dict.fromkeys(wish_ids))
    if not ids:
        return 0
    return conn.execute(
        f"DELETE FROM wishlist WHERE user_id = ? AND id IN ({_marks(len(ids))})",
        (user_id, *ids),
    ).rowcount
