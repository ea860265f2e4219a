"""The waiting room: settings per goods, joining, admission, passes, and what waiting buyers see.

Everything that changes is in Redis and changed only by the Lua scripts of ``scripts.py``, so
every worker process and every host shares one line per goods and a restart of ``miri serve``
loses nothing. Settings are also kept in the ``waiting_rooms`` table: a Redis that lost the
rooms gets them back from there (its tickets and passes are gone; buyers join again).

Cost per waiting buyer: the leader alone runs admissions (a few script calls a second per room);
each process reads a room's figures at most every ``snapshot_age`` seconds however many buyers
poll or stream, and a waiting ticket is read from Redis once per process until the line reaches
it (its place in line, ``rank``, does not change while it waits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from miri.domain.errors import InvalidState, NotFound, QueuePassRequired, SoldOut, ValidationFailed
from miri.domain.queue import model, scripts, store
from miri.domain.queue.model import RoomFigures, RoomSettings, Ticket, TicketRecord, shown
from miri.infra import keys
from miri.infra.clock import Clock
from miri.infra.database import Database
from miri.infra.metrics import ShopMetrics
from miri.infra.singleflight import SingleFlight

log = logging.getLogger(__name__)
LiveStock = Callable[[int], Awaitable[int]]  # the goods module's live stock (NotFound if none)

TICK = 0.2  # seconds between admission runs on the leader
SNAPSHOT_AGE = 0.25  # seconds a process answers from one read of a room's figures
ROOMS_AGE = 1.0  # seconds the order path trusts its list of goods that have a room
PENDING_FOR = 30.0  # seconds a used pass holds its unit back at most (a process died meanwhile)
READS_PER_CALL = 500  # ticket reads per pipeline
MOST_PER_RUN = 1000  # admissions per script run: keeps one run short for Redis
TICKET_CACHE = 200_000  # waiting tickets remembered per process
STREAM_EVERY = 0.1  # seconds between looks at a room while anyone streams it
POSITION_EVERY = 1.0  # seconds between two events that only move a ticket forward in line
QUIET_NOTIFY = (
    1.0  # each stream looks again this often (admitted? a held pass runs out by the clock)
)
# Streams are woken in this many groups, one group per look, each group once per QUIET_NOTIFY:
# woken all at once, every buyer admitted in the last second ordered in the same instant (a
# 2,000-buyer bench saw 300 orders land within 0.1 s once a second: p99 250 ms at 300 orders/s).
STREAM_GROUPS = round(QUIET_NOTIFY / STREAM_EVERY)
REFUSAL_TEXT = {
    "NO_TICKET": "you have no ticket for these goods: join the waiting room first",
    "WAITING": "your ticket is still waiting: order when it is admitted",
    "USED": "this pass has already placed an order",
    "EXPIRED": "your pass ran out",
    "NOT_YOURS": "that is not the pass of your ticket for these goods",
}


@dataclass(frozen=True)
class PassUse:
    """Passes an order used (one per gated goods), so a refused order can give them back."""

    user_id: int
    goods_ids: tuple[int, ...]
    used_at: float


class _Signal:
    """Wakes every waiter at once: one future shared by thousands of streams (a Condition would
    hand its lock to each of them in turn)."""

    def __init__(self) -> None:
        self._future: asyncio.Future | None = None

    def wake(self) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(None)
        self._future = None

    async def wait(self, timeout: float) -> bool:
        """True when woken, False after ``timeout`` seconds."""
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        done, _ = await asyncio.wait({self._future}, timeout=timeout)
        return bool(done)


class StreamGroups:
    """The streams of one room in a process, woken in ``STREAM_GROUPS`` groups (by user id).

    Each look at the room wakes the next group, so each stream looks again once per
    ``QUIET_NOTIFY`` and buyers admitted meanwhile learn it, and order, spread over that time. A
    new state for everyone (sold out, the room closed) wakes every stream at once.
    """

    def __init__(self) -> None:
        self._groups = [_Signal() for _ in range(STREAM_GROUPS)]
        self._turn = 0
        self._last: RoomFigures | None = None

    def signal(self, user_id: int) -> _Signal:
        return self._groups[user_id % STREAM_GROUPS]

    def look(self, figures: RoomFigures) -> None:
        last, self._last = self._last, figures
        if last is None or (figures.sold_out, figures.enabled) != (last.sold_out, last.enabled):
            for group in self._groups:
                group.wake()
            return
        self._groups[self._turn % STREAM_GROUPS].wake()
        self._turn += 1


def _int(value: str | None) -> int:
    return int(float(value)) if value else 0


class QueueService:
    def __init__(
        self,
        *,
        db: Database,
        redis: Redis,
        clock: Clock,
        live_stock: LiveStock,
        metrics: ShopMetrics,
        rng: random.Random | None = None,
    ) -> None:
        self._db = db
        self._redis = redis
        self._clock = clock
        self._live_stock = live_stock
        self._metrics = metrics
        # Seeds the opening shuffle; a test passes random.Random(seed) for a fixed order.
        self._rng = rng or random.SystemRandom()
        self._join = redis.register_script(scripts.JOIN)
        self._admit = redis.register_script(scripts.ADMIT)
        self._use = redis.register_script(scripts.USE)
        self._give_back = redis.register_script(scripts.GIVE_BACK)
        self._configure = redis.register_script(scripts.CONFIGURE)
        self._reserved = redis.register_script(scripts.RESERVED)
        self.snapshot_age = SNAPSHOT_AGE
        self._figures: dict[int, tuple[RoomFigures, float]] = {}
        self._reads = SingleFlight()
        self._tickets: OrderedDict[tuple[int, int], TicketRecord] = OrderedDict()
        self._rooms: set[int] = set()
        self._settings: dict[int, RoomSettings] = {}
        self._rooms_read_at = float("-inf")
        self._changed: dict[int, StreamGroups] = {}
        self._watchers: dict[int, int] = {}
        self._watch_tasks: dict[int, asyncio.Task] = {}
        self._gauged_at = 0.0
        self._pending_reads: list[tuple[int, int, asyncio.Future]] = []
        self._sending: set[asyncio.Task] = set()

    # -- settings -------------------------------------------------------------------------------
    async def configure(self, goods_id: int, room: RoomSettings) -> RoomSettings:
        """Put goods behind a waiting room, change its settings, or take the room away.

        The caller has checked the actor may change these goods (their seller, an admin or the
        operator). The line, tickets and counters stay as they are.
        """
        errors: dict[str, str] = {}
        for field, rule, value in (
            ("waitingRoom.admitPerSecond", model.admit_per_second, room.admit_per_second),
            ("waitingRoom.passSeconds", model.pass_seconds, room.pass_seconds),
        ):
            try:
                rule(value)
            except ValueError as exc:
                errors[field] = str(exc)
        if errors:
            raise ValidationFailed(data=errors)
        await self._live_stock(goods_id)  # NotFound for goods that do not exist
        now = self._clock.timestamp()
        await self._db.write(lambda c: store.save(c, goods_id, room, now))
        await self._mirror(goods_id, room)
        self._settings[goods_id] = room
        if room.enabled:
            self._rooms.add(goods_id)
        else:
            self._rooms.discard(goods_id)
        self._figures.pop(goods_id, None)
        return room

    async def _mirror(self, goods_id: int, room: RoomSettings) -> None:
        await self._configure(
            keys=[keys.queue_room(goods_id), keys.QUEUE_ROOMS],
            args=[goods_id, "1" if room.enabled else "0", room.admit_per_second, room.pass_seconds],
        )

    async def settings(self, goods_id: int) -> RoomSettings | None:
        """The goods' waiting room, or None when they never had one."""
        return await self._db.read(lambda c: store.one(c, goods_id))

    async def set_rate(self, goods_id: int, admit_per_second: int) -> RoomSettings:
        """Change the admission rate during a sale (the operator's and the dashboard's knob)."""
        room = await self.settings(goods_id)
        if room is None or not room.enabled:
            await self._live_stock(goods_id)
            raise InvalidState("these goods have no waiting room")
        return await self.configure(goods_id, replace(room, admit_per_second=admit_per_second))

    async def restore(self) -> int:
        """Put every room's settings back into Redis (after Redis lost them); counts the rooms."""
        rooms = await self._db.read(store.every)
        for goods_id, room in rooms.items():
            await self._mirror(goods_id, room)
        self._settings = rooms
        self._rooms = {gid for gid, room in rooms.items() if room.enabled}
        self._rooms_read_at = time.monotonic()
        self._figures.clear()
        self._tickets.clear()
        return len(rooms)

    async def room_ids(self) -> set[int]:
        """Goods that have a waiting room, as the order path sees them (at most a second old)."""
        await self._known_rooms()
        return self._rooms

    async def room(self, goods_id: int) -> RoomSettings | None:
        """The goods' room settings as the goods page shows them (at most a second old)."""
        return (await self._known_rooms()).get(goods_id)

    async def _known_rooms(self) -> dict[int, RoomSettings]:
        if time.monotonic() - self._rooms_read_at > ROOMS_AGE:
            self._settings = await self._reads.run("rooms", lambda: self._db.read(store.every))
            self._rooms = {gid for gid, room in self._settings.items() if room.enabled}
            self._rooms_read_at = time.monotonic()
        return self._settings

    # -- buyers ---------------------------------------------------------------------------------
    async def join(self, user_id: int, goods_id: int) -> tuple[Ticket, bool]:
        """The caller's ticket, and whether it is new (one ticket per account and goods)."""
        for _ in range(3):
            answer = await self._join(
                keys=[
                    keys.queue_room(goods_id),
                    keys.queue_pre(goods_id),
                    keys.queue_line(goods_id),
                    keys.queue_ticket(goods_id, user_id),
                    keys.goods(goods_id),
                ],
                args=[
                    user_id,
                    repr(self._clock.timestamp()),
                    uuid.uuid4().hex,
                    self._seed(),
                    keys.queue_ticket_prefix(goods_id),
                ],
            )
            status = answer[0]
            if status == "MISSING":  # Redis lost the goods: the goods module puts them back
                await self._live_stock(goods_id)
                continue
            if status == "NO_ROOM":
                room = await self.settings(goods_id)
                if room is not None and room.enabled:  # Redis lost the room: put it back
                    await self._mirror(goods_id, room)
                    continue
                await self._live_stock(goods_id)  # NotFound for goods that do not exist
                raise InvalidState("these goods have no waiting room")
            self._figures.pop(goods_id, None)
            return await self.ticket(user_id, goods_id), status == "NEW"
        raise InvalidState("the waiting room could not be opened; try again")

    async def ticket(self, user_id: int, goods_id: int) -> Ticket:
        """The caller's ticket as it stands (404 when they have none)."""
        room = await self.figures(goods_id)
        record = self._tickets.get((goods_id, user_id))
        if record is None or not record.still_waiting(room):
            record = await self._read_ticket(goods_id, user_id)
            if record is None:
                raise NotFound("you have no ticket for these goods")
            self._remember(record)
        return shown(record, room, self._clock.timestamp())

    async def record(self, user_id: int, goods_id: int) -> TicketRecord | None:
        """The ticket as stored (the benchmark reads arrival and admission order from it)."""
        return await self._read_ticket(goods_id, user_id)

    async def _read_ticket(self, goods_id: int, user_id: int) -> TicketRecord | None:
        """One ticket; reads asked for in the same loop tick go to Redis as one pipeline (when
        the line moves, hundreds of streams learn they are admitted at the same moment)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._pending_reads.append((goods_id, user_id, future))
        if len(self._pending_reads) == 1:
            loop.call_soon(self._flush_reads)
        found = await future
        return TicketRecord.from_hash(goods_id, found) if found else None

    def _flush_reads(self) -> None:
        batch, self._pending_reads = self._pending_reads, []
        for start in range(0, len(batch), READS_PER_CALL):
            task = asyncio.ensure_future(self._send_reads(batch[start : start + READS_PER_CALL]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send_reads(self, batch: list[tuple[int, int, asyncio.Future]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for goods_id, user_id, _ in batch:
            pipe.hgetall(keys.queue_ticket(goods_id, user_id))
        try:
            values = await pipe.execute()
        except BaseException as exc:  # noqa: BLE001 - handed to every reader in the batch
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), value in zip(batch, values, strict=True):
            if not future.done():
                future.set_result(value)

    def _remember(self, record: TicketRecord) -> None:
        key = (record.goods_id, record.user_id)
        if record.state != model.WAITING:
            self._tickets.pop(key, None)
            return
        self._tickets[key] = record
        self._tickets.move_to_end(key)
        while len(self._tickets) > TICKET_CACHE:
            self._tickets.popitem(last=False)

    async def follow(
        self, user_id: int, goods_id: int, quiet: float = 15.0
    ) -> AsyncGenerator[Ticket | None, None]:
        """The caller's ticket now and on every change; None after ``quiet`` seconds without one
        (the stream's keep-alive). Every stream of a process reads the same room figures."""
        signal = self._watch(goods_id, user_id)
        last: Ticket | None = None
        sent_at = 0.0
        try:
            while True:
                try:
                    current = await self.ticket(user_id, goods_id)
                except RedisError as exc:
                    if last is None:
                        raise  # before the first event: the request answers 503
                    # A moment without Redis: the stream keeps its last answer and asks again.
                    log.debug("waiting-room stream for goods %s: %r", goods_id, exc)
                    current = last
                if current != last:
                    # A new state goes out at once; a mere step forward in line at most once a
                    # second (thousands of streams would otherwise each send on every admission).
                    moved = last is not None and (current.state, current.pass_token) == (
                        last.state,
                        last.pass_token,
                    )
                    # (less a look's time: the stream's group is woken every QUIET_NOTIFY)
                    if not moved or time.monotonic() - sent_at >= POSITION_EVERY - STREAM_EVERY:
                        last, sent_at = current, time.monotonic()
                        yield current
                await signal.wait(quiet)
                # Quiet for a while (a line that does not move: every unit is promised to a
                # pass): a keep-alive, so the buyer's connection is not taken for dead.
                if time.monotonic() - sent_at >= quiet:
                    sent_at = time.monotonic()
                    yield None
        finally:
            self._unwatch(goods_id)

    # -- figures --------------------------------------------------------------------------------
    async def figures(self, goods_id: int, *, fresh: bool = False) -> RoomFigures:
        """A room's figures, read at most every ``snapshot_age`` seconds per process."""
        cached = self._figures.get(goods_id)
        if not fresh and cached is not None and time.monotonic() - cached[1] < self.snapshot_age:
            return cached[0]
        figures = await self._reads.run(("figures", goods_id), lambda: self._read(goods_id))
        self._figures[goods_id] = (figures, time.monotonic())
        return figures

    async def _read(self, goods_id: int) -> RoomFigures:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(
            keys.queue_room(goods_id),
            "enabled",
            "rate",
            "pass_s",
            "shuffled",
            "head",
            "tail",
            "used",
            "expired",
            "sold_tickets",
            "soldout",
            "soldout_at",
            "admitted",
        )
        pipe.llen(keys.queue_pre(goods_id))
        pipe.zcard(keys.queue_passes(goods_id))
        pipe.hget(keys.goods(goods_id), "open")
        room, pre, holding, opens = await pipe.execute()
        (enabled, rate, pass_s, shuffled, head, tail, used, expired) = room[:8]
        (sold_tickets, soldout, soldout_at, admitted) = room[8:]
        return RoomFigures(
            goods_id=goods_id,
            enabled=enabled == "1",
            admit_per_second=_int(rate) or model.DEFAULT_ADMIT_PER_SECOND,
            pass_seconds=_int(pass_s) or model.DEFAULT_PASS_SECONDS,
            opens_at=float(opens) if opens else None,
            shuffled=shuffled == "1",
            head=_int(head),
            tail=_int(tail),
            pre_queue=int(pre),
            holding=int(holding),
            used=_int(used),
            expired=_int(expired),
            sold_out_tickets=_int(sold_tickets),
            sold_out=soldout == "1",
            sold_out_at=float(soldout_at) if soldout_at else None,
            admitted_total=_int(admitted),
        )

    async def status(self, goods_id: int) -> dict[str, Any]:
        """The operator's figures for one room (API.md's admin answer, and a few more)."""
        room = await self.settings(goods_id)
        if room is None:
            await self._live_stock(goods_id)
            raise NotFound("these goods have no waiting room")
        figures = await self.figures(goods_id, fresh=True)
        return figures.status(self._clock.timestamp()) | {"enabled": room.enabled}

    async def statuses(self) -> list[dict[str, Any]]:
        """Every room's figures (the dashboard)."""
        rooms = await self._db.read(store.every)
        now = self._clock.timestamp()
        out = []
        for goods_id, room in rooms.items():
            figures = await self.figures(goods_id, fresh=True)
            out.append(figures.status(now) | {"enabled": room.enabled})
        return out

    # -- admission (the leader) -----------------------------------------------------------------
    async def tick(self) -> dict[int, tuple[str, int, int, int]]:
        """One admission run over every room: (status, admitted, expired, live stock) per goods."""
        ids = sorted(int(g) for g in await self._redis.smembers(keys.QUEUE_ROOMS))
        now = self._clock.timestamp()
        out: dict[int, tuple[str, int, int, int]] = {}
        for goods_id in ids:
            answer = await self._admit(
                keys=[
                    keys.queue_room(goods_id),
                    keys.queue_pre(goods_id),
                    keys.queue_line(goods_id),
                    keys.queue_passes(goods_id),
                    keys.goods(goods_id),
                    keys.queue_pending(goods_id),
                ],
                args=[
                    repr(now),
                    self._seed(),
                    keys.queue_ticket_prefix(goods_id),
                    secrets.token_hex(16),
                    MOST_PER_RUN,
                    PENDING_FOR,
                ],
            )
            status, admitted, expired, stock = answer[0], *map(int, answer[1:])
            if status == "MISSING":  # the goods hash is gone: the goods module rebuilds it
                with contextlib.suppress(NotFound):
                    await self._live_stock(goods_id)
            if admitted:
                self._metrics.queue_admitted.labels(str(goods_id)).inc(admitted)
            out[goods_id] = (status, admitted, expired, stock)
            self._figures.pop(goods_id, None)
        if time.monotonic() - self._gauged_at >= 1.0:
            self._gauged_at = time.monotonic()
            for goods_id in ids:
                self._gauge(await self.figures(goods_id))
        return out

    def _gauge(self, figures: RoomFigures) -> None:
        by_state = figures.status(self._clock.timestamp())
        for state, field in (
            (model.WAITING, "waiting"),
            (model.ADMITTED, "admitted"),
            (model.USED, "used"),
            (model.EXPIRED, "expired"),
            (model.SOLD_OUT, "soldOut"),
        ):
            self._metrics.queue_tickets.labels(str(figures.goods_id), state).set(by_state[field])

    async def run_admissions(self, stop: asyncio.Event, every: float = TICK) -> None:
        """Admit buyers a few times a second until ``stop`` is set (this process stops leading).

        A stop flag rather than cancelling alone: a cancellation that lands inside a Redis call
        can be absorbed by the client library, and the loop would then run on for ever.
        """
        while not stop.is_set():
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - Redis away for a moment: try at the next run
                log.exception("waiting-room admission run failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    def _seed(self) -> int:
        return self._rng.randrange(1, 2**31 - 1)

    # -- the order path -------------------------------------------------------------------------
    async def use_passes(
        self, user_id: int, goods_ids: Sequence[int], tokens: Sequence[str]
    ) -> PassUse | None:
        """Use the caller's pass for every goods of an order that has a waiting room, all or
        none, before anything is reserved: 403 ``QUEUE_PASS_REQUIRED`` without a valid pass of
        their own, 409 ``SOLD_OUT`` when the room's goods have sold out. None: no room here."""
        rooms = await self.room_ids()
        gated = tuple(sorted({g for g in goods_ids if g in rooms}))
        if not gated:
            return None
        now = self._clock.timestamp()
        room_keys: list[str] = []
        for goods_id in gated:
            room_keys += [
                keys.queue_room(goods_id),
                keys.queue_ticket(goods_id, user_id),
                keys.queue_passes(goods_id),
                keys.queue_pending(goods_id),
            ]
        answer = await self._use(keys=room_keys, args=[repr(now), user_id, *tokens])
        if answer[0] == "OK":
            return PassUse(user_id, gated, now)
        reason, goods_id = answer[0], gated[int(answer[1]) - 1]
        self._metrics.queue_pass_refusals.labels(reason).inc()
        if reason == "SOLD_OUT":
            raise SoldOut(f"{SoldOut.message}: the waiting room has closed", {"goodsId": goods_id})
        text = REFUSAL_TEXT.get(reason, REFUSAL_TEXT["NO_TICKET"])
        if not tokens:
            text = "these goods are behind a waiting room: send X-Queue-Pass with your pass"
        raise QueuePassRequired(text, {"goodsId": goods_id, "reason": reason})

    async def reserved(self, use: PassUse) -> None:
        """The order's units have left the stock: its passes no longer hold units back."""
        await self._reserved(
            keys=[keys.queue_pending(g) for g in use.goods_ids], args=[use.user_id]
        )

    async def give_back(self, use: PassUse, *, sold_out: bool) -> None:
        """The order that used these passes was refused: for stock the tickets end SOLD_OUT,
        otherwise the buyer keeps the pass until it runs out."""
        for goods_id in use.goods_ids:
            await self._give_back(
                keys=[
                    keys.queue_room(goods_id),
                    keys.queue_ticket(goods_id, use.user_id),
                    keys.queue_passes(goods_id),
                    keys.queue_pending(goods_id),
                ],
                args=[
                    repr(self._clock.timestamp()),
                    use.user_id,
                    repr(use.used_at),
                    "SOLD_OUT" if sold_out else "BACK",
                ],
            )
            self._tickets.pop((goods_id, use.user_id), None)

    # -- the per-process snapshot that streams share ---------------------------------------------
    def _watch(self, goods_id: int, user_id: int) -> _Signal:
        self._watchers[goods_id] = self._watchers.get(goods_id, 0) + 1
        if goods_id not in self._watch_tasks:  # the first stream of this room (again)
            self._changed[goods_id] = StreamGroups()
            self._watch_tasks[goods_id] = asyncio.create_task(
                self._refresh(goods_id), name=f"miri-queue-watch-{goods_id}"
            )
        return self._changed[goods_id].signal(user_id)

    def _unwatch(self, goods_id: int) -> None:
        left = self._watchers.get(goods_id, 1) - 1
        if left > 0:
            self._watchers[goods_id] = left
            return
        self._watchers.pop(goods_id, None)
        task = self._watch_tasks.pop(goods_id, None)
        if task is not None:
            task.cancel()

    async def _refresh(self, goods_id: int) -> None:
        """While anyone streams this room: look at its figures every ``STREAM_EVERY`` seconds and
        wake the streams whose turn it is (``StreamGroups``)."""
        groups = self._changed[goods_id]
        while True:
            await asyncio.sleep(STREAM_EVERY)
            try:
                groups.look(await self.figures(goods_id))
            except Exception:  # noqa: BLE001 - Redis away: the streams keep their last answer
                log.warning("waiting-room figures for goods %s unavailable", goods_id)

    async def close(self) -> None:
        tasks = list(self._watch_tasks.values())
        self._watch_tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
