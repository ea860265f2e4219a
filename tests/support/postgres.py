"""A PostgreSQL server for the tests, and a fresh schema per test on it.

``MIRI_TEST_DATABASE_URL`` names a server to use (CI machines run PostgreSQL 15 on
127.0.0.1:5432); without it the suite starts a throwaway server from the ``pgserver`` wheel, so
the README's test command passes on a machine with nothing running.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg


@contextmanager
def server_url() -> Iterator[str]:
    url = os.environ.get("MIRI_TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    where = tempfile.mkdtemp(prefix="miri-pg-")
    server = pgserver.get_server(where, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(where, ignore_errors=True)


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections see ``schema`` first (a shop per schema on one server)."""
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A database URL whose tables live in a new, empty schema, dropped afterwards."""
    schema = f"miri_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
