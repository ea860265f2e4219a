"""SQLite: WAL, versioned migrations, one group-commit writer thread and a small reader pool.

A statement-per-call async driver costs two thread hops per statement and caps the shop at a few
thousand orders per second (DESIGN.md). Here every write is a plain function of a sqlite3
connection. The writer thread drains everything queued, runs the jobs in one transaction, commits
once, then answers every waiting coroutine: one commit per batch, and a failing job is undone
alone (see ``_run_batch``). Writers in several processes take turns through a lock file.
"""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from miri.infra.schema import MIGRATIONS

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]

MAX_BATCH = 512
_STOP = object()
# Set in background work (the bus's dispatcher and its deliveries): their writes do not count in
# ``Database.backlog``, the figure background work uses to yield to requests; counted, they would
# make the bus yield to its own writes while it drains.
BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar("miri_background", default=False)


class DatabaseUnavailable(Exception):
    """The database could not complete the work (disk full, locked too long, closed)."""


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


class _Pending:
    __slots__ = ("fn", "future", "loop", "weight")

    def __init__(
        self, fn: Job, future: asyncio.Future, loop: asyncio.AbstractEventLoop, weight: int
    ) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop
        self.weight = weight  # 1 for a request's job, 0 for background work (see BACKGROUND)


def _answer_all(answers: list[tuple[_Pending, Any, BaseException | None]]) -> None:
    """One wake-up per event loop per batch, not one per job: every wake-up costs the writer
    a self-pipe write and the loop a turn holding the GIL the writer is waiting for."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any, Any]]] = {}
    for pending, result, error in answers:
        by_loop.setdefault(pending.loop, []).append((pending.future, result, error))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_many, items)
        except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
            pass


def _settle_many(items: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    for future, result, error in items:
        _settle(future, result, error)


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Database:
    """The shop's SQLite file: ``write`` runs jobs batched in the writer, ``read`` in a pool."""

    engine = "sqlite"

    def __init__(self, path: Path, readers: int = 2) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        bootstrap = connect(path)
        try:
            self.schema_version = migrate(bootstrap)
        finally:
            bootstrap.close()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._handed = 0  # foreground jobs put on the queue (by any thread's event loop) ...
        self._handed_lock = threading.Lock()
        self._taken = 0  # ... and those the writer took off it (the writer alone adds here)
        self._writer = threading.Thread(target=self._write_loop, name="miri-sqlite-writer")
        self._writer_conn = connect(path)
        # Writers in other processes (serve --workers, the CLI) queue on this lock in the
        # kernel instead of in SQLite's busy handler, which sleeps in steps of milliseconds.
        self._lock_fd = os.open(f"{path}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="miri-sqlite-reader")
        self._closed = False
        self.batches = 0
        self._in_batch = 0
        self.jobs = 0
        self._writer.start()

    def describe(self) -> str:
        return str(self.path)

    # -- public -------------------------------------------------------------------------------
    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` inside the writer's next transaction; all-or-nothing for that job."""
        if self._closed:
            raise DatabaseUnavailable("the database is closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        pending = _Pending(fn, future, loop, 0 if BACKGROUND.get() else 1)
        if pending.weight:
            # Loops in several threads may write (the CLI, tests): a lost increment would
            # skew the backlog for good, and the bus would keep yielding to nobody.
            with self._handed_lock:
                self._handed += 1
        self._queue.put(pending)
        return await future

    @property
    def backlog(self) -> int:
        """Requests whose writes are queued or being written (how busy the writer is with
        foreground work; background writes are not counted)."""
        return self._handed - self._taken + self._in_batch

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on a read-only connection in the reader pool."""
        if self._closed:
            raise DatabaseUnavailable("the database is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self._readers.shutdown(wait=True)
        with self._conns_lock:
            for conn in self._reader_conns:
                conn.close()
        self._writer_conn.close()
        os.close(self._lock_fd)

    # -- threads ------------------------------------------------------------------------------
    def _run_read(self, fn: Job) -> Any:
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

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            weight = sum(p.weight for p in batch)
            self._in_batch = weight
            self._taken += weight
            try:
                self._run_batch(batch)
            except BaseException as exc:  # noqa: BLE001 - the writer thread must never die
                log.exception("writer batch failed")
                try:
                    if self._writer_conn.in_transaction:
                        self._writer_conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                error = DatabaseUnavailable(f"the write failed: {exc}")
                _answer_all([(p, None, error) for p in batch])
            self._in_batch = 0

    def _run_batch(self, batch: list[_Pending]) -> None:
        """Run ``batch`` in one transaction; a job that fails after writing is undone alone.

        No SAVEPOINT per job: it more than halves the writer's throughput (measured, see
        benchmarks/README.md). A job that raises before changing a row needs no undo; one that
        raises after writing makes the whole transaction roll back and the other jobs run again
        without it. Jobs are functions of the connection only, so running one again is safe.
        """
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._run_locked(batch)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _run_locked(self, batch: list[_Pending]) -> None:
        conn = self._writer_conn
        todo = list(batch)
        failed: list[tuple[_Pending, Any, BaseException | None]] = []
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                error = DatabaseUnavailable(f"could not start a transaction: {exc}")
                _answer_all(failed + [(p, None, error) for p in todo])
                return
            done: list[tuple[_Pending, Any, BaseException | None]] = []
            undo: _Pending | None = None
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
        _answer_all(failed + done)
