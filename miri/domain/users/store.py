"""Every statement on the users module's tables: ``users`` and ``email_verifications``.

Plain functions over the connection the database hands to a read or a write; nothing else in
the shop touches these tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from miri.domain.errors import EmailTaken, ValidationFailed
from miri.infra.database import marks

Row = Any  # a row readable by column name (sqlite3.Row)


def add_verification(
    conn: sqlite3.Connection,
    token_hash: str,
    email_index: bytes,
    email_enc: bytes,
    expires_at: float,
    now: float,
) -> None:
    conn.execute(
        "INSERT INTO email_verifications"
        " (token_hash, email_index, email_enc, expires_at, created_at) VALUES (?, ?, ?, ?, ?)",
        (token_hash, email_index, email_enc, expires_at, now),
    )


def verification(conn: sqlite3.Connection, token_hash: str) -> Row | None:
    return conn.execute(
        "SELECT email_index, email_enc, expires_at, used_at FROM email_verifications"
        " WHERE token_hash = ?",
        (token_hash,),
    ).fetchone()


def spend_verification(conn: sqlite3.Connection, token_hash: str, now: float) -> None:
    """Marks the token used; refuses one that is used, expired or unknown (checked in the write)."""
    spent = conn.execute(
        "UPDATE email_verifications SET used_at = ?"
        " WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
        (now, token_hash, now),
    ).rowcount
    if spent != 1:
        raise ValidationFailed(
            "the verification token is invalid, used or expired",
            {"emailVerificationToken": "invalid, already used or expired"},
        )


def add_user(
    conn: sqlite3.Connection,
    *,
    email_index: bytes,
    email_enc: bytes,
    name_enc: bytes,
    phone_enc: bytes,
    address_enc: bytes,
    password_hash: str,
    role: str,
    now: float,
) -> int:
    try:
        cur = conn.execute(
            "INSERT INTO users (email_index, email_enc, name_enc, phone_enc, address_enc,"
            " password_hash, role, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                email_index,
                email_enc,
                name_enc,
                phone_enc,
                address_enc,
                password_hash,
                role,
                now,
                now,
            ),
        )
    except sqlite3.IntegrityError:
        raise EmailTaken() from None
    return int(cur.lastrowid)


def id_by_email_index(conn: sqlite3.Connection, email_index: bytes) -> int | None:
    row = conn.execute("SELECT id FROM users WHERE email_index = ?", (email_index,)).fetchone()
    return None if row is None else int(row["id"])


def credentials(conn: sqlite3.Connection, email_index: bytes) -> Row | None:
    return conn.execute(
        "SELECT id, password_hash, role FROM users WHERE email_index = ?", (email_index,)
    ).fetchone()


def user(conn: sqlite3.Connection, user_id: int) -> Row | None:
    return conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()


def emails(conn: sqlite3.Connection, user_ids: Sequence[int]) -> list[Row]:
    """``(id, email_enc)`` of each of these users that exists."""
    if not user_ids:
        return []
    return conn.execute(
        f"SELECT id, email_enc FROM users WHERE id IN ({marks(len(user_ids))})", tuple(user_ids)
    ).fetchall()


def password_hash(conn: sqlite3.Connection, user_id: int) -> str | None:
    row = conn.execute("SELECT password_hash FROM users WHERE id = ?", (user_id,)).fetchone()
    return None if row is None else row["password_hash"]


def update_contact(
    conn: sqlite3.Connection,
    user_id: int,
    now: float,
    phone_enc: bytes | None = None,
    address_enc: bytes | None = None,
) -> bool:
    """The new phone and/or address; False when there is no such user."""
    sets, args = ["updated_at = ?"], [now]
    if phone_enc is not None:
        sets.append("phone_enc = ?")
        args.append(phone_enc)
    if address_enc is not None:
        sets.append("address_enc = ?")
        args.append(address_enc)
    sql = f"UPDATE users SET {', '.join(sets)} WHERE id = ?"
    return conn.execute(sql, (*args, user_id)).rowcount == 1


def set_password(conn: sqlite3.Connection, user_id: int, password_hash: str, now: float) -> None:
    """The new hash; every token issued before ``now`` stops working."""
    conn.execute(
        "UPDATE users SET password_hash = ?, tokens_valid_after = ?, updated_at = ? WHERE id = ?",
        (password_hash, now, now, user_id),
    )


def revoked_since(conn: sqlite3.Connection, horizon: float) -> list[Row]:
    """Users whose tokens before some time after ``horizon`` are refused (password changes)."""
    return conn.execute(
        "SELECT id, tokens_valid_after FROM users WHERE tokens_valid_after > ?", (horizon,)
    ).fetchall()


def page(conn: sqlite3.Connection, page: int, size: int) -> tuple[list[Row], int]:
    total = conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]
    rows = conn.execute(
        "SELECT * FROM users ORDER BY id DESC LIMIT ? OFFSET ?", (size, page * size)
    ).fetchall()
    return rows, total


# -- password reset ------------------------------------------------------------------------------
def add_reset(
    conn: sqlite3.Connection, token_hash: str, user_id: int, expires_at: float, now: float
) -> None:
    conn.execute(
        "INSERT INTO password_resets (token_hash, user_id, expires_at, created_at)"
        " VALUES (?, ?, ?, ?)",
        (token_hash, user_id, expires_at, now),
    )


def reset_is_live(conn: sqlite3.Connection, token_hash: str, now: float) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM password_resets WHERE token_hash = ? AND used_at IS NULL"
            " AND expires_at > ?",
            (token_hash, now),
        ).fetchone()
        is not None
    )


def spend_reset(conn: sqlite3.Connection, token_hash: str, now: float) -> int | None:
    """The user a live reset token belongs to, spending it (and every other of theirs) in the
    same write; None when the token is unknown, used or expired."""
    row = conn.execute(
        "UPDATE password_resets SET used_at = ?"
        " WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING user_id",
        (now, token_hash, now),
    ).fetchone()
    if row is None:
        return None
    conn.execute(
        "UPDATE password_resets SET used_at = ? WHERE user_id = ? AND used_at IS NULL",
        (now, row["user_id"]),
    )
    return row["user_id"]
