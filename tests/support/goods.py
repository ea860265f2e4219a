"""Helpers shared by the goods, stock and wishlist tests.

Goods are made in one of two ways, each in one place: ``add_goods`` (in process, through the
catalogue) and ``post_goods`` (over HTTP, as a seller's client does).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from miri.domain.goods import Goods
from miri.shop import Shop
from tests.support.shop import add_user, bearer

# A valid registration body; ``post_goods`` callers override fields by their API names.
GOODS_FIELDS: dict[str, Any] = {
    "goodsName": "Linen Shirt",
    "goodsDescription": "A shirt for the summer sale",
    "goodsPrice": 10_000,
    "stockQuantity": 100,
    "category": "FASHION",
}


async def add_goods(
    shop: Shop,
    seller_id: int | None = None,
    *,
    stock: int = 100,
    price: int = 10_000,
    name: str = "Linen Shirt",
    category: str = "FASHION",
    opens: datetime | None = None,
    limit: int | None = None,
) -> Goods:
    if seller_id is None:
        seller_id, _ = await add_user(shop, "seller@example.com")
    return await shop.goods.register(
        seller_id,
        name=name,
        description="A shirt for the summer sale",
        price=price,
        stock=stock,
        category=category,
        reservation_start=opens,
        per_buyer_limit=limit,
    )


async def post_goods(http: Any, token: str, *, base: str = "", **fields: Any) -> int:
    """Goods registered over HTTP by the seller ``token``; their id.

    ``http``: the aiohttp test client (paths) or a ``ClientSession`` with ``base`` (a server's
    URL). ``fields`` are API fields (``stockQuantity=5``); None leaves a field out.
    """
    body = {k: v for k, v in {**GOODS_FIELDS, **fields}.items() if v is not None}
    async with http.post(f"{base}/api/auth/goods", json=body, headers=bearer(token)) as resp:
        assert resp.status == 201, await resp.text()
        return (await resp.json())["data"]["goodsId"]


async def add_order_item(shop: Shop, user_id: int, goods_id: int, quantity: int) -> int:
    """An active order item written straight to the database, as orders would store it.

    Only tests reach into the order tables: they stand in for the orders module, so the stock
    check can be tested against real rows of the ``active_order_items`` view.
    """
    now = shop.clock.now().timestamp()

    def write(conn: Any) -> int:
        order_id = conn.execute(
            "INSERT INTO orders (user_id, total_price, address_enc, created_at)"
            " VALUES (?, 0, ?, ?)",
            (user_id, b"\x00", now),
        ).lastrowid
        return conn.execute(
            "INSERT INTO order_items (order_id, user_id, goods_id, quantity, unit_price,"
            " status, created_at, updated_at) VALUES (?, ?, ?, ?, 0, 'PAYMENT_PENDING', ?, ?)",
            (order_id, user_id, goods_id, quantity, now, now),
        ).lastrowid

    return await shop.db.write(write)


async def release_order_item(shop: Shop, detail_id: int) -> None:
    await shop.db.write(
        lambda c: c.execute(
            "UPDATE order_items SET stock_released = 1, status = 'CANCELED' WHERE id = ?",
            (detail_id,),
        )
    )


async def synced(shop: Shop, goods_id: int) -> int:
    row = await shop.db.read(
        lambda c: c.execute("SELECT stock_synced FROM goods WHERE id = ?", (goods_id,)).fetchone()
    )
    return row[0]


async def buyers(shop: Shop, goods_id: int) -> dict[str, Any]:
    return await shop.redis.client.hgetall(f"miri:goods:{goods_id}:buyers")
