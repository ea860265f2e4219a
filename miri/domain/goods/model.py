"""Goods as the rest of the shop sees them, and the field rules of the goods and wishlist tables.

The HTTP models and the CLI both call these rules, so each rule lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

CATEGORIES = ("FASHION", "BEAUTY", "ETC")
MAX_PRICE = 1_000_000_000
MAX_STOCK = 1_000_000_000
MAX_LIMIT = 1_000_000
MAX_WISH_QUANTITY = 10_000


@dataclass(frozen=True)
class Goods:
    goods_id: int
    seller_id: int
    name: str
    description: str
    price: int
    category: str
    reservation_start: datetime | None  # aware; None: on sale from the start
    per_buyer_limit: int | None  # None: no cap per buyer
    stock_total: int  # initial stock plus restocks; never reduced by orders

    def sale_open(self, now: datetime) -> bool:
        return self.reservation_start is None or now >= self.reservation_start


@dataclass(frozen=True)
class GoodsView:
    """The goods page: goods with their live stock, seller's name and whether the sale is open."""

    goods: Goods
    stock: int
    seller_name: str | None
    sale_open: bool


# -- field rules: each raises ValueError with the message a client sees ----------------------------
# What ``str.strip()`` removes, as a regex class body (the OpenAPI document uses it).
WHITESPACE = (
    "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
)


# Lengths count what the client sent; the stored value is stripped and must not be empty.
def goods_name(value: str) -> str:
    if not 1 <= len(value) <= 20 or not value.strip():
        raise ValueError("goodsName must be 1 to 20 characters")
    return value.strip()


def description(value: str, minimum: int = 1) -> str:
    if len(value) > 255 or len(value.strip()) < minimum:
        raise ValueError(f"goodsDescription must be {minimum} to 255 characters")
    return value.strip()


def price(value: int) -> int:
    if not 0 <= value <= MAX_PRICE:
        raise ValueError(f"goodsPrice must be an integer from 0 to {MAX_PRICE}")
    return value


def stock_quantity(value: int) -> int:
    if not 0 <= value <= MAX_STOCK:
        raise ValueError(f"stockQuantity must be an integer from 0 to {MAX_STOCK}")
    return value


def restock_quantity(value: int) -> int:
    if not 1 <= value <= MAX_STOCK:
        raise ValueError(f"quantity must be an integer from 1 to {MAX_STOCK}")
    return value


def category(value: str) -> str:
    if value not in CATEGORIES:
        raise ValueError(f"category must be one of {', '.join(CATEGORIES)}")
    return value


def per_buyer_limit(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"perBuyerLimit must be an integer from 1 to {MAX_LIMIT}")
    return value


def wish_quantity(value: int) -> int:
    if not 1 <= value <= MAX_WISH_QUANTITY:
        raise ValueError(f"goodsQuantity must be an integer from 1 to {MAX_WISH_QUANTITY}")
    return value


def parse_time(value: str) -> datetime:
    """ISO-8601; a time without offset stays naive here and is read in the shop's zone later."""
    try:
        # RFC 3339 allows a lower-case "t" and "z"; fromisoformat does not.
        return datetime.fromisoformat(value.strip().upper())
    except ValueError:
        raise ValueError("must be an ISO-8601 time such as 2026-11-23T10:00:00+09:00") from None
