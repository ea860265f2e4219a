"""Live stock for every watcher of a process from one poll: the feed of the stock stream.

However many buyers watch, a process reads the stock of all watched goods together
(``live_stocks``: one round trip to Redis) every ``interval`` seconds, and only while someone
watches. A figure that changed (stock, or ``saleOpen`` at the opening) is encoded once and handed
to each watcher of those goods, who keeps only the latest: a slow reader skips figures, never
falls behind. The goods rows (for ``saleOpen``) are read again every ``GOODS_REFRESH`` seconds, so
an edited opening time is followed too.

Polling instead of a Redis subscription keeps the stock scripts as they are (no publish on the
order path); a change reaches watchers within about ``interval``, and the cost is one small read
per tick per process, not per watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import orjson

from miri.server import sse

log = logging.getLogger("miri.server")
INTERVAL = 0.05  # seconds between polls while anyone watches
GOODS_REFRESH = 1.0  # seconds between reads of the watched goods' rows (opening times)
QUIET_CHECK = 0.25  # seconds between looks for watchers due a keep-alive


@dataclass
class Figure:
    """What a watcher is sent: ``data`` is the encoded event, made once for all watchers."""

    stock: int
    sale_open: bool
    data: bytes
    at: float = field(default_factory=time.time)


class _Watcher:
    __slots__ = ("changed", "keepalive", "latest", "sent_at")

    def __init__(self, latest: Figure | None, keepalive: float) -> None:
        self.latest = latest
        self.keepalive = keepalive
        self.sent_at = time.monotonic()
        self.changed = asyncio.Event()
        if latest is not None:
            self.changed.set()


class StockWatch:
    """One per process (per app). ``follow(goods_id)`` yields figures on change."""

    def __init__(self, shop: Any, interval: float = INTERVAL) -> None:
        self._shop = shop
        self.interval = interval
        self._watchers: dict[int, set[_Watcher]] = {}
        self._figures: dict[int, Figure] = {}
        self._goods: dict[int, Any] = {}
        self._goods_read_at = 0.0
        self._quiet_checked_at = 0.0
        self._task: asyncio.Task | None = None
        self._closed = False
        self.polls = 0  # how many times the stock was read (for tests and the bench)

    @property
    def watchers(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    async def follow(self, goods_id: int, keepalive: float) -> AsyncGenerator[Figure, None]:
        """The current figure at once, then each change; the latest figure again after
        ``keepalive`` seconds without one. Raises NotFound (before yielding) for unknown goods."""
        goods = await self._shop.goods.get(goods_id)  # NotFound: no stream at all
        self._goods[goods_id] = goods
        first = await self._read_one(goods_id)
        watcher = _Watcher(first, keepalive)
        self._watchers.setdefault(goods_id, set()).add(watcher)
        self._ensure_polling()
        try:
            while not self._closed:
                # No timer per watcher: the poll wakes the quiet ones for their keep-alive.
                await watcher.changed.wait()
                if self._closed:
                    return
                watcher.changed.clear()
                if watcher.latest is not None:
                    watcher.sent_at = time.monotonic()
                    yield watcher.latest
        finally:
            group = self._watchers.get(goods_id)
            if group is not None:
                group.discard(watcher)
                if not group:
                    del self._watchers[goods_id]
                    self._figures.pop(goods_id, None)
                    self._goods.pop(goods_id, None)

    async def close(self) -> None:
        """End every stream (the server is stopping) and the poll."""
        self._closed = True
        for group in self._watchers.values():
            for watcher in group:
                watcher.changed.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- the one poll -------------------------------------------------------------------------
    def _ensure_polling(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="stock-watch")

    async def _poll(self) -> None:
        while self._watchers and not self._closed:
            await asyncio.sleep(self.interval)
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - watchers keep the last figure; retry
                log.warning("stock watch: reading live stock failed: %r", exc)

    async def _tick(self) -> None:
        ids = list(self._watchers)
        if not ids:
            return
        now = time.monotonic()
        if now - self._goods_read_at >= GOODS_REFRESH:
            self._goods.update(await self._shop.goods.get_many(ids))
            self._goods_read_at = now
        stocks = await self._shop.goods.live_stocks(ids)
        self.polls += 1
        for goods_id in ids:
            if goods_id in stocks:
                self._publish(goods_id, stocks[goods_id])
        if now - self._quiet_checked_at >= min(1.0, self._shortest_keepalive()):
            self._quiet_checked_at = now
            self._wake_quiet(now)

    def _shortest_keepalive(self) -> float:
        return min((w.keepalive for group in self._watchers.values() for w in group), default=1.0)

    def _wake_quiet(self, now: float) -> None:
        """The same figure again to every watcher that heard nothing for its keep-alive."""
        for group in self._watchers.values():
            for watcher in group:
                if now - watcher.sent_at >= watcher.keepalive and not watcher.changed.is_set():
                    watcher.changed.set()

    async def _read_one(self, goods_id: int) -> Figure:
        figure = self._figures.get(goods_id)
        if figure is not None:
            return figure
        stock = await self._shop.goods.live_stock(goods_id)
        self._publish(goods_id, stock)
        return self._figures[goods_id]

    def _publish(self, goods_id: int, stock: int) -> None:
        goods = self._goods.get(goods_id)
        sale_open = bool(goods is None or goods.sale_open(self._shop.clock.now()))
        last = self._figures.get(goods_id)
        if last is not None and last.stock == stock and last.sale_open == sale_open:
            return
        payload = {"goodsId": goods_id, "stockQuantity": stock, "saleOpen": sale_open}
        figure = Figure(stock, sale_open, sse.event(orjson.dumps(payload)))
        self._figures[goods_id] = figure
        for watcher in self._watchers.get(goods_id, ()):
            watcher.latest = figure
            watcher.changed.set()
