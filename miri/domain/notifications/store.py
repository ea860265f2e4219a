"""The notifications module's one table: which mail went out for which event."""

from __future__ import annotations

import sqlite3


def sent(conn: sqlite3.Connection, event_id: str, kind: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM mail_log WHERE event_id = ? AND kind = ?", (event_id, kind)
        ).fetchone()
        is not None
    )


def mark_sent(conn: sqlite3.Connection, event_id: str, kind: str, now: float) -> None:
    conn.execute(
        "INSERT INTO mail_log (event_id, kind, sent_at) VALUES (?, ?, ?)"
        " ON CONFLICT (event_id, kind) DO NOTHING",
        (event_id, kind, now),
    )
