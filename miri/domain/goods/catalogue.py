"""The catalogue: register, edit and restock goods, and read them (one, a listing, a goods page).

Edits write the database first, then Redis: if Redis then fails, it shows too little or an old
rule until the check repairs it, never stock that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Any, Protocol

from miri.domain.errors import NotFound, ValidationFailed
from miri.domain.goods import model
from miri.domain.goods.cache import GoodsCache, SoldOutMarks
from miri.domain.goods.figures import StockFigures
from miri.domain.goods.model import Goods, GoodsView
from miri.domain.goods.store import Filters, GoodsStore, NewGoods
from miri.infra.clock import Clock

EDITABLE = ("name", "description", "price", "category", "reservation_start", "per_buyer_limit")


class Sellers(Protocol):
    """What the catalogue asks the users module about a seller."""

    async def seller_exists(self, user_id: int) -> bool: ...

    async def seller_name(self, user_id: int) -> str | None: ...


def _check(errors: dict[str, str], name: str, rule: Callable[..., Any], *args: Any) -> Any:
    try:
        return rule(*args)
    except ValueError as exc:
        errors[name] = str(exc)
        return None


class Catalogue:
    def __init__(
        self,
        *,
        store: GoodsStore,
        figures: StockFigures,
        cache: GoodsCache,
        marks: SoldOutMarks,
        clock: Clock,
        zone: tzinfo,
        sellers: Sellers | None = None,
    ) -> None:
        self._store = store
        self._figures = figures
        self._live = figures.live
        self._cache = cache
        self._marks = marks
        self._clock = clock
        self.zone = zone
        self._sellers = sellers

    def _aware(self, when: datetime | None) -> datetime | None:
        if when is not None and when.tzinfo is None:
            return when.replace(tzinfo=self.zone)
        return when

    def _future(self, errors: dict[str, str], when: datetime | None) -> datetime | None:
        when = self._aware(when)
        if when is not None and when <= self._clock.now():
            errors["reservationStartTime"] = "reservationStartTime must be in the future"
        return when

    async def register(
        self,
        seller_id: int,
        *,
        name: str,
        description: str,
        price: int,
        stock: int,
        category: str,
        reservation_start: datetime | None = None,
        per_buyer_limit: int | None = None,
    ) -> Goods:
        """New goods; the caller becomes the seller."""
        errors: dict[str, str] = {}
        name = _check(errors, "goodsName", model.goods_name, name)
        description = _check(errors, "goodsDescription", model.description, description)
        _check(errors, "goodsPrice", model.price, price)
        _check(errors, "stockQuantity", model.stock_quantity, stock)
        _check(errors, "category", model.category, category)
        _check(errors, "perBuyerLimit", model.per_buyer_limit, per_buyer_limit)
        start = self._future(errors, reservation_start)
        if errors:
            raise ValidationFailed(data=errors)
        if self._sellers is not None and not await self._sellers.seller_exists(seller_id):
            raise NotFound("no such seller")
        new = NewGoods(
            seller_id=seller_id,
            name=name,
            description=description,
            price=price,
            category=category,
            reservation_start=start.timestamp() if start else None,
            per_buyer_limit=per_buyer_limit,
            stock=stock,
        )
        goods_id = await self._store.insert(new, self._clock.timestamp())
        await self._figures.restore([goods_id])
        return await self.get(goods_id)

    async def update(self, actor_id: int, goods_id: int, changes: Mapping[str, Any]) -> Goods:
        """Edit goods; only their seller may (403 otherwise). Keys are those of ``EDITABLE``."""
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise ValueError(f"not editable: {sorted(unknown)}")
        errors: dict[str, str] = {}
        values = dict(changes)
        if not values:
            raise ValidationFailed("give at least one field to change", {"body": "no fields"})
        rules = {
            "name": ("goodsName", model.goods_name),
            "description": ("goodsDescription", lambda v: model.description(v, 10)),
            "price": ("goodsPrice", model.price),
            "category": ("category", model.category),
            "per_buyer_limit": ("perBuyerLimit", model.per_buyer_limit),
        }
        for key, (field, rule) in rules.items():
            if key in values:
                if values[key] is None and key != "per_buyer_limit":
                    errors[field] = f"{field} cannot be null"
                else:
                    values[key] = _check(errors, field, rule, values[key])
        if "reservation_start" in values:
            start = self._future(errors, values["reservation_start"])
            values["reservation_start"] = start.timestamp() if start else None
        if errors:
            raise ValidationFailed(data=errors)
        values["updated_at"] = self._clock.timestamp()
        await self._store.edit(actor_id, goods_id, values)
        self._cache.forget(goods_id)
        goods = await self.get(goods_id)
        # A new version token in Redis tells every process's cache, not only this one's.
        open_at = repr(goods.reservation_start.timestamp()) if goods.reservation_start else ""
        if not await self._live.set_rules(goods_id, open_at, goods.per_buyer_limit or 0):
            await self._figures.restore([goods_id])
        return goods

    async def restock(self, actor_id: int, is_admin: bool, goods_id: int, quantity: int) -> int:
        """Add stock (seller or admin); returns the live stock after it."""
        errors: dict[str, str] = {}
        _check(errors, "quantity", model.restock_quantity, quantity)
        if errors:
            raise ValidationFailed(data=errors)
        await self._store.add_stock(actor_id, is_admin, goods_id, quantity, self._clock.timestamp())
        self._marks.clear(goods_id)
        self._cache.forget(goods_id)
        stock = await self._live.restock(goods_id, quantity)
        if stock is None:  # Redis lost these goods: the rebuild already counts the restock
            return await self._figures.stock(goods_id)
        return stock

    async def get(self, goods_id: int) -> Goods:
        found = await self.get_many([goods_id])
        if goods_id not in found:
            raise NotFound("no such goods")
        return found[goods_id]

    async def get_many(self, ids: Iterable[int]) -> dict[int, Goods]:
        """Goods by id, read from the database; ids that do not exist are left out."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        return await self._store.get_many(wanted)

    async def listing(
        self,
        page: int,
        size: int,
        *,
        category: str | None = None,
        q: str | None = None,
        seller_id: int | None = None,
    ) -> tuple[list[tuple[Goods, int]], int]:
        """A page of goods, newest first, each with its live stock (read from the replica)."""
        goods, total = await self._store.page(page, size, Filters(category, q, seller_id))
        stocks = await self._figures.stocks([g.goods_id for g in goods], replica=True)
        return [(g, stocks.get(g.goods_id, 0)) for g in goods], total

    async def detail(self, goods_id: int) -> GoodsView:
        """The goods page: seller name, live stock and whether the sale is open."""
        goods = await self.get(goods_id)
        stock = (await self._figures.stocks([goods_id], replica=True)).get(goods_id, 0)
        seller = None
        if self._sellers is not None:
            try:
                seller = await self._sellers.seller_name(goods.seller_id)
            except NotFound:
                seller = None
        return GoodsView(goods, stock, seller, goods.sale_open(self._clock.now()))
