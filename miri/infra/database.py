"""Which database the shop runs on: the SQLite file in the data dir, or PostgreSQL.

Both engines offer the same small interface (``Database``): ``write(fn)`` runs ``fn(conn)`` in
the next group-committed transaction of one writer thread, ``read(fn)`` on a reader connection.
The modules' stores are written once against that connection; ``miri.infra.postgres`` says how
PostgreSQL runs them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import psycopg

from miri.config import Settings
from miri.infra.writer import BACKGROUND, DatabaseUnavailable

T = TypeVar("T")

# A unique or foreign-key constraint refused a write, on either engine.
IntegrityError = (sqlite3.IntegrityError, psycopg.IntegrityError)

__all__ = [
    "BACKGROUND",
    "Database",
    "DatabaseUnavailable",
    "IntegrityError",
    "open_database",
]


class Database(Protocol):
    engine: str
    schema_version: int

    async def write(self, fn: Callable[[Any], T]) -> T: ...

    async def read(self, fn: Callable[[Any], T]) -> T: ...

    @property
    def backlog(self) -> int: ...

    @property
    def written(self) -> int: ...

    def describe(self) -> str: ...

    async def close(self) -> None: ...


def marks(n: int) -> str:
    """``?, ?, ...``: the placeholders of an ``IN (...)`` list of ``n`` values (either engine)."""
    return ", ".join("?" * n)


def share_lock(conn: Any) -> str:
    """`` FOR SHARE`` on PostgreSQL (the row stays as read until the transaction ends), nothing
    on SQLite, whose single writer already keeps it so."""
    return "" if isinstance(conn, sqlite3.Connection) else " FOR SHARE"


def is_postgres(url: str | None) -> bool:
    return bool(url) and url.split(":", 1)[0] in {"postgresql", "postgres"}


def open_database(settings: Settings) -> Database:
    """The configured engine, migrated to the current schema."""
    url = settings.database_url
    if url:
        if not is_postgres(url):
            raise ValueError(
                f"unsupported database URL {url.split(':', 1)[0]!r}: use postgresql://"
            )
        from miri.infra.postgres import PgDatabase

        return PgDatabase(url)
    from miri.infra.sqlite import Database as SqliteDatabase

    return SqliteDatabase(settings.db_path)
