"""The group-commit writer both SQL engines share: one writer thread, one transaction per batch.

A statement-per-call async driver costs two thread hops per statement and caps the shop at a few
thousand orders per second (DESIGN.md). Here every write is a plain function of a connection. The
writer thread drains everything queued, runs the jobs in one transaction, commits once, then
answers every waiting coroutine. How a batch runs (locks, retries, undoing one failed job) is the
engine's: ``GroupCommitDatabase._run_batch``.

An engine whose commit is a local call (SQLite) may also write **on the event loop**: the
requests' writes of one loop tick run as one transaction at the end of the tick, with no thread
hop at all (``_try_inline``). Under a sale's load the hops cost more than the writes: each one a
wake-up, a GIL hand-over and a scheduler switch between the writer thread and the loop. When the
connection or the file is busy (the writer thread, another process), the tick's writes join the
writer thread's queue instead, and background work (the bus) always goes there.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BATCH = 512
_STOP = object()
CHECKPOINT = object()  # queued by the loop's commits: the writer thread checkpoints off the loop
# Set in background work (the bus's dispatcher and its deliveries): their writes do not count in
# ``backlog``, the figure background work uses to yield to requests; counted, they would make the
# bus yield to its own writes while it drains.
BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar("miri_background", default=False)


class DatabaseUnavailable(Exception):
    """The database could not complete the work (disk full, locked too long, closed, gone)."""


class Pending:
    """One job waiting for the writer, and the coroutine waiting for its answer."""

    __slots__ = ("fn", "future", "loop", "weight")

    def __init__(
        self,
        fn: Callable[[Any], Any],
        future: asyncio.Future,
        loop: asyncio.AbstractEventLoop,
        weight: int,
    ) -> None:
        self.fn = fn
        self.future = future
        self.loop = loop
        self.weight = weight  # 1 for a request's job, 0 for background work (see BACKGROUND)


Answer = tuple[Pending, Any, BaseException | None]


def answer_all(answers: list[Answer]) -> None:
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
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def answer_here(answers: list[Answer]) -> None:
    """``answer_all`` for a batch run on the event loop that waits for it."""
    _settle_many([(p.future, result, error) for p, result, error in answers])


class GroupCommitDatabase:
    """``write`` runs jobs batched in one writer thread, ``read`` in a small reader pool.

    An engine subclasses it with ``_run_batch`` (one transaction for the batch, answering every
    job), ``_run_read`` (on a per-thread connection it adds to ``_reader_conns``),
    ``_after_failed_batch`` and ``_close_writer``, and calls ``_start`` last in its ``__init__``.
    """

    engine = ""
    inline = False  # the engine can run a tick's writes on the loop (``_try_inline``)

    def _start(self, readers: int, name: str) -> None:
        self._local = threading.local()  # each reader thread's own connection
        self._reader_conns: list[Any] = []
        self._conns_lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._handed = 0  # foreground jobs put on the queue (by any thread's event loop) ...
        self._handed_lock = threading.Lock()
        self._taken = 0  # ... and those the writer took off it (the writer alone adds here)
        self._in_batch = 0
        self._closed = False
        self._conn_lock = threading.Lock()  # the writer's connection: the thread or the loop
        self._tick: list[Pending] = []  # requests' writes waiting for the end of this tick ...
        self._tick_loop: asyncio.AbstractEventLoop | None = None  # ... of this loop
        self.batches = 0
        self.jobs = 0
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix=f"{name}-reader")
        self._writer = threading.Thread(target=self._write_loop, name=f"{name}-writer")
        self._writer.start()

    # -- public -------------------------------------------------------------------------------
    async def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` inside the writer's next transaction; all-or-nothing for that job."""
        if self._closed:
            raise DatabaseUnavailable("the database is closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        pending = Pending(fn, future, loop, 0 if BACKGROUND.get() else 1)
        if pending.weight:
            # Loops in several threads may write (the CLI, tests): a lost increment would
            # skew the backlog for good, and the bus would keep yielding to nobody.
            with self._handed_lock:
                self._handed += 1
                # Only requests' writes (the bus's batches would hold the loop for
                # milliseconds), and one loop's per tick: another thread's loop writing
                # meanwhile goes through the writer thread.
                inline = self.inline and (not self._tick or self._tick_loop is loop)
                if inline:
                    self._tick.append(pending)
                    first = len(self._tick) == 1
                    if first:
                        self._tick_loop = loop
            if inline:
                if first:
                    loop.call_soon(self._flush_tick)
                return await future
        self._queue.put(pending)
        return await future

    def _flush_tick(self) -> None:
        """The end of a loop tick: its requests' writes in one transaction, here if the
        connection and the file are free, else in the writer thread's next batch."""
        with self._handed_lock:
            batch, self._tick = self._tick, []
        if not batch:
            return
        if self._closed:
            error = DatabaseUnavailable("the database is closed")
            answer_here([(p, None, error) for p in batch])
            return
        if not self._conn_lock.acquire(blocking=False):
            for pending in batch:
                self._queue.put(pending)
            return
        try:
            weight = len(batch)
            with self._handed_lock:
                self._taken += weight
            self._in_batch = weight
            try:
                if self._try_inline(batch):
                    return
            except BaseException as exc:  # noqa: BLE001 - as the writer thread's failures
                log.exception("writer batch failed")
                self._after_failed_batch()
                error = DatabaseUnavailable(f"the write failed: {exc}")
                answer_here([(p, None, error) for p in batch])
                return
            finally:
                self._in_batch = 0
            with self._handed_lock:
                self._taken -= weight  # the writer thread takes (and counts) them
        finally:
            self._conn_lock.release()
        for pending in batch:
            self._queue.put(pending)

    @property
    def backlog(self) -> int:
        """Requests whose writes are queued or being written (how busy the writer is with
        foreground work; background writes are not counted)."""
        return self._handed - self._taken + self._in_batch

    @property
    def written(self) -> int:
        """Requests' writes the writer has taken so far (background writes not counted)."""
        return self._taken

    async def read(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` on a read-only connection in the reader pool."""
        if self._closed:
            raise DatabaseUnavailable("the database is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    async def close(self) -> None:
        if self._closed:
            return
        # This tick's writes first: they were accepted before the close (another loop's are
        # answered by the writer thread, which drains its queue before it stops).
        if self._tick_loop is asyncio.get_running_loop():
            self._flush_tick()
        else:
            with self._handed_lock:
                batch, self._tick = self._tick, []
            for pending in batch:
                self._queue.put(pending)
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
        self._readers.shutdown(wait=True)
        with self._conns_lock:
            for conn in self._reader_conns:
                conn.close()
        self._close_writer()

    # -- the engine's part --------------------------------------------------------------------
    def _run_batch(self, batch: list[Pending]) -> None:
        raise NotImplementedError

    def _run_read(self, fn: Callable[[Any], T]) -> T:
        raise NotImplementedError

    def _try_inline(self, batch: list[Pending]) -> bool:
        """Run ``batch`` on the loop and answer it, unless the file is busy (then False and
        nothing was done). Only for an engine with ``inline``."""
        raise NotImplementedError

    def _checkpoint(self) -> None:
        """Work the writer thread does between batches now and then (SQLite's checkpoint)."""

    def _after_failed_batch(self) -> None:
        """Leave the writer's connection ready for the next batch."""

    def _close_writer(self) -> None:
        raise NotImplementedError

    # -- the writer thread --------------------------------------------------------------------
    def _write_loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            if first is CHECKPOINT:
                self._checkpoint()  # on a connection of its own: writers go on meanwhile
                continue
            batch = [first]
            checkpoint = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                if item is CHECKPOINT:
                    checkpoint = True
                else:
                    batch.append(item)
            weight = sum(p.weight for p in batch)
            with self._conn_lock:
                self._in_batch = weight
                with self._handed_lock:
                    self._taken += weight
                try:
                    self._run_batch(batch)
                except BaseException as exc:  # noqa: BLE001 - the writer thread must never die
                    log.exception("writer batch failed")
                    self._after_failed_batch()
                    error = DatabaseUnavailable(f"the write failed: {exc}")
                    answer_all([(p, None, error) for p in batch])
                self._in_batch = 0
            if checkpoint:
                self._checkpoint()
