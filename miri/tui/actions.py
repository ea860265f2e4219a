"""The admin's actions as the dashboard takes them: its seller, seeding, opening a sale now,
an order item's detail (buyer and address) and shipping it.

``parse_opening`` reads the "sale opens" field of the add-goods form (an ISO time, or +30m).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, tzinfo
from typing import Any

from miri.domain.goods import seed
from miri.server.api import validate
from miri.server.routes.sales import ShipBody, admin_item
from miri.shop import Shop

HOUSE_SELLER = seed.SEED_SELLER  # the same account `miri goods seed` sells under


async def house_seller(shop: Shop) -> int:
    """The account goods added from the dashboard are sold under (made on first use)."""
    return await seed.house_seller(shop.users)


async def seed_goods(shop: Shop, count: int, seed_value: int | None = None) -> list[int]:
    """``count`` plausible goods, as ``miri goods seed`` makes them."""
    seller_id = await house_seller(shop)
    rng = random.Random(seed_value)
    return await seed.seed_goods(shop.goods, seller_id, count, rng, shop.clock.now())


async def open_sale_now(shop: Shop, goods_id: int) -> None:
    """Clear the opening time: the goods are on sale from now on."""
    goods = await shop.goods.get(goods_id)
    await shop.goods.update(goods.seller_id, goods_id, {"reservation_start": None})


async def item_detail(shop: Shop, item_id: int) -> list[tuple[str, Any]]:
    """An order item as the admin sees it (as ``miri order show``): field / value rows."""
    data = admin_item(await shop.sales.get(None, item_id))
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows += [(f"{key}.{k}", v) for k, v in value.items()]
        else:
            rows.append((key, value))
    return rows


async def ship_item(shop: Shop, item_id: int, carrier: str, tracking: str) -> str:
    """Ship by hand (the admin acts for the seller); refusals name the field they are about."""
    body = validate(ShipBody, {"carrier": carrier, "trackingNumber": tracking})
    await shop.orders.fulfilment.ship(None, item_id, body.carrier, body.trackingNumber)
    return f"item {item_id}: in transit with {body.carrier}, {body.trackingNumber}"


def parse_opening(text: str, zone: tzinfo, now: datetime) -> datetime | None:
    """Blank: open now. ``+30m`` / ``+2h`` / ``+1d``: from ``now``. Otherwise ISO-8601 (read in
    the shop's zone when it has no offset)."""
    text = text.strip()
    if not text:
        return None
    if text.startswith("+") and text[-1:] in {"m", "h", "d"} and text[1:-1].isdigit():
        unit = {"m": "minutes", "h": "hours", "d": "days"}[text[-1]]
        return now + timedelta(**{unit: int(text[1:-1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("an ISO-8601 time (2026-11-23T10:00) or +30m / +2h / +1d") from None
    return when if when.tzinfo else when.replace(tzinfo=zone)
