"""The dispatcher: claims due deliveries, runs their handlers, records outcomes, retries, buries.

Claims are atomic across processes sharing the file: a claim is one statement in the writer's
``BEGIN IMMEDIATE`` transaction that stamps the claim's owner and lease (see ``sqlite_store``).
A crashed worker's rows fall due again when its lease ends, sooner when it is known dead (a
process on this host whose pid is gone, see ``owners``). Claims and completions are batched: one
write job per cycle, which the group-commit writer puts into the same transaction as whatever
else is queued. A handler that fails is retried with exponential back-off; after
``bus_max_attempts`` tries its delivery is DEAD (a dead letter) until an operator replays it.

Bus timing is wall time (``time.time``), never the shop's injectable clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import orjson

from miri.config import Settings
from miri.domain.events import Event
from miri.infra.bus import sqlite_store, stores
from miri.infra.bus.owners import owner_is_dead
from miri.infra.bus.subscriptions import Batched, Subscriptions
from miri.infra.database import BACKGROUND, Database

log = logging.getLogger("miri.infra.bus")

POLL_INTERVAL = 0.5  # seconds between looks for rows written by other processes
# A sale is on when requests wait on the writer (BUSY_BACKLOG) or write fast (BUSY_RATE per
# second, in either of the last two slices): deliveries then hold back to BUSY_CLAIMS per
# BUSY_SLICE and catch up after the rush.
BUSY_BACKLOG = 64
BUSY_RATE = 1000
BUSY_CLAIMS = 64
BUSY_SLICE = 0.25  # seconds
BATCH_LIMIT = 512  # events per call of a batched handler: its write stays some milliseconds
REAP_INTERVAL = 10.0  # seconds between looks for claims held by dead processes
ERROR_LIMIT = 2000  # characters of a handler's error kept in last_error


@dataclass(slots=True)
class Claim:
    event_id: str
    consumer: str
    attempts: int
    until: float  # the lease this worker holds; completions must match it
    type_name: str
    event: Event | None
    error: str | None  # the event could not be read back (unknown type, bad payload)


Outcome = tuple[Claim, str | None]  # the claim and its handler's error (None: it succeeded)


class Dispatcher:
    """Delivers the pending rows of one Bus's consumers, as worker ``worker_id``."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        subscriptions: Subscriptions,
        worker_id: str,
        *,
        max_in_flight: int,
        handler_timeout: float,
        lease: float,
        stop_grace: float,
        after_tick: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.db = db
        self.store = stores.for_engine(db.engine)
        self.settings = settings
        self.subscriptions = subscriptions
        self.worker_id = worker_id
        self.max_in_flight = max_in_flight
        self.handler_timeout = handler_timeout
        # A lease must outlive the handler, or a slow run could be claimed again elsewhere.
        self.lease = max(lease, handler_timeout * 2)
        self.stop_grace = stop_grace
        self._after_tick = after_tick
        self._busy_claimed_at = 0.0  # when deliveries were last let through a busy writer
        self._rate_at = 0.0  # when the requests' write rate was last taken ...
        self._rate_written = 0  # ... and the writer's count of their writes then
        self._rush = False  # that rate was a sale's, in this slice or the one before
        self._rush_before = False  # the last slice's rate alone was a sale's
        self._kick: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._pump_task: asyncio.Task | None = None
        self._pump_stop: asyncio.Event | None = None
        self._started = False
        self._tasks: set[asyncio.Task] = set()
        self._held = 0  # deliveries claimed and not yet recorded (a batch holds many)
        self._outcomes: list[Outcome] = []
        self.delivered = 0  # handler runs that succeeded in this process
        self.failed = 0  # handler runs that raised in this process

    @property
    def running(self) -> bool:
        return self._pump_task is not None and not self._pump_task.done()

    def kick(self) -> None:
        """Look for due deliveries now instead of at the next poll."""
        if self._kick is not None:
            self._kick.set()

    def start(self) -> None:
        """Run until ``stop()`` (the server). Rows left pending by a crash are delivered."""
        self._started = True
        if not self.running:
            self._start_pump()

    async def stop(self) -> None:
        """Let in-flight handlers finish (up to ``stop_grace``), record outcomes, release claims."""
        self._started = False
        await self._stop_pump()

    async def drain(self, timeout: float) -> bool:
        """Deliver until nothing is pending for these consumers; True when that happened.

        Works with or without ``start()``: without it, the pump runs for the duration of the
        call. Rows claimed by other live workers, or waiting out a retry back-off, count as
        pending, so this waits for them too (up to ``timeout``).
        """
        deadline = time.monotonic() + timeout
        owned = False
        try:
            while True:
                if not self.running:
                    self._start_pump()
                    owned = True
                assert self._idle is not None
                if self._idle.is_set() and await self._pending() == 0:
                    return True
                self._idle.clear()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return await self._pending() == 0
                try:
                    await asyncio.wait_for(self._idle.wait(), min(remaining, POLL_INTERVAL))
                except TimeoutError:
                    pass
        finally:
            if owned and not self._started:
                await self._stop_pump()

    # -- the pump -------------------------------------------------------------------------------
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
        self.kick()
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
                    await _sleep(stopping, min(5.0, 0.05 * 2**failures))
                    continue
                if self._after_tick is not None:
                    await self._after_tick()
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
        room = self.max_in_flight - self._held
        now = time.monotonic()
        if self._rushing(now) or self.db.backlog > BUSY_BACKLOG:
            # A sale is on: deliveries run behind the answers, so they yield to the order
            # path (a trickle keeps them moving) and catch up, in big batches, after the rush.
            if now - self._busy_claimed_at >= BUSY_SLICE:
                self._busy_claimed_at = now
                room = min(room, BUSY_CLAIMS)
            else:
                room = 0
        limit = room if self.subscriptions else 0
        if not outcomes and limit <= 0:
            if not self._tasks:
                idle.set()
            return POLL_INTERVAL
        try:
            claims, next_due = await self.db.write(
                lambda conn: self.settle_and_claim(conn, outcomes, limit)
            )
        except BaseException:
            self._outcomes = outcomes + self._outcomes  # recorded by a later tick
            raise
        self._held += len(claims)
        for work in self._group(claims):
            task = asyncio.create_task(self._deliver(work))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not claims and not self._tasks and not self._outcomes:
            idle.set()
        if next_due is not None:  # nothing more due now: sleep until the next retry is
            return min(POLL_INTERVAL, max(0.005, next_due - time.time()))
        return POLL_INTERVAL

    def _rushing(self, now: float) -> bool:
        """Whether requests wrote at a sale's rate over either of the last two slices (taken
        once a slice). One slow slice does not end a rush: a big write or a slow commit stalls
        the requests' writes for a slice, and the bus's full batches would then land on the
        writer just when it is behind."""
        if now - self._rate_at >= BUSY_SLICE:
            written = self.db.written
            rate = (written - self._rate_written) / (now - self._rate_at)
            rushing = rate >= BUSY_RATE
            self._rush = rushing or self._rush_before
            self._rush_before = rushing
            self._rate_at, self._rate_written = now, written
        return self._rush

    async def _shutdown(self) -> None:
        """Give in-flight handlers a bounded time, record their outcomes, release the rest."""
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=self.stop_grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)
        outcomes, self._outcomes = self._outcomes, []

        def job(conn: Any) -> None:
            self.settle_and_claim(conn, outcomes, 0)
            self.store.release(conn, self.worker_id, time.time())

        try:
            await self.db.write(job)
        except Exception as exc:  # noqa: BLE001 - leases end by themselves; this only hurries them
            log.warning("bus could not release its claims on stop: %s", exc)

    # -- delivery -------------------------------------------------------------------------------
    def _group(self, claims: list[Claim]) -> list[Claim | list[Claim]]:
        """Each claim on its own, except those a ``Batched`` handler takes together."""
        work: list[Claim | list[Claim]] = []
        batches: dict[tuple[str, str], list[Claim]] = {}
        for claim in claims:
            handler = self.subscriptions.handler(claim.consumer, claim.type_name)
            if claim.error is None and isinstance(handler, Batched):
                batches.setdefault((claim.consumer, claim.type_name), []).append(claim)
            else:
                work.append(claim)
        for batch in batches.values():
            for start in range(0, len(batch), BATCH_LIMIT):
                chunk = batch[start : start + BATCH_LIMIT]
                work.append(chunk[0] if len(chunk) == 1 else chunk)
        return work

    async def _deliver(self, work: Claim | list[Claim]) -> None:
        try:
            if isinstance(work, Claim):
                self._record(work, await self._run(work))
            else:
                await self._deliver_batch(work)
        finally:
            # Free this delivery's room before waking the pump: the task's done callback runs
            # only after the pump's wake-up, and a pump that saw no room would sleep a whole
            # poll interval with nothing left to kick it.
            self._held -= 1 if isinstance(work, Claim) else len(work)
            current = asyncio.current_task()
            if current is not None:
                self._tasks.discard(current)
            self.kick()

    async def _deliver_batch(self, work: list[Claim]) -> None:
        error = await self._run_batch(work)
        if error is None:
            for claim in work:
                self._record(claim, None)
            return
        first = work[0]
        log.info(
            "bus: %s failed a batch of %d %s (%s); delivering them one by one",
            first.consumer,
            len(work),
            first.type_name,
            error,
        )
        for claim in work:  # in order: each event alone, as if never batched
            self._record(claim, await self._run(claim))

    async def _run(self, claim: Claim) -> str | None:
        """Run one claim's handler; its error, or None when it succeeded."""
        if claim.error is not None:
            return claim.error
        handler = self.subscriptions.handler(claim.consumer, claim.type_name)
        if handler is None:
            return f"no handler in {claim.consumer} for {claim.type_name}"
        return await self._call(handler, claim.event)

    async def _run_batch(self, claims: list[Claim]) -> str | None:
        handler = self.subscriptions.handler(claims[0].consumer, claims[0].type_name)
        assert isinstance(handler, Batched)
        return await self._call(handler.many, [claim.event for claim in claims])

    async def _call(self, handler: Callable[[Any], Awaitable[None]], arg: Any) -> str | None:
        limit = asyncio.timeout(self.handler_timeout)
        try:
            async with limit:
                await handler(arg)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is None or current.cancelling():
                raise  # stop() is cutting us short: the claim is released, not failed
            return "CancelledError: the handler was cancelled"
        except Exception as exc:  # noqa: BLE001 - a failing handler is retried, not fatal
            if limit.expired():
                return f"timed out after {self.handler_timeout:g} s"
            return f"{exc.__class__.__name__}: {exc}"[:ERROR_LIMIT]
        return None

    def _record(self, claim: Claim, error: str | None) -> None:
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

    # -- in the writer --------------------------------------------------------------------------
    def settle_and_claim(
        self, conn: Any, outcomes: list[Outcome], limit: int
    ) -> tuple[list[Claim], float | None]:
        """Record ``outcomes``, then claim up to ``limit`` due deliveries (a write job).

        Returns the claims and, when fewer than ``limit`` were due, when the next one falls due.
        """
        now = time.time()
        done: list[sqlite_store.Success] = []
        failed: list[sqlite_store.Failure] = []
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
        self.store.settle(conn, done, failed)
        if limit <= 0:
            return [], None
        until = now + self.lease
        consumers = self.subscriptions.consumers_json
        rows = self.store.claim(conn, self.worker_id, until, now, consumers, limit)
        claims = [
            Claim(event_id, consumer, attempts, until, *event)
            for (event_id, consumer, attempts), event in zip(
                rows, _read_events(self.store, conn, [row[0] for row in rows]), strict=True
            )
        ]
        next_due = self.store.next_due(conn, consumers) if len(claims) < limit else None
        return claims, next_due

    async def _pending(self) -> int:
        consumers = self.subscriptions.consumers_json
        return await self.db.read(lambda conn: self.store.pending(conn, consumers))

    async def _reap_dead_workers(self) -> None:
        """Release claims of processes on this host that died holding them (SIGKILL, crash)."""
        try:
            holders = await self.db.read(self.store.claim_holders)
            dead = [w for w in holders if owner_is_dead(w)]
            if not dead:
                return

            def job(conn: Any) -> int:
                now = time.time()
                return sum(self.store.release(conn, worker, now) for worker in dead)

            released = await self.db.write(job)
            if released:
                log.info("bus: released %d deliveries claimed by dead workers", released)
        except Exception as exc:  # noqa: BLE001 - the leases expire anyway
            log.warning("bus: could not check for dead workers: %s", exc)


def _read_events(
    store: ModuleType, conn: Any, event_ids: list[str]
) -> list[tuple[str, Event | None, str | None]]:
    """``(type, event, error)`` for each id, in order; the error says why an event is unreadable."""
    if not event_ids:
        return []
    stored = store.events(conn, orjson.dumps(list(set(event_ids))).decode())
    parsed: dict[str, tuple[str, Event | None, str | None]] = {}
    for event_id, (type_name, payload) in stored.items():
        try:
            parsed[event_id] = (type_name, Event.from_json(type_name, payload), None)
        except Exception as exc:  # noqa: BLE001 - becomes the delivery's error
            parsed[event_id] = (type_name, None, f"unreadable event: {exc!r}")
    missing = ("?", None, "the outbox row is missing")
    return [parsed.get(event_id, missing) for event_id in event_ids]


async def _sleep(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        pass
