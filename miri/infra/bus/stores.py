"""The outbox statements for the shop's database engine."""

from __future__ import annotations

from types import ModuleType

from miri.infra.bus import pg_store, sqlite_store


def for_engine(engine: str) -> ModuleType:
    """``pg_store`` on PostgreSQL, ``sqlite_store`` on the SQLite file: the same functions."""
    return pg_store if engine == "postgresql" else sqlite_store
