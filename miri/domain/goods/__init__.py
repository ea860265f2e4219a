"""Goods: the catalogue, live stock in Redis (Lua), sale-open gating, buyer limits, wishlist."""

from miri.domain.goods.check import StockMismatch, StockReport
from miri.domain.goods.model import CATEGORIES, Goods
from miri.domain.goods.service import GoodsService
from miri.domain.goods.stock import LiveStock
from miri.domain.goods.wishlist import WishlistEntry, WishlistService

__all__ = [
    "CATEGORIES",
    "Goods",
    "GoodsService",
    "LiveStock",
    "StockMismatch",
    "StockReport",
    "WishlistEntry",
    "WishlistService",
]
