"""SQLite: WAL, versioned migrations, the group-commit writer (infra/writer.py), a reader pool.

Writers in several processes (serve --workers, the CLI) take turns through a lock file.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from miri.infra.schema import MIGRATIONS
from miri.infra.writer import (
    BACKGROUND,
    CHECKPOINT,
    Answer,
    DatabaseUnavailable,
    GroupCommitDatabase,
    Pending,
    answer_all,
    answer_here,
)

__all__ = ["BACKGROUND", "Database", "DatabaseUnavailable", "connect", "migrate"]

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: durable across process crashes; an OS crash may lose the last tick.
        conn.execute("PRAGMA synchronous = NORMAL")
    else:
        conn.execute("PRAGMA query_only = ON")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply migrations newer than ``user_version``; returns the schema version."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS, start=1):
            if number <= version:
                continue
            for statement in _split(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            version = number
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


def _split(script: str) -> list[str]:
    return [s.strip() for s in script.split(";\n") if s.strip()]


# Commits leave the WAL to the writer thread, checkpointed this often on a connection of its own
# (SQLite's own checkpoint copies pages and syncs inside a commit: on the loop, or holding the
# write lock every request waits for).
CHECKPOINT_EVERY = 0.5  # seconds


class Database(GroupCommitDatabase):
    """The shop's SQLite file: ``write`` runs jobs batched in one transaction (on the loop at
    the end of its tick, or in the writer thread), ``read`` in a pool."""

    engine = "sqlite"
    inline = True

    def __init__(self, path: Path, readers: int = 2) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        bootstrap = connect(path)
        try:
            self.schema_version = migrate(bootstrap)
        finally:
            bootstrap.close()
        self._writer_conn = connect(path)
        self._writer_conn.execute("PRAGMA wal_autocheckpoint = 0")  # see CHECKPOINT_EVERY
        self._checkpoint_asked = time.monotonic()
        self._checkpoint_conn: sqlite3.Connection | None = None  # the writer thread's
        self.checkpoints = 0
        # Writers in other processes (serve --workers, the CLI) queue on this lock in the
        # kernel instead of in SQLite's busy handler, which sleeps in steps of milliseconds.
        self._lock_fd = os.open(f"{path}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
        self._start(readers, "miri-sqlite")

    def describe(self) -> str:
        return str(self.path)

    # -- the engine's part --------------------------------------------------------------------
    def _close_writer(self) -> None:
        self._writer_conn.close()
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
        os.close(self._lock_fd)

    def _run_read(self, fn: Callable[[Any], T]) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._conns_lock:
                self._reader_conns.append(conn)
        try:
            return fn(conn)
        except sqlite3.OperationalError as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    def _try_inline(self, batch: list[Pending]) -> bool:
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # another process is writing: the writer thread waits for it
        try:
            self._run_locked(batch, answer_here)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self._ask_checkpoint()
        return True

    def _ask_checkpoint(self) -> None:
        """Queue a checkpoint for the writer thread, once every CHECKPOINT_EVERY seconds."""
        now = time.monotonic()
        if now - self._checkpoint_asked >= CHECKPOINT_EVERY:
            self._checkpoint_asked = now
            self._queue.put(CHECKPOINT)  # behind whatever is queued: its answers come first

    def _checkpoint(self) -> None:
        """Copy committed WAL pages into the file; PASSIVE: it waits for no reader or writer,
        and none waits for it (no write lock is held)."""
        try:
            if self._checkpoint_conn is None:
                self._checkpoint_conn = connect(self.path)
            self._checkpoint_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self.checkpoints += 1
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)

    def _after_failed_batch(self) -> None:
        try:
            if self._writer_conn.in_transaction:
                self._writer_conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _run_batch(self, batch: list[Pending]) -> None:
        """Run ``batch`` in one transaction; a job that fails after writing is undone alone.

        No SAVEPOINT per job: it more than halves the writer's throughput (measured, see
        benchmarks/README.md). A job that raises before changing a row needs no undo; one that
        raises after writing makes the whole transaction roll back and the other jobs run again
        without it. Jobs are functions of the connection only, so running one again is safe.
        """
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._run_locked(batch, answer_all)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self._ask_checkpoint()

    def _run_locked(self, batch: list[Pending], answer: Callable[[list[Answer]], None]) -> None:
        conn = self._writer_conn
        todo = list(batch)
        failed: list[tuple[Pending, Any, BaseException | None]] = []
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                error = DatabaseUnavailable(f"could not start a transaction: {exc}")
                answer(failed + [(p, None, error) for p in todo])
                return
            done: list[tuple[Pending, Any, BaseException | None]] = []
            undo: Pending | None = None
            for pending in todo:
                before = conn.total_changes
                try:
                    result = pending.fn(conn)
                except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                    if isinstance(exc, sqlite3.OperationalError):
                        exc = DatabaseUnavailable(str(exc))
                    # On SQLITE_FULL (and IOERR, NOMEM) SQLite may roll the whole transaction
                    # back by itself: the jobs before this one are undone too, and the ones
                    # after it would run outside any transaction. Start again without it.
                    if conn.total_changes != before or not conn.in_transaction:
                        undo = pending
                        failed.append((pending, None, exc))
                        break
                    done.append((pending, None, exc))
                else:
                    done.append((pending, result, None))
            if undo is None:
                break
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            todo.remove(undo)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("commit failed: %s", exc)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            error = DatabaseUnavailable(f"commit failed: {exc}")
            done = [(p, None, err or error) for p, _, err in done]
        self.batches += 1
        self.jobs += len(batch)
        answer(failed + done)
