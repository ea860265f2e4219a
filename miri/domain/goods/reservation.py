"""The order path's stock calls: reserve (one Redis round trip) and release (with retries).

Goods metadata comes from the in-process cache; the Lua answer carries each goods' version
token, so an edit made by any process is noticed without asking Redis again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from redis.exceptions import RedisError

from miri.domain.errors import (
    LimitExceeded,
    SaleNotOpen,
    ShopError,
    SoldOut,
    Unavailable,
    ValidationFailed,
)
from miri.domain.goods.cache import GoodsCache, SoldOutMarks
from miri.domain.goods.figures import StockFigures
from miri.domain.goods.model import Goods
from miri.domain.goods.stock import RELEASE_EARLY, RELEASE_MISSING, LiveStock
from miri.infra.clock import Clock

log = logging.getLogger(__name__)
RELEASE_RETRY_FOR = 3000  # seconds; under the hour a release token is kept in Redis
_REFUSALS: dict[str, type[ShopError]] = {
    "SOLD_OUT": SoldOut,
    "SALE_NOT_OPEN": SaleNotOpen,
    "LIMIT_EXCEEDED": LimitExceeded,
}


class Reserved(dict[int, Goods]):
    """The goods reserved, by id, and the stock epoch their units were taken in (None: the
    stock store keeps no epochs, as the benchmark's SQLite baseline)."""

    def __init__(self, goods: dict[int, Goods], epoch: int | None) -> None:
        super().__init__(goods)
        self.epoch = epoch


class Reservations:
    def __init__(
        self,
        *,
        live: LiveStock,
        figures: StockFigures,
        cache: GoodsCache,
        marks: SoldOutMarks,
        clock: Clock,
        verify: Callable[[], Awaitable[None]],
    ) -> None:
        self._verify = verify  # rebuilds live stock when Redis holds no verified epoch
        self._live = live
        self._figures = figures
        self._cache = cache
        self._marks = marks
        self._clock = clock
        self._retries: set[asyncio.Task] = set()  # releases waiting for Redis to answer

    async def reserve(self, user_id: int, goods_id: int, quantity: int) -> Goods:
        """Take ``quantity`` out of live stock for ``user_id``, or raise why not."""
        return (await self.reserve_many(user_id, [(goods_id, quantity)]))[goods_id]

    async def reserve_many(self, user_id: int, items: Sequence[tuple[int, int]]) -> Reserved:
        """All items in one Lua call: every one is reserved, or none is."""
        wanted: dict[int, int] = {}
        for goods_id, quantity in items:
            if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
                raise ValidationFailed(data={"quantity": "quantity must be a positive integer"})
            wanted[goods_id] = wanted.get(goods_id, 0) + quantity
        if not wanted:
            raise ValidationFailed(data={"items": "nothing to reserve"})
        known = await self._cache.known(list(wanted))
        self._marks.refuse_if_marked(known, wanted)
        pairs = list(wanted.items())
        now = self._clock.timestamp()
        for _ in range(3):
            answer = await self._live.reserve(user_id, pairs, now)
            if answer.status == "MISSING":
                await self._figures.restore([pairs[answer.index][0]])
            elif answer.status == "UNVERIFIED":
                # A new, restarted or failed-over Redis: rebuilt from the database first.
                await self._verify()
            else:
                break
        else:
            raise Unavailable("live stock is being rebuilt; nothing was reserved, try again")
        if answer.status != "OK":
            goods = known[pairs[answer.index][0]][0]
            if answer.left == 0:
                self._marks.mark(goods.goods_id)
            error = _REFUSALS[answer.status]
            raise error(f"{error.message}: {goods.name}", {"goodsId": goods.goods_id})
        for (gid, _), ver in zip(pairs, answer.versions, strict=True):
            if known[gid][1] != ver:
                # Edited by some process since this one cached them. Edits write the database
                # before Redis, so a fresh read is at least as new as the version Redis answered.
                self._cache.forget(gid)
                known[gid] = await self._cache.fetch(gid)
        return Reserved({gid: known[gid][0] for gid in wanted}, answer.epoch)

    async def release(
        self, user_id: int, goods_id: int, quantity: int, epoch: int | None = None
    ) -> None:
        """Give stock and the buyer's count back (cancel, abort, expiry, return).

        Callers guarantee once-only with their own database flag, committed before this call; if
        Redis lost these goods, the next access rebuilds them from that committed truth.
        ``epoch``: the stock epoch read where that flag was committed; a rebuild after it has
        already counted the release, and a rebuild before it has to load Redis first.

        If Redis does not answer, the caller's commit still stands (the database is the truth),
        so this does not fail it: the release is sent again in the background until Redis is
        back, under a token that makes a repeat of a release that did land a no-op.
        """
        if quantity < 1:
            raise ValidationFailed(data={"quantity": "quantity must be a positive integer"})
        self._marks.clear(goods_id)
        token = uuid.uuid4().hex
        try:
            answer = await self._live.release(user_id, goods_id, quantity, token, epoch)
            if answer == RELEASE_EARLY and await self._live.epoch() is None:
                # Redis holds no epoch at all (restarted, failed over): rebuild it now, which
                # counts this release or loads the epoch it waits for, and send it again.
                await self._verify()
                answer = await self._live.release(user_id, goods_id, quantity, token, epoch)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("release for goods %s: Redis unavailable (%r); retrying", goods_id, exc)
            answer = RELEASE_EARLY
        if answer == RELEASE_EARLY:
            task = asyncio.get_running_loop().create_task(
                self._release_later(user_id, goods_id, quantity, token, epoch)
            )
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
        elif answer == RELEASE_MISSING:
            log.info(
                "release for goods %s: not in Redis; it is rebuilt from the database", goods_id
            )

    async def _release_later(
        self, user_id: int, goods_id: int, quantity: int, token: str, epoch: int | None
    ) -> None:
        delay, deadline = 0.05, time.monotonic() + RELEASE_RETRY_FOR
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                answer = await self._live.release(user_id, goods_id, quantity, token, epoch)
                if answer == RELEASE_EARLY:
                    if delay >= 1.0:  # no rebuild has loaded Redis yet: start one (or no-op)
                        await self._verify()
                    continue
            except (RedisError, OSError, TimeoutError):
                continue
            self._marks.clear(goods_id)
            log.info("release for goods %s: settled now that Redis answers", goods_id)
            return
        log.error(
            "release of %d for goods %s: Redis did not come back; `miri doctor --repair`"
            " (or the next start-up check) restores it from the database",
            quantity,
            goods_id,
        )

    async def close(self) -> None:
        """Stop retrying releases; the next start-up check restores what they would have."""
        if self._retries:
            log.warning("%d stock releases still wait for Redis at shutdown", len(self._retries))
        for task in list(self._retries):
            task.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)
