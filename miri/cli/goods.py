"""``miri goods ...``: the catalogue from the operator's side."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Annotated, Any

import typer

from miri.cli.common import (
    DataDir,
    Json,
    RedisUrl,
    choice,
    emit,
    fields,
    refuse,
    run,
    settings_for,
    table,
)
from miri.domain.errors import ValidationFailed
from miri.domain.goods import CATEGORIES, model
from miri.domain.goods.seed import SEED_SELLER, house_seller, seed_goods
from miri.domain.queue import RoomSettings
from miri.server.routes.goods import detail_of, goods_rows
from miri.shop import Shop

app = typer.Typer(help="Manage goods and their stock.", no_args_is_help=True)

LIST_COLUMNS = ["id", "name", "price", "category", "opens", "stock"]


def _when(text: str | None) -> datetime | None:
    """``--opens`` read as the API reads it; a time it cannot read is refused like the API's."""
    if text is None:
        return None
    try:
        return model.parse_time(text)
    except ValueError as exc:
        refuse(ValidationFailed(data={"opens": str(exc)}))


def _room(
    current: RoomSettings | None, admit_rate: int | None, seconds: int | None
) -> RoomSettings:
    """A waiting room on: the given figures over the current ones (or the API's defaults)."""
    base = current or RoomSettings()
    return RoomSettings(
        True,
        base.admit_per_second if admit_rate is None else admit_rate,
        base.pass_seconds if seconds is None else seconds,
    )


def _row(g: dict[str, Any]) -> list[Any]:
    return [
        g["goodsId"],
        g["goodsName"],
        g["goodsPrice"],
        g["category"],
        g["reservationStartTime"] or "open",
        g["stockQuantity"],
    ]


def _detail_table(d: dict[str, Any]) -> Any:
    return fields(f"Goods {d['goodsId']}", d)


@app.command("add")
def add(
    seller: Annotated[str, typer.Option(help="Seller's email or user id.")],
    name: Annotated[str, typer.Option(help="1-20 characters.")],
    description: Annotated[str, typer.Option(help="1-255 characters.")],
    price: Annotated[int, typer.Option(help="Price in won, >= 0.")],
    stock: Annotated[int, typer.Option(help="Initial stock, >= 0.")],
    category: Annotated[str, typer.Option(help="FASHION, BEAUTY or ETC.")] = "ETC",
    opens: Annotated[
        str | None, typer.Option(help="When the sale opens (ISO-8601); default: now.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Most one buyer may hold.")] = None,
    waiting_room: Annotated[
        bool, typer.Option("--waiting-room", help="Put the goods behind a waiting room.")
    ] = False,
    admit_rate: Annotated[
        int | None, typer.Option(help="Waiting room: buyers admitted per second (default 50).")
    ] = None,
    pass_seconds: Annotated[
        int | None, typer.Option(help="Waiting room: how long a pass lasts (default 120 s).")
    ] = None,
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Register goods for a seller; prints them.

    Example: miri goods add --seller kim@example.com --name "Linen Shirt"
    --description "Summer sale" --price 39000 --stock 100 --category FASHION
    --opens 2026-11-23T10:00:00+09:00 --limit 2
    """
    opening = _when(opens)
    settings = settings_for(data_dir, redis_url=redis_url)

    async def work(shop: Shop) -> dict[str, Any]:
        owner = await shop.users.find(seller)
        goods = await shop.goods.register(
            owner.user_id,
            name=name,
            description=description,
            price=price,
            stock=stock,
            category=category.upper(),
            reservation_start=opening,
            per_buyer_limit=limit,
        )
        if waiting_room:
            await shop.queue.configure(goods.goods_id, _room(None, admit_rate, pass_seconds))
        return await detail_of(shop, goods.goods_id)

    emit(run(work, settings), as_json, _detail_table)


@app.command("list")
def list_goods(
    page: Annotated[int, typer.Option(min=0)] = 0,
    size: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    category: Annotated[str | None, typer.Option(help="FASHION, BEAUTY or ETC.")] = None,
    q: Annotated[str | None, typer.Option("--q", help="Part of the name.")] = None,
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """List goods, newest first, with live stock.

    Example: miri goods list --category BEAUTY --q tint
    """
    cat = choice(category, CATEGORIES, "--category")
    settings = settings_for(data_dir, redis_url=redis_url)

    async def work(shop: Shop) -> tuple[list[dict[str, Any]], int]:
        listed, total = await shop.goods.listing(page, size, category=cat, q=q)
        return goods_rows(listed, shop.goods.zone), total

    items, total = run(work, settings)
    emit(
        {"items": items, "totalItems": total},
        as_json,
        lambda d: table(f"Goods ({total})", LIST_COLUMNS, [_row(g) for g in d["items"]]),
    )


@app.command("show")
def show(
    goods_id: Annotated[int, typer.Argument(help="Goods id.")],
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Show one goods with seller, live stock and whether its sale is open.

    Example: miri goods show 3 --json
    """
    settings = settings_for(data_dir, redis_url=redis_url)

    async def work(shop: Shop) -> dict[str, Any]:
        return await detail_of(shop, goods_id)

    emit(run(work, settings), as_json, _detail_table)


@app.command("update")
def update(
    goods_id: Annotated[int, typer.Argument(help="Goods id.")],
    name: Annotated[str | None, typer.Option()] = None,
    description: Annotated[str | None, typer.Option(help="10-255 characters.")] = None,
    price: Annotated[int | None, typer.Option()] = None,
    category: Annotated[str | None, typer.Option()] = None,
    opens: Annotated[str | None, typer.Option(help="New opening time (ISO-8601).")] = None,
    open_now: Annotated[bool, typer.Option("--open-now", help="Clear the opening time.")] = False,
    limit: Annotated[int | None, typer.Option(help="New per-buyer limit.")] = None,
    no_limit: Annotated[bool, typer.Option("--no-limit", help="Clear the limit.")] = False,
    waiting_room: Annotated[
        bool | None,
        typer.Option(
            "--waiting-room/--no-waiting-room", help="Put the goods behind a waiting room, or not."
        ),
    ] = None,
    admit_rate: Annotated[
        int | None, typer.Option(help="Waiting room: buyers admitted per second.")
    ] = None,
    pass_seconds: Annotated[
        int | None, typer.Option(help="Waiting room: how long a pass lasts, in seconds.")
    ] = None,
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Edit goods on the seller's behalf (same rules as the API).

    Example: miri goods update 3 --price 12000 --open-now
    """
    settings = settings_for(data_dir, redis_url=redis_url)
    changes: dict[str, Any] = {}
    for key, value in (
        ("name", name),
        ("description", description),
        ("price", price),
        ("category", category.upper() if category else None),
        ("per_buyer_limit", limit),
    ):
        if value is not None:
            changes[key] = value
    if no_limit:
        changes["per_buyer_limit"] = None
    if opens is not None or open_now:
        changes["reservation_start"] = None if open_now else _when(opens)

    async def work(shop: Shop) -> dict[str, Any]:
        goods = await shop.goods.get(goods_id)
        room_asked = waiting_room is not None or admit_rate is not None or pass_seconds is not None
        if changes or not room_asked:  # nothing at all to change is refused as the API does
            await shop.goods.update(goods.seller_id, goods_id, changes)
        if room_asked:
            current = await shop.queue.settings(goods_id)
            room = _room(current, admit_rate, pass_seconds)
            if waiting_room is False:
                room = RoomSettings(False, room.admit_per_second, room.pass_seconds)
            await shop.queue.configure(goods_id, room)
        return await detail_of(shop, goods_id)

    emit(run(work, settings), as_json, _detail_table)


@app.command("restock")
def restock(
    goods_id: Annotated[int, typer.Argument(help="Goods id.")],
    quantity: Annotated[int, typer.Argument(help="How many to add.")],
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Add stock (as an administrator); prints the live stock after it.

    Example: miri goods restock 3 500
    """
    settings = settings_for(data_dir, redis_url=redis_url)
    stock = run(lambda shop: shop.goods.restock(0, True, goods_id, quantity), settings)
    emit({"goodsId": goods_id, "stockQuantity": stock}, as_json, lambda d: d["stockQuantity"])


# -- seed --------------------------------------------------------------------------------------------
async def _seller_id(shop: Shop, seller: str | None) -> int:
    if seller:
        return (await shop.users.find(seller)).user_id
    return await house_seller(shop.users)


@app.command("seed")
def seed(
    count: Annotated[int, typer.Option(min=1, max=100_000, help="How many goods.")] = 20,
    seller: Annotated[
        str | None, typer.Option(help=f"Seller's email or id (default: {SEED_SELLER}).")
    ] = None,
    random_seed: Annotated[int | None, typer.Option(help="Same seed, same goods.")] = None,
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Fill the catalogue with realistic goods; about 30% open their sale in the future.

    Example: miri goods seed --count 50
    """
    settings = settings_for(data_dir, redis_url=redis_url)
    rng = random.Random(random_seed)

    async def work(shop: Shop) -> list[int]:
        seller_id = await _seller_id(shop, seller)
        return await seed_goods(shop.goods, seller_id, count, rng, shop.clock.now())

    ids = run(work, settings)
    emit(
        {"created": len(ids), "goodsIds": ids},
        as_json,
        lambda d: f"created {d['created']} goods (ids {ids[0]}..{ids[-1]})",
    )
