"""The event bus on a real SQLite file and on PostgreSQL: outbox, delivery, retries, dead letters,
workers."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from miri.config import Settings
from miri.domain.events import Event
from miri.infra.bus import Batched, Bus
from miri.infra.bus.dispatcher import BUSY_CLAIMS, BUSY_RATE, BUSY_SLICE, POLL_INTERVAL
from miri.infra.bus.owners import owner_is_dead
from miri.infra.database import Database, open_database
from miri.infra.metrics import ShopMetrics
from miri.shop import open_shop
from tests.support.shop import make_settings

pytestmark = pytest.mark.both_engines


@dataclass(frozen=True, kw_only=True)
class BusTestPing(Event):
    n: int


@dataclass(frozen=True, kw_only=True)
class BusTestPong(Event):
    n: int


@pytest.fixture
def bus_settings(data_dir: Path, database_url: str | None) -> Settings:
    return make_settings(
        data_dir, bus_retry_base=0.01, bus_max_attempts=3, database_url=database_url
    )


@pytest.fixture
async def db(bus_settings: Settings) -> AsyncIterator[Database]:
    database = open_database(bus_settings)
    await database.write(
        lambda c: c.execute(
            "CREATE TABLE IF NOT EXISTS test_effects (consumer TEXT, event_id TEXT, n INTEGER)"
        )
    )
    yield database
    await database.close()


@pytest.fixture
async def bus(db: Database, bus_settings: Settings) -> AsyncIterator[Bus]:
    b = Bus(db, bus_settings, ShopMetrics())
    yield b
    await b.stop()


async def publish(bus: Bus, *events: Event) -> None:
    def job(conn: sqlite3.Connection) -> None:
        for event in events:
            bus.record(conn, event)

    await bus.db.write(job)
    bus.notify()


def effect_handler(
    bus: Bus, consumer: str, calls: Counter, fail_first: int = 0
) -> Callable[[Event], Awaitable[None]]:
    """A consumer doing the house pattern: first_time + effect in one write job."""

    async def handle(event: Event) -> None:
        calls[event.event_id] += 1
        attempt = calls[event.event_id]

        def job(conn: sqlite3.Connection) -> None:
            if not bus.first_time(conn, consumer, event.event_id):
                return
            conn.execute(
                "INSERT INTO test_effects VALUES (?, ?, ?)",
                (consumer, event.event_id, getattr(event, "n", 0)),
            )
            if attempt <= fail_first:
                raise RuntimeError(f"boom {attempt}")  # rolls back the mark and the effect

        await bus.db.write(job)

    return handle


async def effects(db: Database, consumer: str | None = None) -> list[tuple[str, str]]:
    def query(conn: sqlite3.Connection) -> list[tuple[str, str]]:
        rows = conn.execute("SELECT consumer, event_id FROM test_effects").fetchall()
        return [(r[0], r[1]) for r in rows if consumer is None or r[0] == consumer]

    return await db.read(query)


async def rows(db: Database, sql: str, *params: Any) -> list[sqlite3.Row]:
    return await db.read(lambda c: c.execute(sql, params).fetchall())


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_event_of_a_rolled_back_transaction_is_never_delivered(bus: Bus, db: Database):
    calls: Counter = Counter()
    bus.subscribe("audit", BusTestPing, effect_handler(bus, "audit", calls))
    event = BusTestPing(n=1)

    def job(conn: sqlite3.Connection) -> None:
        bus.record(conn, event)
        raise ValueError("the change failed")

    with pytest.raises(ValueError):
        await db.write(job)
    assert await bus.drain(5)
    assert not calls
    assert await rows(db, "SELECT * FROM outbox") == []
    assert await rows(db, "SELECT * FROM deliveries") == []


async def test_delivered_after_commit_to_every_subscriber(bus: Bus, db: Database):
    seen: dict[str, list[Any]] = {"payments": [], "goods": [], "other": []}

    def handler(consumer: str) -> Callable[[Event], Awaitable[None]]:
        async def handle(event: Event) -> None:
            # The change recorded with the event is committed by the time it is delivered.
            found = await rows(db, "SELECT n FROM test_effects WHERE event_id = ?", event.event_id)
            seen[consumer].append((event, [r[0] for r in found]))

        return handle

    bus.subscribe("payments", BusTestPing, handler("payments"))
    bus.subscribe("goods", BusTestPing, handler("goods"))
    bus.subscribe("other", BusTestPong, handler("other"))
    event = BusTestPing(n=7)

    def job(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO test_effects VALUES ('change', ?, 7)", (event.event_id,))
        bus.record(conn, event)

    await db.write(job)
    bus.notify()
    assert await bus.drain(10)
    for consumer in ("payments", "goods"):
        [(got, change)] = seen[consumer]
        assert got == event and isinstance(got, BusTestPing) and change == [7]
    assert seen["other"] == []
    status = await bus.views.status()
    assert status["delivered"] == 2 and status["pending"] == 0
    assert status["consumers"]["payments"] == {"pending": 0, "dead": 0, "done": 1}
    assert status["consumers"]["other"] == {"pending": 0, "dead": 0, "done": 0}


async def test_consumer_failing_twice_then_succeeding_has_one_effect(bus: Bus, db: Database):
    calls: Counter = Counter()
    bus.subscribe("payments", BusTestPing, effect_handler(bus, "payments", calls, fail_first=2))
    event = BusTestPing(n=1)
    await publish(bus, event)
    assert await bus.drain(10)
    assert calls[event.event_id] == 3
    assert await effects(db, "payments") == [("payments", event.event_id)]
    [row] = await rows(db, "SELECT status, attempts, last_error FROM deliveries")
    assert row["status"] == "DONE" and row["attempts"] == 2
    assert "boom 2" in row["last_error"]


async def test_always_failing_handler_is_dead_lettered_then_replayed(bus: Bus, db: Database):
    broken = True
    runs: Counter = Counter()

    async def handle(event: Event) -> None:
        runs[event.event_id] += 1
        if broken:
            raise RuntimeError("gateway down")

    bus.subscribe("payments", BusTestPing, handle)
    event = BusTestPing(n=1)
    await publish(bus, event)
    assert await bus.drain(10)  # nothing pending: it is dead, not waiting
    assert runs[event.event_id] == 3  # bus_max_attempts
    status = await bus.views.status()
    assert status["deadLetters"] == 1 and status["pending"] == 0
    assert bus.metrics is not None and bus.metrics.bus_dead._value.get() == 1
    [dead] = await bus.views.dead_letters()
    assert dead["eventId"] == event.event_id and dead["consumer"] == "payments"
    assert dead["type"] == "BusTestPing" and dead["attempts"] == 3
    assert dead["lastError"] == "RuntimeError: gateway down" and dead["payload"]["n"] == 1

    assert await bus.views.replay("no-such-event") == 0
    broken = False
    assert await bus.views.replay(event.event_id) == 1
    [row] = await rows(db, "SELECT status, attempts FROM deliveries")
    assert (row["status"], row["attempts"]) == ("PENDING", 0)
    assert await bus.drain(10)
    assert runs[event.event_id] == 4
    assert (await bus.views.status())["deadLetters"] == 0 and await bus.views.dead_letters() == []


async def test_a_batched_consumer_takes_a_claim_s_events_in_one_call(bus: Bus, db: Database):
    sizes: list[int] = []
    calls: Counter = Counter()
    one = effect_handler(bus, "payments", calls)

    async def many(events: Sequence[Event]) -> None:
        sizes.append(len(events))

        def job(conn: sqlite3.Connection) -> None:
            for event in events:
                if bus.first_time(conn, "payments", event.event_id):
                    conn.execute(
                        "INSERT INTO test_effects VALUES ('payments', ?, ?)",
                        (event.event_id, event.n),
                    )

        await bus.db.write(job)

    bus.subscribe("payments", BusTestPing, Batched(one, many))
    sent = [BusTestPing(n=i) for i in range(40)]
    await publish(bus, *sent)
    assert await bus.drain(10)
    assert sum(sizes) == 40 and max(sizes) > 1  # claimed together, handled together
    assert calls == Counter()  # never one by one
    assert sorted(e for _, e in await effects(db)) == sorted(e.event_id for e in sent)
    done = await rows(db, "SELECT COUNT(*) FROM deliveries WHERE status = 'DONE'")
    assert done[0][0] == 40


async def test_a_failing_batch_is_delivered_one_by_one(bus: Bus, db: Database):
    """One bad event fails its batch; the others then take effect alone, the bad one is
    retried alone until it is a dead letter."""
    calls: Counter = Counter()
    handle = effect_handler(bus, "payments", calls)
    batches = 0

    async def one(event: Event) -> None:
        if event.n == 3:
            raise RuntimeError("bad event")
        await handle(event)

    async def many(events: Sequence[Event]) -> None:
        nonlocal batches
        batches += 1
        for event in events:
            await one(event)  # effects before the bad one are kept: each is marked once

    bus.subscribe("payments", BusTestPing, Batched(one, many))
    sent = [BusTestPing(n=i) for i in range(10)]
    await publish(bus, *sent)
    assert await bus.drain(10)
    assert batches >= 1
    effected = sorted(e for _, e in await effects(db))
    assert effected == sorted(e.event_id for e in sent if e.n != 3)  # each once
    [dead] = await bus.views.dead_letters()
    assert dead["payload"]["n"] == 3 and dead["attempts"] == 3
    assert dead["lastError"] == "RuntimeError: bad event"
    done = await rows(db, "SELECT COUNT(*) FROM deliveries WHERE status = 'DONE'")
    assert done[0][0] == 9


async def test_deliveries_in_flight_stay_under_the_cap_batched_or_not(
    db: Database, bus_settings: Settings
):
    """``max_in_flight`` counts deliveries, not handler runs: a batch holds as many as it
    has events, and each comes back when its outcome is recorded."""
    bus = Bus(db, bus_settings, max_in_flight=6)
    running = most = 0
    sizes: list[int] = []

    async def slow(event: Event) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1

    async def many(events: Sequence[Event]) -> None:
        sizes.append(len(events))
        await asyncio.sleep(0.01)

    bus.subscribe("single", BusTestPing, slow)
    bus.subscribe("batched", BusTestPong, Batched(slow, many))
    await publish(bus, *(BusTestPing(n=i) for i in range(20)))
    await publish(bus, *(BusTestPong(n=i) for i in range(20)))
    try:
        assert await bus.drain(10)
    finally:
        await bus.stop()
    assert 1 < most <= 6 and max(sizes) <= 6 and sum(sizes) == 20
    assert bus.dispatcher._held == 0
    done = await rows(db, "SELECT COUNT(*) FROM deliveries WHERE status = 'DONE'")
    assert done[0][0] == 40


async def test_deliveries_hold_back_while_requests_write_at_a_sale_s_rate(bus: Bus, db: Database):
    """During a rush the bus trickles (``BUSY_CLAIMS`` per ``BUSY_SLICE``) so the answers get
    the event loop; when the requests stop, it delivers the rest at once."""
    delivered = 0

    async def handle(event: Event) -> None:
        nonlocal delivered
        delivered += 1

    bus.subscribe("payments", BusTestPing, handle)
    await bus.start()
    stop = asyncio.Event()

    async def rush() -> None:  # requests' writes, thousands a second
        while not stop.is_set():
            await asyncio.gather(*(db.write(lambda c: None) for _ in range(50)))

    rushing = asyncio.create_task(rush())
    await asyncio.sleep(2 * POLL_INTERVAL)  # the dispatcher has seen the rate
    started = asyncio.get_running_loop().time()
    await publish(bus, *(BusTestPing(n=i) for i in range(600)))
    await asyncio.sleep(1.0)
    stop.set()
    await rushing
    slices = (asyncio.get_running_loop().time() - started) / BUSY_SLICE
    in_rush = delivered
    assert 0 < in_rush <= BUSY_CLAIMS * (slices + 2)
    assert await bus.drain(10)
    assert delivered == 600


async def test_one_slow_slice_does_not_end_a_rush(bus: Bus, db: Database):
    """A write that stalls the requests' writes for a slice (a big publish, a slow commit on
    PostgreSQL) leaves the bus trickling; two slow slices in a row end the rush."""
    rushing = bus.dispatcher._rushing  # the dispatcher is not started: only these looks count
    start = 1_000_000.0
    assert not rushing(start)  # the first look: next to nothing written yet
    await asyncio.gather(*(db.write(lambda c: None) for _ in range(BUSY_RATE)))
    assert rushing(start + 2 * BUSY_SLICE)  # BUSY_RATE writes in half a second
    assert rushing(start + 4 * BUSY_SLICE)  # none since: still on
    assert not rushing(start + 6 * BUSY_SLICE)  # none in two looks: over


async def test_replay_all(bus: Bus, db: Database):
    async def handle(event: Event) -> None:
        raise RuntimeError("no")

    bus.subscribe("payments", BusTestPing, handle)
    await publish(bus, *(BusTestPing(n=i) for i in range(5)))
    assert await bus.drain(10)
    assert (await bus.views.status())["deadLetters"] == 5
    assert await bus.views.replay() == 5
    assert (await bus.views.status())["pending"] == 5


async def test_duplicate_delivery_has_one_effect(bus: Bus, db: Database):
    calls: Counter = Counter()
    handle = effect_handler(bus, "payments", calls)
    bus.subscribe("payments", BusTestPing, handle)
    event = BusTestPing(n=1)
    await publish(bus, event)
    assert await bus.drain(10)
    # The same event handed over again: by the bus (a lost completion) and directly.
    await db.write(
        lambda c: c.execute("UPDATE deliveries SET status = 'PENDING', next_attempt_at = 0")
    )
    assert await bus.drain(10)
    await handle(event)
    assert calls[event.event_id] == 3
    assert await effects(db, "payments") == [("payments", event.event_id)]


async def test_handler_errors_and_timeouts_never_stop_the_dispatcher(
    db: Database, bus_settings: Settings
):
    bus = Bus(db, bus_settings, handler_timeout=0.05)
    runs: Counter = Counter()

    async def handle(event: Event) -> None:
        runs[event.event_id] += 1
        n = getattr(event, "n", 0)
        if n == 0 and runs[event.event_id] == 1:
            await asyncio.sleep(30)  # hangs once: cut off by the timeout, then retried
        if n == 1:
            raise KeyError("always")

    bus.subscribe("c", BusTestPing, handle)
    await bus.start()
    try:
        hang, bad, good = BusTestPing(n=0), BusTestPing(n=1), BusTestPing(n=2)
        await publish(bus, hang, bad, good)
        assert await bus.drain(10)
        assert runs[hang.event_id] == 2 and runs[good.event_id] == 1 and runs[bad.event_id] == 3
        [dead] = await bus.views.dead_letters()
        assert dead["eventId"] == bad.event_id
        later = BusTestPing(n=3)
        await publish(bus, later)
        assert await bus.drain(10) and runs[later.event_id] == 1
        assert bus.dispatcher.running
    finally:
        await bus.stop()


async def test_two_workers_on_one_file_run_each_delivery_once(bus_settings: Settings):
    dbs = [open_database(bus_settings), open_database(bus_settings)]
    runs: Counter = Counter()
    by_worker: Counter = Counter()
    buses = [Bus(d, bus_settings, worker_id=f"w{i}") for i, d in enumerate(dbs)]

    def handler(consumer: str, worker: int) -> Callable[[Event], Awaitable[None]]:
        async def handle(event: Event) -> None:
            runs[(consumer, event.event_id)] += 1
            by_worker[worker] += 1
            await asyncio.sleep(0)

        return handle

    for i, b in enumerate(buses):
        b.subscribe("payments", BusTestPing, handler("payments", i))
        b.subscribe("goods", BusTestPing, handler("goods", i))
    try:
        for b in buses:
            await b.start()
        events = [BusTestPing(n=i) for i in range(400)]
        for start in range(0, len(events), 20):  # both workers record, in many transactions
            await publish(buses[(start // 20) % 2], *events[start : start + 20])
        results = await asyncio.gather(*(b.drain(30) for b in buses))
        assert results == [True, True]
    finally:
        for b in buses:
            await b.stop()
        for d in dbs:
            await d.close()
    assert len(runs) == 800
    assert set(runs.values()) == {1}, [k for k, v in runs.items() if v != 1][:5]
    assert sum(by_worker.values()) == 800


async def test_events_left_by_a_crash_are_delivered_on_next_start(data_dir: Path):
    settings = make_settings(data_dir)
    first_runs: list[Event] = []
    events = [BusTestPing(n=i) for i in range(10)]

    async def first_handler(event: Event) -> None:
        first_runs.append(event)

    async with open_shop(settings) as shop:  # a CLI-like shop: no dispatcher
        shop.bus.subscribe("payments", BusTestPing, first_handler)
        await publish(shop.bus, *events)
    assert first_runs == []  # closed without delivering, as a crash would leave it

    delivered: list[Event] = []

    async def handler(event: Event) -> None:
        delivered.append(event)

    async with open_shop(settings, background=True) as shop:
        shop.bus.subscribe("payments", BusTestPing, handler)

        async def all_there() -> bool:
            return len(delivered) >= len(events)

        await wait_until(all_there)
        assert sorted(e.event_id for e in delivered) == sorted(e.event_id for e in events)
        health = await shop.health()
        await wait_until(lambda: _no_pending(shop.bus))
        assert (await shop.health())["bus"] == {"pending": 0, "deadLetters": 0}
        assert health["bus"]["deadLetters"] == 0


async def _no_pending(bus: Bus) -> bool:
    return (await bus.views.counts())["pending"] == 0


def _dead_pid() -> int:
    code = "import os; print(os.getpid())"
    proc = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(proc.stdout)


async def test_claims_of_a_killed_worker_are_taken_over(db: Database, bus_settings: Settings):
    # A worker of another (now dead) process claimed everything, then died without finishing.
    crashed = Bus(db, bus_settings, worker_id=f"{socket.gethostname()}:{_dead_pid()}:x")
    crashed.subscribe("payments", BusTestPing, lambda e: asyncio.sleep(0))
    events = [BusTestPing(n=i) for i in range(5)]
    await publish(crashed, *events)
    claims, _ = await db.write(lambda c: crashed.dispatcher.settle_and_claim(c, [], 100))
    assert len(claims) == 5
    [row] = await rows(db, "SELECT COUNT(*) FROM deliveries WHERE claimed_by IS NOT NULL")
    assert row[0] == 5

    # A live worker whose claims are held is left alone; a dead one's are taken over at once,
    # long before its 60 s lease ends.
    calls: Counter = Counter()
    survivor = Bus(db, bus_settings)
    survivor.subscribe("payments", BusTestPing, effect_handler(survivor, "payments", calls))
    try:
        assert await survivor.drain(10)
    finally:
        await survivor.stop()
    assert sorted(calls) == sorted(e.event_id for e in events)
    assert set(calls.values()) == {1}


async def test_stop_releases_claims_of_unfinished_handlers(db: Database, bus_settings: Settings):
    bus = Bus(db, bus_settings, stop_grace=0.05)
    started = asyncio.Event()

    async def slow(event: Event) -> None:
        started.set()
        await asyncio.sleep(30)

    bus.subscribe("payments", BusTestPing, slow)
    await bus.start()
    await publish(bus, BusTestPing(n=1))
    await asyncio.wait_for(started.wait(), 10)
    await bus.stop()
    [row] = await rows(db, "SELECT status, attempts, claimed_by FROM deliveries")
    assert (row["status"], row["attempts"], row["claimed_by"]) == ("PENDING", 0, None)

    calls: Counter = Counter()
    again = Bus(db, bus_settings)
    again.subscribe("payments", BusTestPing, effect_handler(again, "payments", calls))
    assert await again.drain(10)
    assert len(calls) == 1


async def test_first_time_is_per_consumer(bus: Bus, db: Database):
    def job(conn: sqlite3.Connection) -> list[bool]:
        return [
            bus.first_time(conn, "a", "e1"),
            bus.first_time(conn, "a", "e1"),
            bus.first_time(conn, "b", "e1"),
        ]

    assert await db.write(job) == [True, False, True]


async def test_subscribing_twice_is_refused(bus: Bus):
    bus.subscribe("a", BusTestPing, lambda e: asyncio.sleep(0))
    with pytest.raises(ValueError):
        bus.subscribe("a", BusTestPing, lambda e: asyncio.sleep(0))


async def test_a_claim_is_stale_only_when_its_process_is_gone(bus: Bus):
    host = socket.gethostname()
    assert not owner_is_dead(f"{host}:{os.getppid()}:abc")  # alive
    assert owner_is_dead(f"{host}:{_dead_pid()}:abc")  # exited
    assert not owner_is_dead(f"elsewhere:{_dead_pid()}:abc")  # another host: wait for the lease
    assert not owner_is_dead("w1")  # not a host:pid:x id
    assert not owner_is_dead(bus.worker_id)  # a bus of this process
    # Our own pid, but no bus of this process has that id: an earlier process with our pid
    # (a restarted container's pid 1).
    assert owner_is_dead(f"{host}:{os.getpid()}:earlier")
