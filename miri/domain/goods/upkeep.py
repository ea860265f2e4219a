"""Keeping Redis true to the database: the start-up rebuild, the stock check, the write-back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Protocol

from miri.domain.goods import check
from miri.domain.goods.cache import GoodsCache
from miri.domain.goods.stock import REBUILD_LOCK, LiveStock
from miri.domain.goods.store import GoodsStore
from miri.infra.clock import Clock


class ServingHosts(Protocol):
    """The processes serving the shop, from their heartbeats (``miri.infra.hosts.Hosts``)."""

    async def others(self) -> Sequence[object]: ...

    async def beat(self) -> None: ...


class StockUpkeep:
    def __init__(
        self,
        *,
        store: GoodsStore,
        live: LiveStock,
        cache: GoodsCache,
        clock: Clock,
        hosts: ServingHosts | None = None,
    ) -> None:
        self._store = store
        self._live = live
        self._cache = cache
        self._clock = clock
        self._hosts = hosts
        self._serving = False  # this process has passed its start-up check and takes orders

    async def check_stock(self, repair: bool = False) -> check.StockReport:
        """Compare live stock with the database's truth; ``repair`` rewrites Redis where it
        differs.

        A repair while other processes take orders may hand back stock that an order not yet
        committed holds; the server's start-up check avoids that (``startup_check``).
        """
        return await check.check_stock(self._store, self._live, repair=repair)

    async def startup_check(self) -> check.StockReport:
        """Before serving (and after the embedded Redis came back): rebuild Redis.

        Everything is rewritten when no process serves the shop (nobody can hold a reservation
        whose order is not committed yet): not this one yet, and no other live host in the
        heartbeat table. Otherwise only goods Redis lost are restored and other differences are
        reported. Start-ups are serialised by a lock in Redis, and each writes its heartbeat
        before letting the next one look.
        """
        redis = self._live.primary
        token = uuid.uuid4().hex
        while not await redis.set(REBUILD_LOCK, token, nx=True, ex=60):
            await asyncio.sleep(0.05)
        try:
            others = await self._hosts.others() if self._hosts else []
            busy = self._serving or bool(others)
            report = await check.check_stock(
                self._store, self._live, repair=True, only_missing=busy
            )
            if self._hosts:
                await self._hosts.beat()
            self._serving = True
        finally:
            if await redis.get(REBUILD_LOCK) == token:
                await redis.delete(REBUILD_LOCK)
        self._cache.clear()
        return report

    async def sync_stock(self) -> int:
        """Write live stock of changed goods back to ``goods.stock_synced``; how many were."""
        return await check.sync_stock(self._store, self._live, self._clock.timestamp())
