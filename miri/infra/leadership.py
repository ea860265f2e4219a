"""Who runs the scheduled jobs when several processes or hosts serve one shop: exactly one.

The daily shipping and returns runs, payment expiry and the stock write-back must run once per
shop, not once per process. Leadership is a lock the engine already offers and frees by itself
when its holder dies:

- the SQLite file: an exclusive ``flock`` on ``run/jobs.lock`` in the data dir; the kernel drops
  it when the process ends, however it ends;
- PostgreSQL: a session advisory lock held on a connection of its own; PostgreSQL drops it when
  that session ends (a killed host's connection closes; a vanished machine's is found dead by
  TCP keepalives, set on both ends of the session, within about half a minute).

Processes that are not the leader try again every ``retry`` seconds, so another takes over
within seconds of the leader's death.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
JOBS_LOCK = 0x6A6F6273  # "jobs": the advisory lock's first key (the schema is the second)
RETRY = 5.0
# Find a dead peer's session quickly: the lock must not outlive its holder by long.
KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
SERVER_KEEPALIVE = (
    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3"
)


class FileLease:
    """Leadership among the processes of one data dir (the SQLite engine)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def still_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class AdvisoryLease:
    """Leadership among every host of one shop (one schema of a PostgreSQL database)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: Any = None

    def try_acquire(self) -> bool:
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return True
        try:
            conn = psycopg.connect(self._url, autocommit=True, **KEEPALIVE)
            # The server must find a vanished holder too, or the lock outlives it by the OS's
            # default (two hours): the same keepalives on the server's end of this session.
            conn.execute(SERVER_KEEPALIVE)
            # Keyed by schema too: shops in several schemas of one database lead apart.
            got = conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", (JOBS_LOCK,)
            ).fetchone()[0]
        except psycopg.Error as exc:
            log.warning("cannot ask PostgreSQL for the jobs lock: %s", exc)
            return False
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def still_held(self) -> bool:
        """The session that holds the lock is still alive (else PostgreSQL has dropped it)."""
        import psycopg

        if self._conn is None or self._conn.closed:
            return False
        try:
            self._conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            self._conn.close()
            self._conn = None
            return False

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # ending the session drops the lock
            self._conn = None


Lease = FileLease | AdvisoryLease


def lease_for(database_url: str | None, data_dir: Path) -> Lease:
    if database_url:
        return AdvisoryLease(database_url)
    return FileLease(data_dir / "run" / "jobs.lock")


class Leadership:
    """Runs ``start`` when this process becomes the leader and ``stop`` when it stops being one."""

    def __init__(
        self,
        lease: Lease,
        start: Callable[[], Any],
        stop: Callable[[], Awaitable[Any]],
        retry: float = RETRY,
    ) -> None:
        self._lease = lease
        self._start = start
        self._stop = stop
        self._retry = retry
        self.leading = False
        self._task: asyncio.Task | None = None

    async def begin(self) -> None:
        """Try once now (so a lone server leads from its first second), then keep watching."""
        await self._step()
        self._task = asyncio.create_task(self._watch(), name="miri-leadership")

    async def _step(self) -> None:
        if self.leading:
            if not await asyncio.to_thread(self._lease.still_held):
                log.warning("lost the jobs lock; another process will run the jobs")
                self.leading = False
                await self._stop()
            return
        if await asyncio.to_thread(self._lease.try_acquire):
            log.info("this process runs the scheduled jobs")
            self.leading = True
            self._start()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._retry)
            try:
                await self._step()
            except Exception:  # noqa: BLE001 - try again at the next look
                log.exception("leadership check failed")

    async def end(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.leading:
            self.leading = False
            await self._stop()
        await asyncio.to_thread(self._lease.release)
