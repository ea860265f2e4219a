"""Live stock as the shop reads it: from Redis, restoring from the database what Redis lost."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from miri.domain.errors import NotFound
from miri.domain.goods.stock import Figures, LiveStock
from miri.domain.goods.store import GoodsStore
from miri.infra.singleflight import SingleFlight

log = logging.getLogger(__name__)


class StockFigures:
    def __init__(self, store: GoodsStore, live: LiveStock) -> None:
        self._store = store
        self.live = live
        self._restores = SingleFlight()

    async def stock(self, goods_id: int) -> int:
        """Live stock of one goods, from the primary (404 if it does not exist)."""
        stocks = await self.stocks([goods_id])
        if goods_id not in stocks:
            raise NotFound("no such goods")
        return stocks[goods_id]

    async def stocks(self, ids: Iterable[int], *, replica: bool = False) -> dict[int, int]:
        """Live stock per goods; goods that do not exist are left out."""
        ids = list(dict.fromkeys(ids))
        stocks = await self.live.stocks(ids, replica=replica)
        lost = [gid for gid, stock in stocks.items() if stock is None]
        if lost and replica:  # new goods may not have reached the replica yet
            stocks.update(await self.live.stocks(lost))
            lost = [gid for gid in lost if stocks[gid] is None]
        if lost:
            await self.restore(lost, missing_ok=True)
            stocks.update(await self.live.stocks(lost))
        return {gid: stock for gid, stock in stocks.items() if stock is not None}

    async def restore(self, ids: Iterable[int], *, missing_ok: bool = False) -> None:
        """Rebuild goods that Redis does not have from the database (first writer wins)."""
        for gid in ids:
            found = await self._restores.run(gid, lambda gid=gid: self._restore_one(gid))
            if not found and not missing_ok:
                raise NotFound("no such goods", {"goodsId": gid})

    async def _restore_one(self, goods_id: int) -> bool:
        figures = (await self._store.truth([goods_id])).get(goods_id)
        if figures is None:
            return False
        if figures.available < 0:
            log.error("goods %s: the database counts more sold than stocked", goods_id)
            figures = Figures(goods_id, 0, figures.buyers, figures.open, figures.limit)
        await self.live.load(figures, force=False)
        return True
