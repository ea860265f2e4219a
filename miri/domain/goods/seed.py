"""Realistic goods for rehearsals: the catalogue `miri goods seed` and the dashboard fill."""

from __future__ import annotations

import asyncio
import random
import secrets
from datetime import datetime, timedelta
from typing import Any

from miri.domain.errors import NotFound
from miri.domain.goods.model import CATEGORIES

SEED_SELLER = "seller@miri.local"  # the account seeded goods are sold under (made on first use)

_NAMES = {
    "FASHION": ["Linen Shirt", "Wool Coat", "Denim Jacket", "Knit Cardigan", "Silk Scarf",
                "Cotton Tee", "Leather Belt", "Canvas Sneakers", "Pleated Skirt", "Bucket Hat"],
    "BEAUTY": ["Cushion Compact", "Lip Tint", "Sheet Mask", "Hand Cream", "Sun Cream",
               "Toner Pad", "Eye Palette", "Hair Oil", "Cleansing Foam", "Vitamin Serum"],
    "ETC": ["Tumbler", "Desk Lamp", "Scented Candle", "Phone Case", "Notebook Set",
            "Ceramic Mug", "Travel Pouch", "Umbrella", "Wireless Charger", "Plant Pot"],
}  # fmt: skip
_WORDS = ["Ivory", "Navy", "Mint", "Classic", "Daily", "Mini", "Soft", "Urban", "Jeju", "Seoul"]
_PRICES = {"FASHION": (19_000, 189_000), "BEAUTY": (8_000, 59_000), "ETC": (5_000, 79_000)}


def seed_item(rng: random.Random, now: datetime) -> dict[str, Any]:
    """One plausible goods: a named product, a price in hundreds of won, some opening later."""
    category = rng.choice(CATEGORIES)
    noun = rng.choice(_NAMES[category])
    name = f"{rng.choice(_WORDS)} {noun}"
    low, high = _PRICES[category]
    on_the_hour = now.replace(minute=0, second=0, microsecond=0)  # sales open on the hour
    opens = on_the_hour + timedelta(hours=rng.randint(1, 72)) if rng.random() < 0.3 else None
    return {
        "name": name if len(name) <= 20 else noun,
        "description": f"{noun}, limited pre-order batch",
        "price": rng.randrange(low, high, 100),
        "stock": rng.choice([10, 20, 50, 100, 200, 500]),
        "category": category,
        "reservation_start": opens,
        "per_buyer_limit": rng.choice([1, 2, 3, 5]) if rng.random() < 0.2 else None,
    }


async def house_seller(users: Any) -> int:
    """The id of ``SEED_SELLER``, made on first use with a password nobody knows."""
    try:
        return (await users.find(SEED_SELLER)).user_id
    except NotFound:
        return await users.add_user(
            email=SEED_SELLER,
            password=secrets.token_urlsafe(12)[:16],
            user_name="Miri Seller",
            phone_number="010-0000-0000",
            address="Seoul",
        )


async def seed_goods(
    goods: Any, seller_id: int, count: int, rng: random.Random, now: datetime
) -> list[int]:
    """Register ``count`` goods; concurrently, so the writer commits them in batches."""
    items = [seed_item(rng, now) for _ in range(count)]
    ids: list[int] = []
    for start in range(0, count, 200):
        made = await asyncio.gather(
            *(goods.register(seller_id, **i) for i in items[start : start + 200])
        )
        ids += [g.goods_id for g in made]
    return ids
