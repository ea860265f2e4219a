"""The notifications module's one table: which mail went out for which event."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from miri.infra.database import marks


def sent_of(conn: sqlite3.Connection, event_ids: Sequence[str], kind: str) -> set[str]:
    """Which of ``event_ids`` had their ``kind`` mail sent already."""
    if not event_ids:
        return set()
    rows = conn.execute(
        f"SELECT event_id FROM mail_log WHERE kind = ? AND event_id IN ({marks(len(event_ids))})",
        (kind, *event_ids),
    ).fetchall()
    return {row[0] for row in rows}


def mark_all_sent(
    conn: sqlite3.Connection, event_ids: Sequence[str], kind: str, now: float
) -> None:
    conn.executemany(
        "INSERT INTO mail_log (event_id, kind, sent_at) VALUES (?, ?, ?)"
        " ON CONFLICT (event_id, kind) DO NOTHING",
        [(event_id, kind, now) for event_id in event_ids],
    )
