"""Keeping Redis true to the database: the rebuild, the start-up check, the stock check, the
write-back.

A rebuild starts a new stock epoch: Redis's epoch mark is taken away (reservations answer
UNVERIFIED, nothing taken), one database transaction bumps ``shop_meta.stock_epoch`` and reads the
truth (stock minus every active order item), Redis is loaded with it, and the mark names the new
epoch. An order reserved before the bump and stored after it is refused by its own transaction
(``store.check_epoch``): its units were given back by the rebuild, which is what makes a rebuild
safe while other hosts take orders. Releases carry the epoch they were committed in, so one is
never counted twice (see ``stock.RELEASE``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Protocol

from miri.domain.goods import check
from miri.domain.goods.cache import GoodsCache
from miri.domain.goods.stock import REBUILD_LOCK, LiveStock
from miri.domain.goods.store import GoodsStore
from miri.infra.clock import Clock
from miri.infra.singleflight import SingleFlight

log = logging.getLogger(__name__)
LOCK_TTL = 60  # seconds: a rebuilder that died lets the next one in after this


ORPHAN_SWEEP_EVERY = 15.0  # seconds between the leader's looks for hosts that died


class GoneHost(Protocol):
    @property
    def host_id(self) -> str: ...


class ServingHosts(Protocol):
    """The processes serving the shop, from their heartbeats (``miri.infra.hosts.Hosts``)."""

    async def others(self) -> Sequence[object]: ...

    async def beat(self) -> None: ...

    async def gone(self) -> Sequence[GoneHost]: ...

    async def mark_finished(self, host_id: str) -> None: ...


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
        self._rebuilds = SingleFlight()

    async def check_stock(self, repair: bool = False) -> check.StockReport:
        """Compare live stock with the database's truth; ``repair`` rewrites Redis where it
        differs.

        A repair while other processes take orders may hand back stock that an order not yet
        committed holds; the server's start-up check and ``rebuild`` avoid that.
        """
        return await check.check_stock(self._store, self._live, repair=repair)

    async def rebuild(self, why: str) -> check.StockReport:
        """Rebuild live stock under a new stock epoch (concurrent callers share one run)."""
        return await self._rebuilds.run("rebuild", lambda: self._locked(self._rebuild, why))

    async def rebuild_if_unverified(self) -> None:
        """Rebuild unless Redis already holds the database's current epoch (another process
        may have rebuilt it while this one waited)."""

        async def maybe(_: str) -> check.StockReport | None:
            if await self._live.epoch() == await self._store.epoch():
                return None
            return await self._rebuild("Redis holds no verified stock")

        await self._rebuilds.run("rebuild", lambda: self._locked(maybe, "unverified"))

    async def _rebuild(self, why: str) -> check.StockReport:
        await self._live.set_epoch(None)  # reservations refuse from here until the load is done
        epoch, truth = await self._store.new_epoch()
        report = await check.check_stock(self._store, self._live, repair=True, truth=truth)
        await self._live.set_epoch(epoch)
        self._cache.clear()
        log.warning(
            "live stock rebuilt (%s): epoch %d, %d goods, %d repaired",
            why,
            epoch,
            report.checked,
            report.repaired,
        )
        return report

    async def _locked(self, work, why: str):  # noqa: ANN001, ANN202 - private
        """Rebuilds and start-up checks of every process run one at a time."""
        redis = self._live.primary
        token = uuid.uuid4().hex
        while not await redis.set(REBUILD_LOCK, token, nx=True, ex=LOCK_TTL):
            await asyncio.sleep(0.05)
        try:
            return await work(why)
        finally:
            if await redis.get(REBUILD_LOCK) == token:
                await redis.delete(REBUILD_LOCK)

    async def startup_check(self) -> check.StockReport:
        """Before serving (and after the embedded Redis came back): make Redis true.

        A full rebuild when Redis holds no verified epoch (new, emptied, restarted, failed over)
        or when no process serves the shop (not this one yet, and no other live host in the
        heartbeat table: reservations a crashed server left with no order go back). Otherwise
        Redis is trusted: only goods it lost are restored and other differences reported. Each
        start-up writes its heartbeat before letting the next one look.
        """

        async def work(_: str) -> check.StockReport:
            others = await self._hosts.others() if self._hosts else []
            busy = self._serving or bool(others)
            verified = await self._live.epoch() == await self._store.epoch()
            if not busy or not verified:
                report = await self._rebuild("start-up" if not busy else "start-up, unverified")
            else:
                report = await check.check_stock(
                    self._store, self._live, repair=True, only_missing=True
                )
            if self._hosts:
                await self._hosts.beat()
            self._serving = True
            return report

        report = await self._locked(work, "start-up")
        self._cache.clear()
        return report

    async def sync_stock(self) -> int:
        """Write live stock of changed goods back to ``goods.stock_synced``; how many were."""
        return await check.sync_stock(self._store, self._live, self._clock.timestamp())


class OrphanSweep:
    """On the leader: a host that died between reserving units in Redis and committing their
    order left them reserved for no order. When the heartbeat table shows such a host gone
    (unseen for ``hosts.GONE`` seconds, or of this machine with its process gone), live stock is
    rebuilt under a new epoch, which gives those units back, and the host is marked finished.
    """

    def __init__(self, upkeep: StockUpkeep, hosts: ServingHosts, every: float | None = None):
        self._upkeep = upkeep
        self._hosts = hosts
        self._every = ORPHAN_SWEEP_EVERY if every is None else every
        self._task: asyncio.Task | None = None

    async def sweep(self) -> int:
        """One look; how many gone hosts were dealt with."""
        gone = list(await self._hosts.gone())
        if not gone:
            return 0
        names = ", ".join(h.host_id for h in gone)
        await self._upkeep.rebuild(f"hosts gone: {names}")
        for host in gone:
            await self._hosts.mark_finished(host.host_id)
        return len(gone)

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # noqa: BLE001 - the database or Redis away: look again next time
                log.exception("looking for hosts that died failed")
            await asyncio.sleep(self._every)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="miri-orphans")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
