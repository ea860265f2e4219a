"""What one process remembers of goods between requests, so the hot path asks Redis once.

``GoodsCache``: goods rows with the version token Redis had when they were read; the answer of a
reservation carries the current token, so an edit made by any process is noticed without another
round trip. ``SoldOutMarks``: goods seen at stock 0, refused here for ``SOLD_OUT_MARK`` seconds.
Both are per process: another process's change is seen through Redis, at the latest after the
mark's half second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from miri.domain.errors import NotFound, SoldOut
from miri.domain.goods.model import Goods
from miri.domain.goods.stock import LiveStock
from miri.domain.goods.store import GoodsStore
from miri.infra.singleflight import SingleFlight

CACHE_MAX = 100_000
SOLD_OUT_MARK = 0.5  # seconds a sold-out answer is given without asking Redis

Known = tuple[Goods, str | None]  # goods, and the version token they were read under


class GoodsCache:
    def __init__(self, store: GoodsStore, live: LiveStock) -> None:
        self._store = store
        self._live = live
        self._known: dict[int, Known] = {}
        self._fetches = SingleFlight()

    async def known(self, ids: Iterable[int]) -> dict[int, Known]:
        """Each goods with its version; read once per process (404 for goods that do not exist)."""
        found: dict[int, Known] = {}
        for gid in ids:
            cached = self._known.get(gid)
            found[gid] = cached if cached is not None else await self.fetch(gid)
        return found

    async def fetch(self, goods_id: int) -> Known:
        """Read the goods afresh (concurrent callers share one read)."""
        return await self._fetches.run(goods_id, lambda: self._fetch(goods_id))

    async def _fetch(self, goods_id: int) -> Known:
        # The version is read before the row: a row newer than its version only costs a
        # reload later, never a stale price.
        ver = await self._live.version(goods_id)
        rows = await self._store.get_many([goods_id])
        if goods_id not in rows:
            raise NotFound("no such goods", {"goodsId": goods_id})
        self._remember(goods_id, (rows[goods_id], ver))
        return rows[goods_id], ver

    def _remember(self, goods_id: int, known: Known) -> None:
        if len(self._known) >= CACHE_MAX:
            self._known.clear()
        self._known[goods_id] = known

    def forget(self, goods_id: int) -> None:
        self._known.pop(goods_id, None)

    def clear(self) -> None:
        self._known.clear()


class SoldOutMarks:
    """The futile requests after a sell-out are answered here without a Redis round trip.

    Short-lived, because stock another process gives back is only seen through Redis; cleared
    at once on a release or restock in this process.
    """

    def __init__(self, on_fast_sold_out: Callable[[], None] | None = None) -> None:
        self._until: dict[int, float] = {}  # goods id -> until when (monotonic)
        self._on_fast_sold_out = on_fast_sold_out

    def mark(self, goods_id: int) -> None:
        self._until[goods_id] = time.monotonic() + SOLD_OUT_MARK

    def clear(self, goods_id: int) -> None:
        self._until.pop(goods_id, None)

    def refuse_if_marked(self, known: Mapping[int, Known], wanted: Iterable[int]) -> None:
        """Raise SoldOut for the first wanted goods still marked."""
        if not self._until:
            return
        now = time.monotonic()
        for goods_id in wanted:
            until = self._until.get(goods_id)
            if until is None:
                continue
            if until < now:
                del self._until[goods_id]
                continue
            if self._on_fast_sold_out:
                self._on_fast_sold_out()
            goods = known[goods_id][0]
            raise SoldOut(f"{SoldOut.message}: {goods.name}", {"goodsId": goods_id})
