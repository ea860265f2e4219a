"""``miri order ...``: orders from the operator's side."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from miri.cli.common import DataDir, Json, RedisUrl, emit, run, settings_for, table
from miri.shop import Shop

app = typer.Typer(help="Place, list, cancel and return orders.", no_args_is_help=True)

ITEM_COLUMNS = [
    "item",
    "goods",
    "qty",
    "total",
    "order",
    "payment",
    "shipping",
    "return",
    "ordered",
]


def _row(i: dict[str, Any]) -> list[Any]:
    # Statuses without their shared prefixes, and the time to the minute: a table to scan.
    payment = (i["paymentStatus"] or "").removeprefix("PAYMENT_")
    returned = (i["returnStatus"] or "").removeprefix("RETURN_")
    ordered = i["orderedAt"][:16].replace("T", " ")
    return [
        i["orderDetailId"],
        i["goodsName"],
        i["quantity"],
        i["subTotalPrice"],
        i["orderStatus"],
        payment,
        i["shippingStatus"],
        returned,
        ordered,
    ]


def _items(title: str, items: list[dict[str, Any]]) -> Any:
    return table(title, ITEM_COLUMNS, [_row(i) for i in items])


async def _settle(shop: Shop) -> None:
    """Deliver what the command published (payments run now even with no server up)."""
    await shop.bus.drain(timeout=10.0)


@app.command("place")
def place(
    user: Annotated[str, typer.Option(help="Buyer: email or user id.")],
    goods: Annotated[int, typer.Option(help="Goods id.")],
    quantity: Annotated[int, typer.Option(min=1)] = 1,
    address: Annotated[str, typer.Option(help="Shipping address.")] = "",
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Place an order for a buyer; payment runs as for an HTTP order.

    Example: miri order place --user kim@example.com --goods 3 --quantity 2
    """
    settings = settings_for(data_dir, redis_url=redis_url)

    async def work(shop: Shop) -> dict[str, Any]:
        buyer = await shop.users.find(user)
        order = await shop.orders.place(buyer.user_id, goods, quantity, address or buyer.address)
        await _settle(shop)
        return order

    order = run(work, settings)
    emit(
        order,
        as_json,
        lambda o: table(
            f"Order {o['orderId']} (total {o['totalPrice']})",
            ["item", "goods", "qty", "unit price", "status"],
            [
                (i["orderDetailId"], i["goodsId"], i["quantity"], i["unitPrice"], i["status"])
                for i in o["items"]
            ],
        ),
    )


@app.command("list")
def list_orders(
    user: Annotated[str | None, typer.Option(help="Only this buyer (email or id).")] = None,
    status: Annotated[
        str | None, typer.Option(help="PAYMENT_PENDING, COMPLETED or CANCELED.")
    ] = None,
    goods: Annotated[int | None, typer.Option(help="Only this goods id.")] = None,
    page: Annotated[int, typer.Option(min=0)] = 0,
    size: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """List order items, newest first.

    Example: miri order list --status PAYMENT_PENDING --goods 3
    """
    settings = settings_for(data_dir, redis_url=redis_url)

    async def work(shop: Shop) -> tuple[list[dict[str, Any]], int]:
        user_id = (await shop.users.find(user)).user_id if user else None
        return await shop.orders.list(
            user_id=user_id,
            status=status.upper() if status else None,
            goods_id=goods,
            page=page,
            size=size,
        )

    items, total = run(work, settings)
    emit(
        {"items": items, "totalItems": total},
        as_json,
        lambda d: _items(f"Order items ({total})", d["items"]),
    )


@app.command("show")
def show(
    item: Annotated[int, typer.Argument(help="Order item (orderDetailId).")],
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Show one order item.

    Example: miri order show 42 --json
    """
    settings = settings_for(data_dir, redis_url=redis_url)
    found = run(lambda shop: shop.orders.get(None, item), settings)
    emit(found, as_json, lambda d: table(f"Order item {item}", ["field", "value"], d.items()))


@app.command("cancel")
def cancel(
    item: Annotated[int, typer.Argument(help="Order item (orderDetailId).")],
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Cancel an item that has not shipped: stock back, payment refunded.

    Example: miri order cancel 42
    """
    settings = settings_for(data_dir, redis_url=redis_url)

    async def work(shop: Shop) -> dict[str, Any]:
        await shop.orders.cancel(None, item)
        await _settle(shop)
        return await shop.orders.get(None, item)

    emit(run(work, settings), as_json, lambda d: _items("Canceled", [d]))


@app.command("return")
def return_item(
    item: Annotated[int, typer.Argument(help="Order item (orderDetailId).")],
    reason: Annotated[str, typer.Option(help="10 to 50 characters.")],
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Ask for the return of a delivered item (within a day of delivery).

    Example: miri order return 42 --reason "The size does not fit"
    """
    if not 10 <= len(reason) <= 50:
        raise typer.BadParameter("the reason must be 10 to 50 characters", param_hint="--reason")
    settings = settings_for(data_dir, redis_url=redis_url)
    found = run(lambda shop: shop.orders.request_return(None, item, reason), settings)
    emit(found, as_json, lambda d: _items("Return requested", [d]))
