"""PostgreSQL: the same group-commit writer and reader pool as the SQLite file, on psycopg 3.

Why psycopg 3 in threads rather than asyncpg: the modules' stores are plain functions of a
connection, run whole in the writer thread (one transaction per batch of jobs, one thread hop per
batch); psycopg's synchronous connection runs them as they are, so the domain has one code path
for both engines. Measured on the 2-core machine (benchmarks/README.md, "PostgreSQL driver"),
the order-shaped insert batch ran as fast or faster on psycopg as on asyncpg awaited statement by
statement.

The stores speak the small SQL dialect of the SQLite file: qmark parameters, ``lastrowid``,
``INSERT OR IGNORE``, a case-insensitive ``LIKE``. ``PgConnection`` translates it (cached per
statement) so the stores need no second copy; what really differs per engine (outbox claims,
wake-ups, job leadership, migrations) lives beside this file in ``infra/``.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import Loader
from psycopg.pq import TransactionStatus

from miri.infra.pg_schema import MIGRATIONS
from miri.infra.writer import DatabaseUnavailable, GroupCommitDatabase, Pending, answer_all

log = logging.getLogger(__name__)
T = TypeVar("T")
MIGRATION_LOCK = 0x6D697269  # "miri": one host of a shop (a schema) migrates at a time
# Tables whose rows get an identity ``id``: an INSERT into them answers ``lastrowid``.
_ID_TABLES = frozenset(
    {"users", "goods", "wishlist", "orders", "order_items", "payments", "outbox"}
)
_INSERT_INTO = re.compile(r"^\s*INSERT\s+(OR\s+IGNORE\s+)?INTO\s+(\w+)", re.IGNORECASE)
_RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)
BATCH_TRIES = 5


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> tuple[str, bool]:
    """The statement in PostgreSQL's words, and whether it should answer ``lastrowid``."""
    out: list[str] = []
    quoted = False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
            out.append(ch)
        elif ch == "%":
            out.append("%%")
        elif ch == "?" and not quoted:
            out.append("%s")
        else:
            out.append(ch)
    text = re.sub(r"\bLIKE\b", "ILIKE", "".join(out))
    wants_id = False
    match = _INSERT_INTO.match(text)
    if match:
        returning = re.search(r"\bRETURNING\b", text, re.IGNORECASE)
        if match.group(1):  # INSERT OR IGNORE
            text = "INSERT INTO " + text[match.end(1) :].lstrip()[len("INTO") :].lstrip()
            clause = " ON CONFLICT DO NOTHING"
            if returning:
                at = re.search(r"\bRETURNING\b", text, re.IGNORECASE)
                assert at is not None
                text = text[: at.start()].rstrip() + clause + " " + text[at.start() :]
            else:
                text = text.rstrip() + clause
        if not returning and match.group(2).lower() in _ID_TABLES:
            text = text.rstrip() + " RETURNING id"
            wants_id = True
    return text, wants_id


class Row:
    """A result row readable by position and by column name, as ``sqlite3.Row`` is."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._index)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._index, self._values, strict=True))!r})"


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = [c.name for c in cursor.description or ()]
    index = {name: i for i, name in enumerate(names)}
    return lambda values: Row(values, index)


class _Number(Loader):
    """``numeric`` (SUM of integers, for one) as int or float, as SQLite answers it."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return float(text) if any(c in text for c in ".eEN") else int(text)


class PgCursor:
    """The answer of one statement: rows, ``rowcount`` and ``lastrowid``."""

    __slots__ = ("_cur", "lastrowid", "rowcount")

    def __init__(self, cur: psycopg.Cursor, wants_id: bool) -> None:
        self._cur = cur
        self.rowcount = cur.rowcount
        self.lastrowid: int | None = None
        if wants_id:
            row = cur.fetchone()
            self.lastrowid = None if row is None else row[0]

    def fetchone(self) -> Row | None:
        return self._cur.fetchone() if self._cur.description else None

    def fetchall(self) -> list[Row]:
        return self._cur.fetchall() if self._cur.description else []

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


class PgConnection:
    """A psycopg connection that runs the stores' statements (see the module's docstring)."""

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        try:
            self.raw = psycopg.connect(url, autocommit=True, row_factory=_row_factory)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        self.raw.adapters.register_loader("numeric", _Number)
        if readonly:
            self.raw.execute("SET default_transaction_read_only = on")
        self.total_changes = 0  # rows changed so far: tells whether a failed job wrote

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        text, wants_id = translate(sql)
        try:
            cur = self.raw.execute(text, tuple(params))
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(str(exc)) from exc
        if cur.rowcount > 0 and not text.lstrip()[:6].upper().startswith("SELECT"):
            self.total_changes += cur.rowcount
        return PgCursor(cur, wants_id)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> PgCursor:
        text, _ = translate(sql)
        if text.endswith(" RETURNING id"):
            text = text[: -len(" RETURNING id")]
        rows = list(rows)
        with self.raw.cursor() as cur:
            try:
                cur.executemany(text, [tuple(r) for r in rows])
            except psycopg.OperationalError as exc:
                raise DatabaseUnavailable(str(exc)) from exc
            if cur.rowcount > 0:
                self.total_changes += cur.rowcount
            return PgCursor(cur, False)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    @property
    def failed(self) -> bool:
        """A statement failed: PostgreSQL refuses the rest of this transaction."""
        return self.raw.info.transaction_status == TransactionStatus.INERROR

    def close(self) -> None:
        self.raw.close()


def migrate(url: str) -> int:
    """Apply migrations newer than the recorded version; returns the schema version."""
    conn = PgConnection(url)
    try:
        conn.execute("SELECT pg_advisory_lock(?, hashtext(current_schema()))", (MIGRATION_LOCK,))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS miri_schema (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM miri_schema").fetchone()
            version = (row[0] if row else None) or 0
            for number, script in enumerate(MIGRATIONS, start=1):
                if number <= version:
                    continue
                conn.raw.execute("BEGIN")
                try:
                    conn.raw.execute(script)
                    conn.raw.execute("INSERT INTO miri_schema (version) VALUES (%s)", (number,))
                    conn.raw.execute("COMMIT")
                except BaseException:
                    conn.raw.execute("ROLLBACK")
                    raise
                version = number
        finally:
            conn.execute(
                "SELECT pg_advisory_unlock(?, hashtext(current_schema()))", (MIGRATION_LOCK,)
            )
        return version
    finally:
        conn.close()


def schema_version(url: str) -> int:
    """The version a database is at (0 for one that holds no shop), without migrating it."""
    conn = PgConnection(url)
    try:
        exists = conn.execute("SELECT to_regclass('miri_schema') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return 0
        row = conn.execute("SELECT max(version) FROM miri_schema").fetchone()
        return (row[0] if row else None) or 0
    finally:
        conn.close()


def redact(url: str) -> str:
    """The URL without its password, for logs and health answers."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class PgDatabase(GroupCommitDatabase):
    """PostgreSQL: ``write`` runs jobs batched in one writer thread, ``read`` in a pool."""

    engine = "postgresql"

    def __init__(self, url: str, readers: int = 2, *, migrate_schema: bool = True) -> None:
        self.url = url
        self.path = None  # no file: the dashboard shows the server instead
        self.schema_version = migrate(url) if migrate_schema else schema_version(url)
        self._writer_conn = PgConnection(url)
        self._start(readers, "miri-pg")

    def describe(self) -> str:
        return redact(self.url)

    # -- the engine's part --------------------------------------------------------------------
    def _close_writer(self) -> None:
        self._writer_conn.close()

    def _run_read(self, fn: Callable[[Any], T]) -> T:
        conn: PgConnection | None = getattr(self._local, "conn", None)
        if conn is None or conn.raw.closed:
            conn = PgConnection(self.url, readonly=True)
            self._local.conn = conn
            with self._conns_lock:
                self._reader_conns.append(conn)
        try:
            return fn(conn)
        except psycopg.OperationalError as exc:
            conn.close()
            raise DatabaseUnavailable(str(exc)) from exc
        finally:
            if conn.in_transaction:  # a read that failed half-way leaves nothing open
                conn.raw.execute("ROLLBACK")

    def _after_failed_batch(self) -> None:
        self._reset_writer()

    def _reset_writer(self) -> None:
        """After a lost connection, the next batch gets a fresh one."""
        try:
            if self._writer_conn.raw.closed:
                self._writer_conn = PgConnection(self.url)
            elif self._writer_conn.in_transaction:
                self._writer_conn.raw.execute("ROLLBACK")
        except (psycopg.Error, DatabaseUnavailable):
            log.warning("PostgreSQL writer connection still down")

    def _run_batch(self, batch: list[Pending]) -> None:
        """One transaction for the batch; a job that fails after writing (or whose statement
        failed: PostgreSQL then refuses the rest) is undone alone by running the others again.
        Conflicts with other hosts' writers (deadlock, serialization) retry the whole batch."""
        for attempt in range(BATCH_TRIES):
            try:
                self._run_once(batch)
                return
            except _RETRYABLE as exc:
                log.warning("batch conflicted with another writer (%s); retrying", exc)
                self._reset_writer()
                if attempt == BATCH_TRIES - 1:
                    raise

    def _run_once(self, batch: list[Pending]) -> None:
        conn = self._writer_conn
        if conn.raw.closed:
            self._reset_writer()
            conn = self._writer_conn
        todo = list(batch)
        failed: list[tuple[Pending, Any, BaseException | None]] = []
        while True:
            conn.raw.execute("BEGIN")
            done: list[tuple[Pending, Any, BaseException | None]] = []
            undo: Pending | None = None
            for pending in todo:
                before = conn.total_changes
                try:
                    result = pending.fn(conn)
                except _RETRYABLE:
                    raise
                except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                    if isinstance(exc, psycopg.OperationalError):
                        exc = DatabaseUnavailable(str(exc))
                    if conn.total_changes != before or conn.failed:
                        undo = pending
                        failed.append((pending, None, exc))
                        break
                    done.append((pending, None, exc))
                else:
                    done.append((pending, result, None))
            if undo is None:
                break
            conn.raw.execute("ROLLBACK")
            todo.remove(undo)
        try:
            conn.raw.execute("COMMIT")
        except _RETRYABLE:
            raise
        except psycopg.Error as exc:
            log.error("commit failed: %s", exc)
            self._reset_writer()
            error = DatabaseUnavailable(f"commit failed: {exc}")
            done = [(p, None, err or error) for p, _, err in done]
        self.batches += 1
        self.jobs += len(batch)
        answer_all(failed + done)


def with_search_path(url: str, schema: str) -> str:
    """``url`` whose connections find their tables in ``schema`` (one shop per schema)."""
    from urllib.parse import quote

    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options={quote(f'-csearch_path={schema}')}"


def create_schema(url: str, schema: str) -> str:
    """Create the empty ``schema`` on the server of ``url``; returns the URL of a shop in it."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    conn = PgConnection(url)
    try:
        conn.raw.execute(f"CREATE SCHEMA {schema}")
    finally:
        conn.close()
    return with_search_path(url, schema)


def drop_schema(url: str, schema: str) -> None:
    """Drop ``schema`` and everything in it (a throwaway shop, such as a benchmark's)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    conn = PgConnection(url)
    try:
        conn.raw.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        conn.close()
