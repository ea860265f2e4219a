"""``miri bench flash-sale --waiting-room``: the same sale behind a waiting room, and without one.

One ``miri serve`` (its leader runs the admissions), two goods with the same stock in the same
run:

- the room sale: ``early`` buyers arrive spread over the ``opens_in`` seconds before the opening,
  ``late`` buyers over ``late_over`` seconds after it. Each joins (POST .../queue), waits on the
  ticket stream (SSE) and, once admitted, orders once with its pass (``X-Queue-Pass``); a ticket
  told ``SOLD_OUT`` stops waiting.
- the bare sale: the same buyers all hit ``POST /api/auth/orders`` from just before the opening
  until each gets a 201 or a ``SOLD_OUT``, as buyers do today (``SALE_NOT_OPEN``: again).

Figures: units sold and oversold (SQLite and live stock against the goods' total), the order
path's latency (p50, p99, and the p99 of every second of the sale: flat means the room
protected it), buyers served from the pre-queue vs late, the rank correlation between arrival and
admission (the place in line is the admission order) for the pre-queue (~0: shuffled) and for
later buyers (~1: FIFO), and the time from the sell-out to the last waiting buyer being told.

Order latency is given twice: as the server timed each request (its access log: from taking the
request up to the answer written) and as the bench client did. The client's figure also carries
its own event loop's delays (2,000 buyers and their streams in one Python process), so the run
also measures that loop's lag and how long the server's and the client's main threads waited
for a CPU (``/proc/PID/schedstat``): a slow second shows whose it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

from miri.bench import serving, wrk
from miri.bench.flash_sale import server_env
from miri.config import load_settings
from miri.domain.queue import RoomSettings
from miri.domain.views import bench as bench_views
from miri.infra.processes import free_port
from miri.server.runner import settle_heap
from miri.shop import Shop, open_shop

PRICE = 1000
ADDRESS = "Seoul 1"


@dataclass
class RoomBenchOptions:
    early: int = 1000  # buyers who arrive before the opening
    late: int = 1000  # buyers who arrive after it
    stock: int = 1000
    admit_rate: int = 200
    pass_seconds: int = 120  # the API default
    opens_in: float = 5.0  # early buyers arrive over these seconds before the opening
    late_over: float = 3.0  # late buyers arrive over these seconds after it
    server_workers: int | None = None
    data_dir: Path | None = None
    keep_data: bool = False
    max_seconds: float = 180.0
    seed: int = 1

    def __post_init__(self) -> None:
        if self.early < 0 or self.late < 0 or self.early + self.late < 1:
            raise ValueError("give at least one buyer")
        if self.stock < 1 or self.admit_rate < 1:
            raise ValueError("stock and admit rate must be positive")
        if self.opens_in < 1:
            raise ValueError("opens-in must be at least 1 second")


@dataclass
class Buyer:
    user_id: int
    token: str
    early: bool
    arrive_at: float = 0.0  # epoch seconds
    joined_at: float | None = None
    outcome: str = "waiting"  # ordered, refused, sold_out, expired, error, gave_up
    told_at: float | None = None  # when the stream said SOLD_OUT
    reconnects: int = 0  # streams opened again after a drop


@dataclass
class Orders:
    """Every order request of one sale: (sent at, seconds, status)."""

    calls: list[tuple[float, float, int]] = field(default_factory=list)

    def add(self, sent: float, seconds: float, status: int) -> None:
        self.calls.append((sent, seconds, status))

    def figures(self, opens: float) -> dict[str, Any]:
        """As the bench client timed them: from sending to the whole answer read, which includes
        any time the answer waited for the client's own event loop (see ``LoopLag``)."""
        if not self.calls:
            return {"requests": 0}
        statuses: dict[str, int] = {}
        for _, _, status in self.calls:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        figures = latency_figures([(sent, seconds) for sent, seconds, _ in self.calls], opens)
        return {"requests": figures.pop("count"), "byStatus": statuses} | figures


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def latency_figures(calls: list[tuple[float, float]], opens: float) -> dict[str, Any]:
    """p50/p99/max of (at, seconds) pairs, and the p99 of every second from the opening (the
    seconds with at least 20 calls: fewer make a p99 of one or two samples)."""
    times = sorted(s for _, s in calls)
    if not times:
        return {"count": 0}
    per_second: dict[int, list[float]] = {}
    for at, seconds in calls:
        per_second.setdefault(int(at - opens) if at >= opens else -1, []).append(seconds)
    series = [
        {"second": k, "n": len(v), "p99Ms": round(_pct(sorted(v), 0.99) * 1000, 1)}
        for k, v in sorted(per_second.items())
    ]
    busy = [row["p99Ms"] for row in series if row["n"] >= 20]
    return {
        "count": len(times),
        "p50Ms": round(_pct(times, 0.50) * 1000, 1),
        "p99Ms": round(_pct(times, 0.99) * 1000, 1),
        "maxMs": round(times[-1] * 1000, 1),
        "worstSecondP99Ms": max(busy) if busy else None,
        "perSecond": series,
    }


class LoopLag:
    """How late this process's event loop wakes a task that asked to sleep ``every`` seconds:
    time a request spends waiting for the bench's own loop (not the server) shows here."""

    def __init__(self, every: float = 0.01) -> None:
        self.every = every
        self.samples: list[tuple[float, float]] = []  # (epoch seconds, lag seconds)

    async def run(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(self.every)
            self.samples.append((time.time(), time.perf_counter() - asked - self.every))

    def between(self, start: float, end: float, opens: float) -> dict[str, Any]:
        picked = [(at, lag) for at, lag in self.samples if start <= at <= end]
        out = latency_figures(picked, opens)
        out.pop("perSecond", None)
        out["worstSecondMaxMs"] = _worst_second_max(picked, opens)
        if picked:
            at, _ = max(picked, key=lambda sample: sample[1])
            out["worstAtSecond"] = round(at - opens, 2)
        return out


def _worst_second_max(calls: list[tuple[float, float]], opens: float) -> float | None:
    worst: dict[int, float] = {}
    for at, seconds in calls:
        key = int(at - opens)
        worst[key] = max(worst.get(key, 0.0), seconds)
    return round(max(worst.values()) * 1000, 1) if worst else None


def _schedstat(pid: int) -> tuple[float, float]:
    """Seconds the process's main thread (the server's event loop) ran on a CPU, and waited
    runnable for one (Linux ``/proc/PID/schedstat``); zeros where there is none."""
    try:
        ran, waited, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(ran) / 1e9, int(waited) / 1e9


class CpuWaits:
    """The server's and its Redis's CPU time and run-queue wait, sampled every ``every`` s: a
    request that is slow because the machine gave the server no CPU (other processes, the bench
    client itself) shows as wait here, not as the shop's own work."""

    def __init__(self, pids: dict[str, int], every: float = 0.1) -> None:
        self.pids = pids
        self.every = every
        self.samples: list[tuple[float, dict[str, tuple[float, float]]]] = []

    def sample(self) -> None:
        self.samples.append((time.time(), {k: _schedstat(p) for k, p in self.pids.items()}))

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.every)

    def between(self, start: float, end: float, opens: float) -> dict[str, Any]:
        """Per process: CPU and wait over the window, and the wait of its worst second."""
        picked = [(at, v) for at, v in self.samples if start <= at <= end]
        if len(picked) < 2:
            return {}
        out: dict[str, Any] = {}
        for name in self.pids:
            per_second: dict[int, float] = {}
            worst_slice: dict[int, float] = {}  # the longest wait within one sample's slice
            for (_, a), (at, b) in zip(picked, picked[1:], strict=False):
                key = int(at - opens) if at >= opens else -1
                waited = b[name][1] - a[name][1]
                per_second[key] = per_second.get(key, 0.0) + waited
                worst_slice[key] = max(worst_slice.get(key, 0.0), waited)
            first, last = picked[0][1][name], picked[-1][1][name]
            out[name] = {
                "cpuSeconds": round(last[0] - first[0], 2),
                "waitSeconds": round(last[1] - first[1], 2),
                "worstSecondWaitMs": round(max(per_second.values()) * 1000, 1),
                "waitMsPerSecond": {k: round(v * 1000, 1) for k, v in sorted(per_second.items())},
                "worstSliceWaitMsPerSecond": {
                    k: round(v * 1000, 1) for k, v in sorted(worst_slice.items())
                },
            }
        return out


def _redis_of(data_dir: Path) -> int | None:
    """The embedded Redis serving ``data_dir`` (it runs apart from the server's process tree)."""
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(proc.info["cmdline"] or [])
            if "redis-server" in cmd and str(data_dir) in cmd:
                return proc.pid
    return None


# A line of the server's access log (miri serve's logging format; the time is when it answered).
ACCESS_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO miri\.access: \S+ "
    r'"POST /api/auth/orders" (\d{3}) ([\d.]+)ms'
)


def server_orders(log: Path, start: float, end: float, opens: float) -> dict[str, Any]:
    """The order requests the server answered between ``start`` and ``end`` (epoch seconds), as
    its access log timed each one (from taking the request up to the answer written): the
    server's own per-request figures, free of the bench client's lag."""
    calls: list[tuple[float, float]] = []
    statuses: dict[str, int] = {}
    with log.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            found = ACCESS_LINE.match(line)
            if found is None:
                continue
            at = datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if start <= at <= end:
                calls.append((at, float(found[3]) / 1000))
                statuses[found[2]] = statuses.get(found[2], 0) + 1
    return latency_figures(calls, opens) | {"byStatus": statuses}


def spearman(xs: Iterable[float], ys: Iterable[float]) -> float | None:
    """Rank correlation (no ties expected: arrivals and places in line are unique)."""
    xs, ys = list(xs), list(ys)
    n = len(xs)
    if n < 3:
        return None

    def ranks(values: list[float]) -> list[int]:
        out = [0] * n
        for rank, i in enumerate(sorted(range(n), key=values.__getitem__)):
            out[i] = rank
        return out

    rx, ry = ranks(xs), ranks(ys)
    d2 = sum((a - b) ** 2 for a, b in zip(rx, ry, strict=True))
    return round(1 - 6 * d2 / (n * (n * n - 1)), 3)


# -- the buyers -----------------------------------------------------------------------------------
async def _room_buyer(
    session: aiohttp.ClientSession, base: str, gid: int, buyer: Buyer, orders: Orders, until: float
) -> None:
    await asyncio.sleep(max(0.0, buyer.arrive_at - time.time()))
    auth = {"Authorization": f"Bearer {buyer.token}"}
    while True:
        try:
            async with session.post(f"{base}/api/auth/goods/{gid}/queue", headers=auth) as resp:
                await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            if time.time() >= until:
                raise
            await asyncio.sleep(0.5)  # as a browser would try again
            continue
        if resp.status == 503 and time.time() < until:  # the server sheds load: come back
            await asyncio.sleep(_retry_after(resp))
            continue
        if resp.status not in (200, 201):
            buyer.outcome = f"join {resp.status}"
            return
        break
    buyer.joined_at = time.time()
    # Wait on the stream as a browser's EventSource does: a dropped stream is opened again.
    while time.time() < until:
        try:
            done = await _wait_and_order(session, base, gid, buyer, orders, until, auth)
        except (aiohttp.ClientError, TimeoutError):
            buyer.reconnects += 1
            await asyncio.sleep(0.5)
            continue
        if done:
            return
    buyer.outcome = "gave_up"


async def _wait_and_order(
    session: aiohttp.ClientSession,
    base: str,
    gid: int,
    buyer: Buyer,
    orders: Orders,
    until: float,
    auth: dict[str, str],
) -> bool:
    """Follow the ticket's stream; once admitted, order with the pass. True: the buyer is done."""
    timeout = aiohttp.ClientTimeout(total=max(until - time.time(), 1), sock_read=40)
    url = f"{base}/api/auth/goods/{gid}/queue/stream"
    async with session.get(url, headers=auth, timeout=timeout) as stream:
        if stream.status != 200:
            await asyncio.sleep(_retry_after(stream))
            return False
        async for line in stream.content:
            if not line.startswith(b"data: "):
                continue
            ticket = orjson.loads(line[6:])
            state = ticket["state"]
            if state == "ADMITTED":
                await _order(session, base, gid, buyer, orders, until, auth, ticket["passToken"])
                return True
            if state == "SOLD_OUT":
                buyer.told_at = time.time()
                buyer.outcome = "sold_out"
                return True
            if state in ("EXPIRED", "USED"):
                buyer.outcome = state.lower()
                return True
    return False


async def _order(
    session: aiohttp.ClientSession,
    base: str,
    gid: int,
    buyer: Buyer,
    orders: Orders,
    until: float,
    auth: dict[str, str],
    pass_token: str,
) -> None:
    headers = {**auth, "X-Queue-Pass": pass_token}
    body = {"goodsId": gid, "quantity": 1, "address": ADDRESS}
    while True:
        sent = time.time()
        started = time.perf_counter()
        async with session.post(f"{base}/api/auth/orders", json=body, headers=headers) as resp:
            await resp.read()
        orders.add(sent, time.perf_counter() - started, resp.status)
        if resp.status != 503 or time.time() >= until:
            break
        await asyncio.sleep(_retry_after(resp))  # shed before any work: the pass is kept
    buyer.outcome = "ordered" if resp.status == 201 else f"refused {resp.status}"
    if resp.status == 409:  # the units went while the pass was in hand
        buyer.told_at = time.time()
        buyer.outcome = "sold_out"


async def _bare_buyer(
    session: aiohttp.ClientSession, base: str, gid: int, buyer: Buyer, orders: Orders, until: float
) -> None:
    auth = {"Authorization": f"Bearer {buyer.token}"}
    body = {"goodsId": gid, "quantity": 1, "address": ADDRESS}
    while time.time() < until:
        sent = time.time()
        started = time.perf_counter()
        try:
            async with session.post(f"{base}/api/auth/orders", json=body, headers=auth) as resp:
                answer = await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            buyer.reconnects += 1
            await asyncio.sleep(0.5)  # refused at the door (a full listen queue): again
            continue
        orders.add(sent, time.perf_counter() - started, resp.status)
        if resp.status == 201:
            buyer.outcome = "ordered"
            return
        if resp.status == 503:
            await asyncio.sleep(_retry_after(resp))
            continue
        if resp.status == 409 and b"SALE_NOT_OPEN" not in answer:
            buyer.outcome = "sold_out"
            return
    buyer.outcome = "gave_up"


def _retry_after(resp: aiohttp.ClientResponse) -> float:
    """The server's Retry-After, at most a second (buyers at an opening do not wait longer)."""
    try:
        return min(float(resp.headers.get("Retry-After", "0.2")), 1.0)
    except ValueError:
        return 0.2


async def _run_buyers(kind: str, base: str, gid: int, buyers: list[Buyer], until: float) -> Orders:
    orders = Orders()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None)
    ) as session:
        walk = _room_buyer if kind == "room" else _bare_buyer
        results = await asyncio.gather(
            *(walk(session, base, gid, b, orders, until) for b in buyers), return_exceptions=True
        )
    for buyer, result in zip(buyers, results, strict=True):
        if isinstance(result, BaseException):
            buyer.outcome = f"error {result.__class__.__name__}"
    return orders


# -- the run --------------------------------------------------------------------------------------
async def _goods(shop: Shop, seller: int, name: str, stock: int, opens: float) -> int:
    goods = await shop.goods.register(
        seller,
        name=name,
        description="Goods for the waiting-room bench",
        price=PRICE,
        stock=stock,
        category="ETC",
        reservation_start=datetime.fromtimestamp(opens, UTC),
        per_buyer_limit=None,
    )
    return goods.goods_id


async def _sale(shop: Shop, gid: int) -> dict[str, Any]:
    figures = await bench_views.sale_figures(shop.db, gid, None)
    live = await shop.goods.live_stock(gid)
    sold = figures.active
    return {
        "stock": figures.stock_total,
        "sold": sold,
        "liveStock": live,
        "oversold": max(0, sold - figures.stock_total) + max(0, -live),
        "lost": figures.stock_total - sold - live,
    }


def _cpu(process: psutil.Process) -> float:
    """CPU seconds of the server and its worker processes so far."""
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


async def run(opts: RoomBenchOptions) -> dict[str, Any]:
    """Both sales on one server; every figure of the report."""
    total = opts.early + opts.late
    wrk.raise_open_files(total * 2 + 256)
    made_dir = opts.data_dir is None
    data_dir = opts.data_dir or Path(tempfile.mkdtemp(prefix="miri-room-bench-")) / "data"
    settings = load_settings(
        data_dir=data_dir, env={}, payment_abandon_rate=0.0, stock_sync_interval=3600.0
    )
    rng = random.Random(opts.seed)
    load_before = os.getloadavg()
    extra = ["--workers", str(opts.server_workers)] if opts.server_workers else []
    try:
        async with open_shop(settings) as shop:
            [(admin, _)] = await shop.users.add_bench_users(1, "room-admin", "ADMIN")
            accounts = await shop.users.add_bench_users(total, "room")
            # The client's heap as the server's (runner.settle_heap): a full collection walking
            # this process's thousands of buyers stalled its loop for ~100 ms in the sale, and
            # the requests it held back then reached the server as one burst.
            settle_heap()
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            proc = await asyncio.to_thread(
                serving.start_serve,
                data_dir,
                port,
                *extra,
                "--access-log",  # the server's own time for each order (``server_orders``)
                env=server_env(settings, "lua") | {"MIRI_LOG_LEVEL": "INFO"},
                log=data_dir / "serve.log",
            )
            server = psutil.Process(proc.pid)
            lag = LoopLag()
            workers = [c for c in server.children() if "serve" in " ".join(c.cmdline())]
            pids = {f"server{i}": w.pid for i, w in enumerate(workers)} or {"server": proc.pid}
            pids["bench"] = os.getpid()
            if (redis := _redis_of(data_dir)) is not None:
                pids["redis"] = redis
            waits = CpuWaits(pids)
            probes = [asyncio.create_task(lag.run()), asyncio.create_task(waits.run())]
            try:
                cpu = _cpu(server)
                room = await _room_sale(shop, opts, admin, accounts, base, rng)
                room["serverCpuSeconds"], cpu = round(_cpu(server) - cpu, 2), _cpu(server)
                bare = await _bare_sale(shop, opts, admin, accounts, base)
                bare["serverCpuSeconds"] = round(_cpu(server) - cpu, 2)
                await asyncio.sleep(0.5)  # the last access-log lines through the log's pipe
                for sale in (room, bare):
                    window = sale.pop("window")
                    sale["serverOrders"] = server_orders(data_dir / "serve.log", *window)
                    sale["clientLoopLag"] = lag.between(*window)
                    sale["cpuWaits"] = waits.between(*window)
            finally:
                for probe in probes:
                    probe.cancel()
                await asyncio.to_thread(serving.stop, proc)
    finally:
        if made_dir and not opts.keep_data:
            shutil.rmtree(data_dir.parent, ignore_errors=True)
    return {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
        "load": {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count()},
        "room": room,
        "bare": bare,
        "dataDir": str(data_dir) if opts.keep_data or not made_dir else None,
    }


async def _room_sale(
    shop: Shop,
    opts: RoomBenchOptions,
    admin: int,
    accounts: list[tuple[int, str]],
    base: str,
    rng: random.Random,
) -> dict[str, Any]:
    start = time.time() + 1.0
    opens = start + opts.opens_in
    gid = await _goods(shop, admin, "Room Sale", opts.stock, opens)
    await shop.queue.configure(gid, RoomSettings(True, opts.admit_rate, opts.pass_seconds))
    buyers = [Buyer(uid, token, early=i < opts.early) for i, (uid, token) in enumerate(accounts)]
    for b in buyers:
        b.arrive_at = (
            start + rng.uniform(0, opts.opens_in - 0.3)
            if b.early
            else opens + rng.uniform(0, opts.late_over)
        )
    until = opens + opts.max_seconds
    began = time.time()
    orders = await _run_buyers("room", base, gid, buyers, until)
    ended = time.time()
    took = ended - began
    figures = await shop.queue.figures(gid, fresh=True)
    records = {b.user_id: await shop.queue.record(b.user_id, gid) for b in buyers}
    pre = [r for r in records.values() if r is not None and r.pre_queue]
    late = [r for r in records.values() if r is not None and not r.pre_queue]
    told = [b.told_at for b in buyers if b.told_at is not None]
    got = [records[b.user_id] for b in buyers if b.outcome == "ordered"]
    served = {
        "preQueue": sum(1 for r in got if r is not None and r.pre_queue),
        "late": sum(1 for r in got if r is not None and not r.pre_queue),
    }
    outcomes: dict[str, int] = {}
    for b in buyers:
        outcomes[b.outcome] = outcomes.get(b.outcome, 0) + 1
    left_as: dict[str, int] = {}  # the tickets of buyers who gave up, as the shop has them
    for b in buyers:
        record = records[b.user_id]
        if b.outcome == "gave_up" and record is not None:
            left_as[record.state] = left_as.get(record.state, 0) + 1
    sold_out_at = figures.sold_out_at
    return {
        "streamReconnects": sum(b.reconnects for b in buyers),
        "gaveUpTickets": left_as,
        "goodsId": gid,
        "buyers": {"early": opts.early, "late": opts.late},
        "sale": await _sale(shop, gid),
        "window": (began, ended, opens),
        "orders": orders.figures(opens),
        "outcomes": outcomes,
        "served": served,
        "rankCorrelation": {
            # The place in line (rank) is the admission order: the front is admitted first.
            "preQueue": spearman([r.arrival for r in pre], [r.rank for r in pre]),
            "late": spearman([r.arrival for r in late], [r.rank for r in late]),
        },
        "admitted": figures.admitted_total,
        "passesUsed": figures.used,
        "passesExpired": figures.expired,
        "soldOutAt": sold_out_at,
        "toldSoldOut": len(told),
        "lastToldAfterSoldOutSeconds": (
            round(max(told) - sold_out_at, 3) if told and sold_out_at else None
        ),
        "seconds": round(took, 2),
        "admitPerSecond": opts.admit_rate,
    }


async def _bare_sale(
    shop: Shop, opts: RoomBenchOptions, admin: int, accounts: list[tuple[int, str]], base: str
) -> dict[str, Any]:
    opens = time.time() + 2.0
    gid = await _goods(shop, admin, "Bare Sale", opts.stock, opens)
    buyers = [Buyer(uid, token, early=True) for uid, token in accounts]
    await asyncio.sleep(max(0.0, opens - 0.3 - time.time()))  # they start pressing just before
    began = time.time()
    orders = await _run_buyers("bare", base, gid, buyers, opens + opts.max_seconds)
    ended = time.time()
    outcomes: dict[str, int] = {}
    for b in buyers:
        outcomes[b.outcome] = outcomes.get(b.outcome, 0) + 1
    return {
        "goodsId": gid,
        "buyers": len(buyers),
        "sale": await _sale(shop, gid),
        "window": (began, ended, opens),
        "orders": orders.figures(opens),
        "outcomes": outcomes,
        "seconds": round(ended - began, 2),
        "reconnects": sum(b.reconnects for b in buyers),
    }


def _waits(sale: dict[str, Any]) -> str:
    """How long the server's event loop(s) waited runnable for a CPU during the sale."""
    servers = [v for k, v in sale.get("cpuWaits", {}).items() if k.startswith("server")]
    if not servers:
        return "-"
    total = sum(v["waitSeconds"] for v in servers) * 1000
    return f"{total:.0f} / {max(v['worstSecondWaitMs'] for v in servers):.0f}"


def summary_rows(out: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(figure, with the room, bare) for the report table."""
    room, bare = out["room"], out["bare"]
    ro, bo = room["orders"], bare["orders"]
    rs, bs = room["serverOrders"], bare["serverOrders"]
    rl, bl = room["clientLoopLag"], bare["clientLoopLag"]
    return [
        (
            "buyers",
            f"{room['buyers']['early']} early + {room['buyers']['late']} late",
            bare["buyers"],
        ),
        (
            "units sold / stock",
            f"{room['sale']['sold']} / {room['sale']['stock']}",
            f"{bare['sale']['sold']} / {bare['sale']['stock']}",
        ),
        ("oversold", room["sale"]["oversold"], bare["sale"]["oversold"]),
        ("order requests", ro.get("requests"), bo.get("requests")),
        ("order p50, server (ms)", rs.get("p50Ms"), bs.get("p50Ms")),
        ("order p99, server (ms)", rs.get("p99Ms"), bs.get("p99Ms")),
        ("worst 1-s p99, server (ms)", rs.get("worstSecondP99Ms"), bs.get("worstSecondP99Ms")),
        ("order p50, client (ms)", ro.get("p50Ms"), bo.get("p50Ms")),
        ("order p99, client (ms)", ro.get("p99Ms"), bo.get("p99Ms")),
        ("worst 1-s p99, client (ms)", ro.get("worstSecondP99Ms"), bo.get("worstSecondP99Ms")),
        ("server loop's CPU wait, total / worst 1 s (ms)", _waits(room), _waits(bare)),
        (
            "client loop lag p99 / max (ms)",
            f"{rl.get('p99Ms')} / {rl.get('maxMs')}",
            f"{bl.get('p99Ms')} / {bl.get('maxMs')}",
        ),
        ("sale took (s)", room["seconds"], bare["seconds"]),
        ("server CPU (s)", room.get("serverCpuSeconds"), bare.get("serverCpuSeconds")),
        (
            "served: pre-queue / late",
            f"{room['served']['preQueue']} / {room['served']['late']}",
            "-",
        ),
        ("rank corr. pre-queue (~0)", room["rankCorrelation"]["preQueue"], "-"),
        ("rank corr. late, FIFO (~1)", room["rankCorrelation"]["late"], "-"),
        ("passes used / expired", f"{room['passesUsed']} / {room['passesExpired']}", "-"),
        ("told SOLD_OUT", room["toldSoldOut"], "-"),
        ("sell-out → last told (s)", room["lastToldAfterSoldOutSeconds"], "-"),
    ]
