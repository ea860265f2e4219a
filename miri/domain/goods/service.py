"""The goods module as its callers see it: one name for the catalogue and the stock calls.

Holds no logic: each call is a part's (``catalogue``, ``reservations``, ``figures``, ``upkeep``),
so the edges (routes, CLI, dashboard, bench) and the orders module keep one handle, ``shop.goods``.
"""

from __future__ import annotations

from datetime import tzinfo

from miri.domain.goods.cache import GoodsCache
from miri.domain.goods.catalogue import Catalogue
from miri.domain.goods.figures import StockFigures
from miri.domain.goods.reservation import Reservations
from miri.domain.goods.stock import LiveStock
from miri.domain.goods.upkeep import StockUpkeep


class GoodsService:
    def __init__(
        self,
        *,
        catalogue: Catalogue,
        reservations: Reservations,
        figures: StockFigures,
        upkeep: StockUpkeep,
        cache: GoodsCache,
    ) -> None:
        self.catalogue = catalogue
        self.reservations = reservations
        self.figures = figures
        self.upkeep = upkeep
        self.cache = cache
        self.live: LiveStock = figures.live
        self.zone: tzinfo = catalogue.zone
        # -- the catalogue
        self.register = catalogue.register
        self.update = catalogue.update
        self.restock = catalogue.restock
        self.get = catalogue.get
        self.get_many = catalogue.get_many
        self.listing = catalogue.listing
        self.detail = catalogue.detail
        # -- the order path
        self.reserve = reservations.reserve
        self.reserve_many = reservations.reserve_many
        self.release = reservations.release
        self.close = reservations.close
        # -- live figures, and keeping them true
        self.live_stock = figures.stock
        self.live_stocks = figures.stocks
        self.check_stock = upkeep.check_stock
        self.startup_check = upkeep.startup_check
        self.sync_stock = upkeep.sync_stock
