"""The queue module's table: each goods' waiting-room settings (the durable copy Redis mirrors)."""

from __future__ import annotations

from typing import Any

from miri.domain.queue.model import RoomSettings


def _settings(row: Any) -> RoomSettings:
    return RoomSettings(
        enabled=bool(row["enabled"]),
        admit_per_second=int(row["admit_per_second"]),
        pass_seconds=int(row["pass_seconds"]),
    )


def save(conn: Any, goods_id: int, room: RoomSettings, now: float) -> None:
    conn.execute(
        "INSERT INTO waiting_rooms (goods_id, enabled, admit_per_second, pass_seconds, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (goods_id) DO UPDATE SET"
        " enabled = excluded.enabled, admit_per_second = excluded.admit_per_second,"
        " pass_seconds = excluded.pass_seconds, updated_at = excluded.updated_at",
        (goods_id, int(room.enabled), room.admit_per_second, room.pass_seconds, now),
    )


def one(conn: Any, goods_id: int) -> RoomSettings | None:
    row = conn.execute("SELECT * FROM waiting_rooms WHERE goods_id = ?", (goods_id,)).fetchone()
    return None if row is None else _settings(row)


def every(conn: Any) -> dict[int, RoomSettings]:
    rows = conn.execute("SELECT * FROM waiting_rooms ORDER BY goods_id").fetchall()
    return {int(row["goods_id"]): _settings(row) for row in rows}
