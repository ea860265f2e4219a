"""What the dashboard shows: the servers on its data dir, and one snapshot of the shop (with every
host serving it, from the heartbeat table).

Everything here is async. Figures come from the shop's services, and what spans modules from
the read side (``miri.domain.views``: the latest order items, and the dashboard's own sales per
goods and orders per second); this module finds the servers on the data dir and puts one
snapshot together. The panels only format it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from miri.domain.views import dashboard as views
from miri.domain.views.orders import OrderItemView
from miri.server.presence import servers
from miri.shop import Shop

log = logging.getLogger(__name__)

GOODS_ROWS = 100  # newest goods shown
ORDER_ROWS = 50  # latest order items shown
RATE_WINDOW = 300  # seconds of orders-per-second history (the chart's width)


# -- the server on this data dir -----------------------------------------------------------------
@dataclass
class ServerInfo:
    pid: int
    url: str
    started_at: float
    health: str  # "ok", "degraded", or why the probe failed
    overload: dict[str, Any] | None = None  # its in-flight bound, as /api/health reports it


def _probe_url(url: str) -> str:
    for wildcard in ("0.0.0.0", "[::]"):
        url = url.replace(f"//{wildcard}:", "//127.0.0.1:" if "." in wildcard else "//[::1]:")
    return url


async def _probe(session: aiohttp.ClientSession, url: str) -> tuple[str, dict[str, Any] | None]:
    try:
        async with session.get(f"{_probe_url(url)}/api/health") as resp:
            body = await resp.json(content_type=None)
            data = body.get("data") or {}
            return str(data.get("status") or resp.status), data.get("overload")
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return f"no answer ({exc.__class__.__name__})", None


async def find_servers(data_dir: Any) -> list[ServerInfo]:
    """Live ``miri serve`` processes on this data dir, each asked for its health (1 s bound)."""
    records = await asyncio.to_thread(servers, data_dir)
    if not records:
        return []
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        health = await asyncio.gather(*(_probe(session, r["url"]) for r in records))
    return [
        ServerInfo(int(r["pid"]), r["url"], float(r["startedAt"]), h, bound)
        for r, (h, bound) in zip(records, health, strict=True)
    ]


# -- orders per second ----------------------------------------------------------------------------
class OrderRate:
    """Orders per second over the last ``window`` seconds, read incrementally by row id."""

    def __init__(self, window: int = RATE_WINDOW) -> None:
        self.window = window
        self.counts: dict[int, int] = {}
        self.last_id: int | None = None

    async def update(self, shop: Shop, now: float) -> list[int]:
        if self.last_id is None:
            rows = await views.orders_placed(shop.db, since=now - self.window)
            self.last_id = await views.last_order_id(shop.db)
        else:
            rows = await views.orders_placed(shop.db, after_id=self.last_id)
        for order_id, placed_at in rows:
            second = int(placed_at)
            self.counts[second] = self.counts.get(second, 0) + 1
            self.last_id = max(self.last_id, order_id)
        first = int(now) - self.window + 1
        for second in [s for s in self.counts if s < first]:
            del self.counts[second]
        return [self.counts.get(s, 0) for s in range(first, int(now) + 1)]


# -- one snapshot ---------------------------------------------------------------------------------
@dataclass
class GoodsRow:
    goods_id: int
    name: str
    category: str
    price: int
    opens: datetime | None
    open: bool
    stock_total: int
    live: int | None
    sold: int
    buyers: int


@dataclass
class JobRow:
    name: str
    schedule: str
    next_run: datetime | None
    description: str
    last_result: Any = None


@dataclass(eq=False)  # each refresh is news, even when every figure is the same
class Snapshot:
    taken_at: datetime  # the shop's clock
    checked_at: float = field(default_factory=time.time)  # wall time: heartbeats are wall time
    goods: list[GoodsRow] = field(default_factory=list)
    goods_total: int = 0
    orders: list[OrderItemView] = field(default_factory=list)
    orders_total: int = 0
    rate: list[int] = field(default_factory=list)
    payments: dict[str, int] = field(default_factory=dict)
    bus: dict[str, Any] = field(default_factory=dict)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[JobRow] = field(default_factory=list)
    hosts: list[views.ServingHost] = field(default_factory=list)  # the shop's, on any machine
    rooms: list[dict[str, Any]] = field(default_factory=list)  # waiting rooms' figures
    health: dict[str, Any] = field(default_factory=dict)
    redis: dict[str, Any] = field(default_factory=dict)
    sqlite: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # section -> why it is missing


async def _goods(shop: Shop, now: datetime) -> tuple[list[GoodsRow], int]:
    listed, total = await shop.goods.listing(0, GOODS_ROWS)
    sales = await views.goods_sales(shop.db, [g.goods_id for g, _ in listed])
    none = views.Sales(0, 0)
    rows = [
        GoodsRow(
            goods_id=goods.goods_id,
            name=goods.name,
            category=goods.category,
            price=goods.price,
            opens=goods.reservation_start,
            open=goods.sale_open(now),
            stock_total=goods.stock_total,
            live=live,
            sold=sales.get(goods.goods_id, none).sold,
            buyers=sales.get(goods.goods_id, none).buyers,
        )
        for goods, live in listed
    ]
    return rows, total


async def _redis_info(shop: Shop) -> dict[str, Any]:
    started = time.perf_counter()
    await shop.redis.client.ping()
    ping_ms = (time.perf_counter() - started) * 1000
    info = await shop.redis.client.info()
    return {
        "mode": shop.redis.mode,
        "version": info.get("redis_version"),
        "memory": info.get("used_memory_human"),
        "clients": info.get("connected_clients"),
        "keys": sum(v.get("keys", 0) for k, v in info.items() if k.startswith("db")),
        "ping_ms": round(ping_ms, 2),
    }


def _sizes(path: Any) -> dict[str, int]:
    out = {}
    for suffix in ("", "-wal"):
        try:
            out["file" if not suffix else "wal"] = os.path.getsize(f"{path}{suffix}")
        except OSError:
            out["file" if not suffix else "wal"] = 0
    return out


async def _sqlite_info(shop: Shop) -> dict[str, Any]:
    sizes = await asyncio.to_thread(_sizes, shop.db.path)
    return {
        "path": str(shop.db.path),
        "schema": getattr(shop.db, "schema_version", None),
        **sizes,
    }


def _jobs(shop: Shop, now: datetime) -> list[JobRow]:
    return [
        JobRow(
            j.name,
            j.schedule,
            j.next_run(now),
            j.description,
            shop.jobs.last_results.get(j.name),
        )
        for j in shop.jobs.list()
    ]


async def collect(shop: Shop, rate: OrderRate) -> Snapshot:
    """Every section at once; a section that fails is reported, the others still show."""
    now = shop.clock.now()
    snap = Snapshot(taken_at=now)

    async def goods() -> None:
        snap.goods, snap.goods_total = await _goods(shop, now)

    async def orders() -> None:
        latest = await shop.order_views.list(page=0, size=ORDER_ROWS)
        snap.orders, snap.orders_total = latest.items, latest.total_items

    async def chart() -> None:
        snap.rate = await rate.update(shop, now.timestamp())

    async def payments() -> None:
        snap.payments = await shop.payments.outcomes()

    async def bus() -> None:
        snap.bus = await shop.bus.views.status()
        snap.dead_letters = await shop.bus.views.dead_letters(limit=5)

    async def health() -> None:
        snap.health = await shop.health()

    async def redis() -> None:
        snap.redis = await _redis_info(shop)

    async def sqlite() -> None:
        snap.sqlite = await _sqlite_info(shop)

    async def jobs() -> None:
        snap.jobs = _jobs(shop, now)

    async def hosts() -> None:
        snap.hosts = await views.shop_hosts(shop.db, time.time())

    async def rooms() -> None:
        snap.rooms = await shop.queue.statuses()

    parts: dict[str, Callable[[], Awaitable[None]]] = {
        "goods": goods,
        "orders": orders,
        "chart": chart,
        "payments": payments,
        "bus": bus,
        "health": health,
        "redis": redis,
        "sqlite": sqlite,
        "jobs": jobs,
        "hosts": hosts,
        "rooms": rooms,
    }
    results = await asyncio.gather(*(fn() for fn in parts.values()), return_exceptions=True)
    for name, result in zip(parts, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            snap.errors[name] = f"{result.__class__.__name__}: {result}"
    return snap
