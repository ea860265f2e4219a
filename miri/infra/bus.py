"""The event bus: a transactional outbox in SQLite and an asyncio dispatcher.

Publishing is ``bus.record(conn, event)`` inside the ``db.write`` job that makes the change, so the
event exists exactly when the change does: one ``outbox`` row, plus one ``deliveries`` row per
consumer subscribed to its type (each consumer is its own Kafka group, as it were). After commit
``bus.notify()`` wakes the dispatcher, which otherwise polls every half second for rows written by
other processes.

Delivery is at least once. A consumer makes the effect exactly once by calling
``Bus.first_time(conn, consumer, event_id)`` inside its own write job and doing nothing when it
returns False; since the job is all-or-nothing, a handler that fails half-way leaves no mark.

Claims are atomic across processes sharing the file: the claim is one ``UPDATE ... RETURNING`` in
the writer's ``BEGIN IMMEDIATE`` transaction that stamps ``claimed_by``/``claimed_until`` (a lease)
and pushes ``next_attempt_at`` to the end of the lease, so the due-index skips claimed rows and a
crashed worker's rows fall due again when its lease ends (sooner when the worker is known dead: a
process on this host whose pid is gone). Completions only apply while the completing worker still
holds that very lease. Claims and completions are batched: one write job per dispatcher cycle,
and the group-commit writer puts that job into the same transaction as whatever else is queued.

Bus timing is wall time (``time.time``), never the shop's injectable clock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from miri.config import Settings
from miri.domain.events import Event
from miri.infra.metrics import ShopMetrics
from miri.infra.sqlite import BACKGROUND, Database

log = logging.getLogger(__name__)

Handler = Callable[[Event], Awaitable[None]]

POLL_INTERVAL = 0.5  # seconds between looks for rows written by other processes
BUSY_BACKLOG = 64  # requests waiting on the writer: above this, deliveries hold back
BUSY_CLAIMS = 16  # deliveries claimed per BUSY_SLICE while the writer is that busy
BUSY_SLICE = 0.25  # seconds
REAP_INTERVAL = 10.0  # seconds between looks for claims held by dead processes
GAUGE_INTERVAL = 1.0  # seconds between metric gauge refreshes while busy
ERROR_LIMIT = 2000  # characters of a handler's error kept in last_error

_CLAIM_SQL = """
UPDATE deliveries
   SET claimed_by = ?, claimed_until = ?, next_attempt_at = ?
 WHERE rowid IN (
       SELECT rowid FROM deliveries
        WHERE status = 'PENDING' AND next_attempt_at <= ?
          AND consumer IN (SELECT value FROM json_each(?))
        ORDER BY next_attempt_at
        LIMIT ?)
RETURNING event_id, consumer, attempts
"""
_DONE_SQL = """
UPDATE deliveries
   SET status = 'DONE', claimed_by = NULL, claimed_until = NULL, updated_at = ?
 WHERE event_id = ? AND consumer = ? AND status = 'PENDING'
   AND claimed_by = ? AND claimed_until = ?
"""
_FAILED_SQL = """
UPDATE deliveries
   SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?,
       claimed_by = NULL, claimed_until = NULL, updated_at = ?
 WHERE event_id = ? AND consumer = ? AND status = 'PENDING'
   AND claimed_by = ? AND claimed_until = ?
"""
_RELEASE_SQL = """
UPDATE deliveries
   SET claimed_by = NULL, claimed_until = NULL, next_attempt_at = ?, updated_at = ?
 WHERE claimed_by = ? AND status = 'PENDING'
"""


@dataclass(slots=True)
class _Claim:
    event_id: str
    consumer: str
    attempts: int
    until: float  # the lease this worker holds; completions must match it
    type_name: str
    event: Event | None
    error: str | None  # the event could not be read back (unknown type, bad payload)


# Worker ids of the buses made in this process: a claim stamped with our pid but none of these ids
# was left by an earlier process that had the same pid (a restarted container's pid 1).
_OUR_WORKERS: set[str] = set()


def default_worker_id() -> str:
    """``host:pid:random``: unique per Bus, and tells a later process whether the owner died."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_is_dead(worker_id: str) -> bool:
    """True only when ``worker_id`` names a process on this host that no longer exists."""
    parts = worker_id.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return worker_id not in _OUR_WORKERS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but not ours (EPERM), or the platform cannot tell
        return False
    return False


class Bus:
    """Transactional outbox + dispatcher. See the module docstring for the guarantees."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        metrics: ShopMetrics | None = None,
        worker_id: str | None = None,
        *,
        max_in_flight: int = 128,
        handler_timeout: float = 30.0,
        lease: float = 60.0,
        stop_grace: float = 10.0,
    ) -> None:
        self.db = db
        self.settings = settings
        self.metrics = metrics
        self.worker_id = worker_id or default_worker_id()
        _OUR_WORKERS.add(self.worker_id)
        self.max_in_flight = max_in_flight
        self._busy_claimed_at = 0.0  # when deliveries were last let through a busy writer
        self.handler_timeout = handler_timeout
        # A lease must outlive the handler, or a slow run could be claimed again elsewhere.
        self.lease = max(lease, handler_timeout * 2)
        self.stop_grace = stop_grace
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._consumers_by_type: dict[str, list[str]] = {}
        self._consumers_json = "[]"
        self._kick: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._pump_task: asyncio.Task | None = None
        self._pump_stop: asyncio.Event | None = None
        self._started = False
        self._tasks: set[asyncio.Task] = set()
        self._outcomes: list[tuple[_Claim, str | None]] = []
        self._gauges_at = 0.0
        self.delivered = 0  # handler runs that succeeded in this process
        self.failed = 0  # handler runs that raised in this process

    # -- publishing -----------------------------------------------------------------------------
    def subscribe(self, consumer: str, event_type: type[Event], handler: Handler) -> None:
        """``consumer`` (a module name) handles every ``event_type`` recorded from now on."""
        key = (consumer, event_type.name)
        if key in self._handlers:
            raise ValueError(f"{consumer} already handles {event_type.name}")
        self._handlers[key] = handler
        self._consumers_by_type.setdefault(event_type.name, []).append(consumer)
        consumers = sorted({c for c, _ in self._handlers})
        self._consumers_json = orjson.dumps(consumers).decode()
        self.notify()  # deliveries already waiting for this consumer are now deliverable

    @property
    def consumers(self) -> list[str]:
        return sorted({c for c, _ in self._handlers})

    def record(self, conn: sqlite3.Connection, event: Event) -> None:
        """Write ``event`` to the outbox inside the caller's write job (same transaction)."""
        now = time.time()
        conn.execute(
            "INSERT INTO outbox (event_id, type, payload, created_at) VALUES (?, ?, ?, ?)",
            (event.event_id, event.name, event.to_json(), now),
        )
        consumers = self._consumers_by_type.get(event.name)
        if consumers:
            conn.executemany(
                "INSERT INTO deliveries (event_id, consumer, status, attempts, next_attempt_at,"
                " updated_at) VALUES (?, ?, 'PENDING', 0, ?, ?)",
                [(event.event_id, consumer, now, now) for consumer in consumers],
            )

    def notify(self) -> None:
        """Wake the dispatcher now (call after the write that recorded events has committed)."""
        if self._kick is not None:
            self._kick.set()

    @staticmethod
    def first_time(conn: sqlite3.Connection, consumer: str, event_id: str) -> bool:
        """Mark ``event_id`` handled by ``consumer``; False when it already was (a repeat)."""
        cur = conn.execute(
            "INSERT OR IGNORE INTO handled_events (consumer, event_id, handled_at)"
            " VALUES (?, ?, ?)",
            (consumer, event_id, time.time()),
        )
        return cur.rowcount == 1

    # -- running ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the dispatcher (the server). Rows left pending by a crash are delivered."""
        self._started = True
        if self._pump_task is None or self._pump_task.done():
            self._start_pump()

    async def stop(self) -> None:
        """Let in-flight handlers finish (up to ``stop_grace``), record outcomes, release claims."""
        self._started = False
        await self._stop_pump()

    async def drain(self, timeout: float = 30.0) -> bool:
        """Deliver until nothing is pending for this bus's consumers; True when that happened.

        Works with or without ``start()``: without it, a dispatcher runs for the duration of the
        call. Rows claimed by other live workers, or waiting out a retry back-off, count as
        pending, so this waits for them too (up to ``timeout``).
        """
        deadline = time.monotonic() + timeout
        owned = False
        try:
            while True:
                if self._pump_task is None or self._pump_task.done():
                    self._start_pump()
                    owned = True
                assert self._idle is not None
                if self._idle.is_set() and await self._pending_for_mine() == 0:
                    return True
                self._idle.clear()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return await self._pending_for_mine() == 0
                try:
                    await asyncio.wait_for(self._idle.wait(), min(remaining, POLL_INTERVAL))
                except TimeoutError:
                    pass
        finally:
            if owned and not self._started:
                await self._stop_pump()

    # -- operator views -----------------------------------------------------------------------
    async def counts(self) -> dict[str, int]:
        """``{"pending", "deadLetters"}`` over every consumer (cheap: reads the status index)."""

        def query(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT status, COUNT(*) FROM deliveries WHERE status IN ('PENDING', 'DEAD')"
                " GROUP BY status"
            ).fetchall()
            found = {row[0]: row[1] for row in rows}
            return {"pending": found.get("PENDING", 0), "deadLetters": found.get("DEAD", 0)}

        figures = await self.db.read(query)
        self._set_gauges(figures)
        return figures

    async def status(self) -> dict[str, Any]:
        """Totals and per-consumer figures: pending, dead letters, delivered (done)."""

        def query(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                "SELECT consumer, status, COUNT(*) AS n FROM deliveries GROUP BY consumer, status"
            ).fetchall()

        rows = await self.db.read(query)
        consumers: dict[str, dict[str, int]] = {
            name: {"pending": 0, "dead": 0, "done": 0} for name in self.consumers
        }
        key = {"PENDING": "pending", "DEAD": "dead", "DONE": "done"}
        for row in rows:
            consumers.setdefault(row["consumer"], {"pending": 0, "dead": 0, "done": 0})
            consumers[row["consumer"]][key[row["status"]]] += row["n"]
        result = {
            "pending": sum(c["pending"] for c in consumers.values()),
            "deadLetters": sum(c["dead"] for c in consumers.values()),
            "delivered": sum(c["done"] for c in consumers.values()),
            "consumers": dict(sorted(consumers.items())),
        }
        self._set_gauges(result)
        return result

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead-lettered deliveries, with the event and the last error."""

        def query(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                "SELECT d.event_id, d.consumer, d.attempts, d.last_error, d.updated_at,"
                " o.type, o.payload, o.created_at FROM deliveries d"
                " JOIN outbox o ON o.event_id = d.event_id"
                " WHERE d.status = 'DEAD' ORDER BY d.updated_at DESC, d.rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()

        rows = await self.db.read(query)
        return [
            {
                "eventId": row["event_id"],
                "type": row["type"],
                "consumer": row["consumer"],
                "attempts": row["attempts"],
                "lastError": row["last_error"],
                "failedAt": row["updated_at"],
                "createdAt": row["created_at"],
                "payload": orjson.loads(row["payload"]),
            }
            for row in rows
        ]

    async def replay(self, event_id: str | None = None) -> int:
        """DEAD → PENDING for one event (every consumer of it) or all; attempts reset."""

        def job(conn: sqlite3.Connection) -> int:
            now = time.time()
            sql = (
                "UPDATE deliveries SET status = 'PENDING', attempts = 0, next_attempt_at = ?,"
                " claimed_by = NULL, claimed_until = NULL, updated_at = ? WHERE status = 'DEAD'"
            )
            params: tuple[Any, ...] = (now, now)
            if event_id is not None:
                sql += " AND event_id = ?"
                params += (event_id,)
            return conn.execute(sql, params).rowcount

        count = await self.db.write(job)
        if count:
            self.notify()
        return count

    # -- the dispatcher -----------------------------------------------------------------------
    def _start_pump(self) -> None:
        self._kick = self._kick or asyncio.Event()
        self._idle = asyncio.Event()
        self._pump_stop = asyncio.Event()
        self._pump_task = asyncio.create_task(self._pump(self._pump_stop), name="miri-bus")

    async def _stop_pump(self) -> None:
        task, stop = self._pump_task, self._pump_stop
        if task is None or stop is None:
            return
        stop.set()
        self.notify()
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            log.error("bus dispatcher ended with an error", exc_info=task.exception())
        if self._pump_task is task:
            self._pump_task = None

    async def _pump(self, stopping: asyncio.Event) -> None:
        assert self._kick is not None and self._idle is not None
        kick, idle = self._kick, self._idle
        BACKGROUND.set(True)  # this task's writes and its deliveries' (they copy the context)
        reaped_at = 0.0
        failures = 0
        try:
            while not stopping.is_set():
                try:
                    if time.time() - reaped_at >= REAP_INTERVAL:
                        reaped_at = time.time()
                        await self._reap_dead_workers()
                    kick.clear()
                    wait = await self._cycle(idle)
                    failures = 0
                except Exception as exc:  # noqa: BLE001 - the dispatcher outlives a bad tick
                    failures += 1
                    log.warning("bus tick failed (%s); retrying", exc)
                    await self._sleep(stopping, min(5.0, 0.05 * 2**failures))
                    continue
                await self._refresh_gauges()
                if stopping.is_set():
                    break
                if not kick.is_set():
                    try:
                        await asyncio.wait_for(kick.wait(), wait)
                    except TimeoutError:
                        pass
        finally:
            await self._shutdown()
            idle.set()

    async def _cycle(self, idle: asyncio.Event) -> float:
        """One write: record finished deliveries, claim due ones and start their handlers.

        Returns how long to sleep unless kicked (a completion, ``notify``, ``subscribe``).
        """
        outcomes, self._outcomes = self._outcomes, []
        room = self.max_in_flight - len(self._tasks)
        if self.db.backlog > BUSY_BACKLOG:
            # The writer is saturated (a sale is on): deliveries run behind the answers, so
            # they yield to the order path — a trickle keeps them moving — and catch up when
            # the rush is over. (Measured in-process: ~3,950 → ~4,200–4,900 orders/s.)
            now = time.monotonic()
            if now - self._busy_claimed_at >= BUSY_SLICE:
                self._busy_claimed_at = now
                room = min(room, BUSY_CLAIMS)
            else:
                room = 0
        limit = room if self._handlers else 0
        if not outcomes and limit <= 0:
            if not self._tasks:
                idle.set()
            return POLL_INTERVAL
        try:
            claims, next_due = await self.db.write(
                lambda conn: self._settle_and_claim(conn, outcomes, limit)
            )
        except BaseException:
            self._outcomes = outcomes + self._outcomes  # recorded by a later tick
            raise
        for claim in claims:
            task = asyncio.create_task(self._deliver(claim))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not claims and not self._tasks and not self._outcomes:
            idle.set()
        if next_due is not None:  # nothing more due now: sleep until the next retry is
            return min(POLL_INTERVAL, max(0.005, next_due - time.time()))
        return POLL_INTERVAL

    async def _sleep(self, stopping: asyncio.Event, seconds: float) -> None:
        try:
            await asyncio.wait_for(stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _shutdown(self) -> None:
        """Give in-flight handlers a bounded time, record their outcomes, release the rest."""
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=self.stop_grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)
        outcomes, self._outcomes = self._outcomes, []

        def job(conn: sqlite3.Connection) -> None:
            self._settle_and_claim(conn, outcomes, 0)
            now = time.time()
            conn.execute(_RELEASE_SQL, (now, now, self.worker_id))

        try:
            await self.db.write(job)
        except Exception as exc:  # noqa: BLE001 - leases end by themselves; this only hurries them
            log.warning("bus could not release its claims on stop: %s", exc)

    async def _deliver(self, claim: _Claim) -> None:
        error: str | None = claim.error
        if error is None:
            handler = self._handlers.get((claim.consumer, claim.type_name))
            if handler is None:
                error = f"no handler in {claim.consumer} for {claim.type_name}"
            else:
                limit = asyncio.timeout(self.handler_timeout)
                try:
                    async with limit:
                        await handler(claim.event)  # type: ignore[arg-type]
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is None or current.cancelling():
                        raise  # stop() is cutting us short: the claim is released, not failed
                    error = "CancelledError: the handler was cancelled"
                except Exception as exc:  # noqa: BLE001 - a failing handler is retried, not fatal
                    error = f"{exc.__class__.__name__}: {exc}"[:ERROR_LIMIT]
                    if limit.expired():
                        error = f"timed out after {self.handler_timeout:g} s"
        if error is None:
            self.delivered += 1
        else:
            self.failed += 1
            log.warning(
                "bus: %s failed on %s %s (attempt %d): %s",
                claim.consumer,
                claim.type_name,
                claim.event_id,
                claim.attempts + 1,
                error,
            )
        self._outcomes.append((claim, error))
        # Free this delivery's room before waking the pump: the task's done callback runs only
        # after the pump's wake-up, and a pump that saw no room slept a whole poll interval
        # with nothing left to kick it (drains ran at ~256 deliveries/s).
        current = asyncio.current_task()
        if current is not None:
            self._tasks.discard(current)
        if self._kick is not None:
            self._kick.set()

    def _settle_and_claim(
        self, conn: sqlite3.Connection, outcomes: list[tuple[_Claim, str | None]], limit: int
    ) -> tuple[list[_Claim], float | None]:
        """In the writer: record outcomes, then claim up to ``limit`` due deliveries."""
        now = time.time()
        done = []
        failed = []
        max_attempts = self.settings.bus_max_attempts
        base = self.settings.bus_retry_base
        for claim, error in outcomes:
            key = (claim.event_id, claim.consumer, self.worker_id, claim.until)
            if error is None:
                done.append((now, *key))
            else:
                attempts = claim.attempts + 1
                status = "DEAD" if attempts >= max_attempts else "PENDING"
                next_at = now + base * 2 ** (attempts - 1)
                failed.append((status, attempts, next_at, error, now, *key))
        if done:
            conn.executemany(_DONE_SQL, done)
        if failed:
            conn.executemany(_FAILED_SQL, failed)
        if limit <= 0:
            return [], None
        until = now + self.lease
        rows = conn.execute(
            _CLAIM_SQL, (self.worker_id, until, until, now, self._consumers_json, limit)
        ).fetchall()
        claims: list[_Claim] = []
        if rows:
            ids = orjson.dumps(list({row[0] for row in rows})).decode()
            events = {
                row[0]: (row[1], row[2])
                for row in conn.execute(
                    "SELECT event_id, type, payload FROM outbox"
                    " WHERE event_id IN (SELECT value FROM json_each(?))",
                    (ids,),
                )
            }
            parsed: dict[str, tuple[str, Event | None, str | None]] = {}
            for event_id, (type_name, payload) in events.items():
                try:
                    parsed[event_id] = (type_name, Event.from_json(type_name, payload), None)
                except Exception as exc:  # noqa: BLE001 - becomes the delivery's error
                    parsed[event_id] = (type_name, None, f"unreadable event: {exc!r}")
            for event_id, consumer, attempts in rows:
                type_name, event, error = parsed.get(
                    event_id, ("?", None, "the outbox row is missing")
                )
                claims.append(_Claim(event_id, consumer, attempts, until, type_name, event, error))
        next_due = None
        if len(claims) < limit:
            row = conn.execute(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'PENDING'"
                " AND consumer IN (SELECT value FROM json_each(?))",
                (self._consumers_json,),
            ).fetchone()
            next_due = row[0]
        return claims, next_due

    async def _pending_for_mine(self) -> int:
        consumers = self._consumers_json

        def query(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "SELECT COUNT(*) FROM deliveries WHERE status = 'PENDING'"
                " AND consumer IN (SELECT value FROM json_each(?))",
                (consumers,),
            ).fetchone()[0]

        return await self.db.read(query)

    async def _reap_dead_workers(self) -> None:
        """Release claims of processes on this host that died holding them (SIGKILL, crash)."""

        def holders(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT DISTINCT claimed_by FROM deliveries"
                " WHERE status = 'PENDING' AND claimed_by IS NOT NULL"
            ).fetchall()
            return [row[0] for row in rows]

        try:
            dead = [w for w in await self.db.read(holders) if _owner_is_dead(w)]
            if not dead:
                return

            def job(conn: sqlite3.Connection) -> int:
                now = time.time()
                return sum(
                    conn.execute(_RELEASE_SQL, (now, now, worker)).rowcount for worker in dead
                )

            released = await self.db.write(job)
            if released:
                log.info("bus: released %d deliveries claimed by dead workers", released)
        except Exception as exc:  # noqa: BLE001 - the leases expire anyway
            log.warning("bus: could not check for dead workers: %s", exc)

    async def _refresh_gauges(self) -> None:
        if self.metrics is None or time.monotonic() - self._gauges_at < GAUGE_INTERVAL:
            return
        self._gauges_at = time.monotonic()
        try:
            await self.counts()
        except Exception as exc:  # noqa: BLE001 - metrics are best effort
            log.debug("bus gauges not refreshed: %s", exc)

    def _set_gauges(self, figures: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.bus_pending.set(figures["pending"])
            self.metrics.bus_dead.set(figures["deadLetters"])
