"""The outbox's statements for PostgreSQL: the same functions as ``sqlite_store``.

What differs: several hosts' dispatchers claim at once, so a claim locks the rows it takes and
skips rows another host is claiming (``FOR UPDATE SKIP LOCKED``) instead of relying on one
writer; a new event wakes every host's dispatcher through ``NOTIFY miri_outbox`` (a trigger on
``outbox``, see ``pg_schema.py``) instead of each polling; consumer lists are JSON arrays read
with ``jsonb_array_elements_text``; ties are broken by the outbox id.

Tables (``infra/pg_schema.py``): ``outbox`` (one row per event), ``deliveries`` (one row per event
and subscribed consumer: status PENDING, DONE or DEAD, attempts, the claim's owner and lease) and
``handled_events`` (what each consumer has taken effect for). Each function runs on a connection
it is handed: writes inside the group-commit writer's transaction, reads on a reader connection.
A second engine gets a module of its own with these functions.

Consumers are passed as one JSON array, so a statement's text never depends on how many there
are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

# (status, attempts, next_attempt_at, last_error, updated_at) then the claim key below.
Failure = tuple[str, int, float, str, float, str, str, str, float]
# (updated_at, event_id, consumer, claimed_by, claimed_until): a completion applies only while
# the completing worker still holds that very lease.
Success = tuple[float, str, str, str, float]

_CLAIM = """
UPDATE deliveries AS d
   SET claimed_by = ?, claimed_until = ?, next_attempt_at = ?
  FROM (SELECT event_id, consumer FROM deliveries
         WHERE status = 'PENDING' AND next_attempt_at <= ?
           AND consumer IN (SELECT jsonb_array_elements_text(?::jsonb))
         ORDER BY next_attempt_at
         LIMIT ?
           FOR UPDATE SKIP LOCKED) AS due
 WHERE d.event_id = due.event_id AND d.consumer = due.consumer
RETURNING d.event_id, d.consumer, d.attempts
"""
_DONE = """
UPDATE deliveries
   SET status = 'DONE', claimed_by = NULL, claimed_until = NULL, updated_at = ?
 WHERE event_id = ? AND consumer = ? AND status = 'PENDING'
   AND claimed_by = ? AND claimed_until = ?
"""
_FAILED = """
UPDATE deliveries
   SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?,
       claimed_by = NULL, claimed_until = NULL, updated_at = ?
 WHERE event_id = ? AND consumer = ? AND status = 'PENDING'
   AND claimed_by = ? AND claimed_until = ?
"""
_RELEASE = """
UPDATE deliveries
   SET claimed_by = NULL, claimed_until = NULL, next_attempt_at = ?, updated_at = ?
 WHERE claimed_by = ? AND status = 'PENDING'
"""


# -- publishing -------------------------------------------------------------------------------------
def insert_event(
    conn: Any,
    event_id: str,
    type_name: str,
    payload: str,
    consumers: Sequence[str],
    now: float,
) -> None:
    """The outbox row and one PENDING delivery per consumer, due now."""
    conn.execute(
        "INSERT INTO outbox (event_id, type, payload, created_at) VALUES (?, ?, ?, ?)",
        (event_id, type_name, payload, now),
    )
    if consumers:
        conn.executemany(
            "INSERT INTO deliveries (event_id, consumer, status, attempts, next_attempt_at,"
            " updated_at) VALUES (?, ?, 'PENDING', 0, ?, ?)",
            [(event_id, consumer, now, now) for consumer in consumers],
        )


def mark_handled(conn: Any, consumer: str, event_id: str, now: float) -> bool:
    """Record that ``consumer`` took effect for ``event_id``; False when it already had."""
    cur = conn.execute(
        "INSERT INTO handled_events (consumer, event_id, handled_at) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (consumer, event_id, now),
    )
    return cur.rowcount == 1


# -- the dispatcher -------------------------------------------------------------------------------
def settle(conn: Any, done: Iterable[Success], failed: Iterable[Failure]) -> None:
    """Record finished deliveries: DONE, or a failure (PENDING again later, or DEAD)."""
    done, failed = list(done), list(failed)
    if done:
        conn.executemany(_DONE, done)
    if failed:
        conn.executemany(_FAILED, failed)


def claim(
    conn: Any, worker_id: str, until: float, now: float, consumers: str, limit: int
) -> list[tuple[str, str, int]]:
    """Claim up to ``limit`` due deliveries for ``worker_id`` until ``until``.

    The lease also pushes ``next_attempt_at`` to its end, so the due-index skips claimed rows and
    a crashed worker's rows fall due again by themselves. Returns (event_id, consumer, attempts).
    """
    rows = conn.execute(_CLAIM, (worker_id, until, until, now, consumers, limit)).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def events(conn: Any, event_ids: str) -> dict[str, tuple[str, str]]:
    """``{event_id: (type, payload)}`` for a JSON array of event ids."""
    return {
        row[0]: (row[1], row[2])
        for row in conn.execute(
            "SELECT event_id, type, payload FROM outbox"
            " WHERE event_id IN (SELECT jsonb_array_elements_text(?::jsonb))",
            (event_ids,),
        )
    }


def next_due(conn: Any, consumers: str) -> float | None:
    """When the earliest pending delivery of these consumers falls due (None: none pending)."""
    return conn.execute(
        "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'PENDING'"
        " AND consumer IN (SELECT jsonb_array_elements_text(?::jsonb))",
        (consumers,),
    ).fetchone()[0]


def pending(conn: Any, consumers: str) -> int:
    """Pending deliveries of these consumers, claimed or not."""
    return conn.execute(
        "SELECT COUNT(*) FROM deliveries WHERE status = 'PENDING'"
        " AND consumer IN (SELECT jsonb_array_elements_text(?::jsonb))",
        (consumers,),
    ).fetchone()[0]


def release(conn: Any, worker_id: str, now: float) -> int:
    """Give up ``worker_id``'s claims: its pending deliveries are due again now."""
    return conn.execute(_RELEASE, (now, now, worker_id)).rowcount


def claim_holders(conn: Any) -> list[str]:
    """The workers holding claims on pending deliveries."""
    rows = conn.execute(
        "SELECT DISTINCT claimed_by FROM deliveries"
        " WHERE status = 'PENDING' AND claimed_by IS NOT NULL"
    ).fetchall()
    return [row[0] for row in rows]


# -- operator views --------------------------------------------------------------------------------
def counts(conn: Any) -> dict[str, int]:
    """``{"PENDING": n, "DEAD": n}`` over every consumer (reads the status index)."""
    rows = conn.execute(
        "SELECT status, COUNT(*) FROM deliveries WHERE status IN ('PENDING', 'DEAD')"
        " GROUP BY status"
    ).fetchall()
    found = {row[0]: row[1] for row in rows}
    return {"PENDING": found.get("PENDING", 0), "DEAD": found.get("DEAD", 0)}


def counts_by_consumer(conn: Any) -> list[tuple[str, str, int]]:
    """(consumer, status, count) for every consumer and status present."""
    rows = conn.execute(
        "SELECT consumer, status, COUNT(*) FROM deliveries GROUP BY consumer, status"
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def dead_letters(conn: Any, limit: int) -> list[dict[str, Any]]:
    """The newest dead deliveries with their events, as column-named rows."""
    rows = conn.execute(
        "SELECT d.event_id, d.consumer, d.attempts, d.last_error, d.updated_at,"
        " o.type, o.payload, o.created_at FROM deliveries d"
        " JOIN outbox o ON o.event_id = d.event_id"
        " WHERE d.status = 'DEAD' ORDER BY d.updated_at DESC, o.id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [dict(row) for row in rows]


def replay(conn: Any, event_id: str | None, now: float) -> int:
    """DEAD → PENDING, attempts reset, for one event (all its consumers) or every dead one."""
    sql = (
        "UPDATE deliveries SET status = 'PENDING', attempts = 0, next_attempt_at = ?,"
        " claimed_by = NULL, claimed_until = NULL, updated_at = ? WHERE status = 'DEAD'"
    )
    params: tuple[Any, ...] = (now, now)
    if event_id is not None:
        sql += " AND event_id = ?"
        params += (event_id,)
    return conn.execute(sql, params).rowcount
