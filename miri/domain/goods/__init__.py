"""Goods: the catalogue, live stock in Redis (Lua), sale-open gating, buyer limits, wishlist."""

from miri.domain.goods.check import StockMismatch, StockReport
from miri.domain.goods.model import CATEGORIES, Goods, GoodsView
from miri.domain.goods.service import GoodsService
from miri.domain.goods.stock import LiveStock
from miri.domain.goods.wishlist import WishlistEntry, WishlistRow, WishlistService

__all__ = [
    "CATEGORIES",
    "Goods",
    "GoodsView",
    "GoodsService",
    "LiveStock",
    "StockMismatch",
    "StockReport",
    "WishlistEntry",
    "WishlistRow",
    "WishlistService",
]
