"""``miri order ...``: orders from the operator's side."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Group
from rich.text import Text

from miri.cli.common import (
    DataDir,
    Json,
    RedisUrl,
    choice,
    emit,
    fields,
    flat,
    page_json,
    refuse,
    run,
    settings_for,
    settle,
    table,
)
from miri.config import Settings
from miri.domain.errors import InvalidState, ValidationFailed
from miri.domain.paging import Page
from miri.domain.payments.providers.checkout import CheckoutTestProvider
from miri.domain.views.orders import OrderItemView
from miri.server.api import validate
from miri.server.models import order_item, order_out
from miri.server.routes.payments import open_session, session_out
from miri.server.routes.sales import ShipBody, admin_item
from miri.shop import Shop

app = typer.Typer(help="Place, list, cancel and return orders.", no_args_is_help=True)

# The statuses an order item can have, as the admin API accepts them in ?status=.
ORDER_STATUSES = ("PAYMENT_PENDING", "COMPLETED", "CANCELED")
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
STATUS_COLUMNS = ("order", "payment", "shipping", "return")
# On a narrow terminal these go first: the order status says most of the payment's, and a
# return exists only after delivery. ``miri order show`` and ``--json`` keep both.
NARROW_DROPS = ("payment", "return")


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
    rows = [_row(i) for i in items]
    return table(title, ITEM_COLUMNS, rows, whole=STATUS_COLUMNS, optional=NARROW_DROPS)


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

    With the simulated buyer the payment is done when the command returns; with a checkout
    provider it opens the order's checkout and prints where to pay (`miri order pay ITEM` pays
    it with the built-in test provider).

    Example: miri order place --user kim@example.com --goods 3 --quantity 2
    """
    settings = settings_for(data_dir, redis_url=redis_url)

    async def work(shop: Shop) -> dict[str, Any]:
        buyer = await shop.users.find(user)
        order = await shop.orders.placing.place(
            buyer.user_id, goods, quantity, address or buyer.address
        )
        await settle(shop)
        placed = order_out(order)
        if shop.payments.provider.name != "simulated":
            session, _ = await open_session(shop, None, order.order_id)
            placed["payment"] = session_out(shop, session, shop_url(settings))
        return placed

    def render(o: dict[str, Any]) -> Any:
        items = table(
            f"Order {o['orderId']} (total {o['totalPrice']})",
            ["item", "goods", "qty", "unit price", "status"],
            [
                (i["orderDetailId"], i["goodsId"], i["quantity"], i["unitPrice"], i["status"])
                for i in o["items"]
            ],
        )
        if "payment" not in o:
            return items
        first = o["items"][0]["orderDetailId"]
        return Group(
            items,
            Text(f"Pay at {o['payment']['checkoutUrl']} (with `miri serve` running)"),
            Text(f"or here, as the test provider: miri order pay {first}", style="dim"),
        )

    emit(run(work, settings), as_json, render)


def shop_url(settings: Settings) -> str:
    """Where `miri serve` answers with these settings (a wildcard address: this machine)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}"


@app.command("pay")
def pay(
    item: Annotated[int, typer.Argument(help="Order item (orderDetailId); its order is paid.")],
    cancel: Annotated[
        bool, typer.Option("--cancel", help="Press Cancel instead: the payment fails.")
    ] = False,
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Pay an item's order through the built-in test provider (MIRI_PAYMENT_PROVIDER=checkout).

    As the Pay button on its checkout page does: the provider signs a webhook and the shop
    verifies and applies it. The order's checkout is opened first if it is not yet.

    Example: miri order pay 42
    """
    settings = settings_for(data_dir, redis_url=redis_url)

    async def work(shop: Shop) -> dict[str, Any]:
        provider = shop.payments.provider
        if not isinstance(provider, CheckoutTestProvider):
            raise InvalidState(
                f"test payments need MIRI_PAYMENT_PROVIDER=checkout; this shop's provider is"
                f" {provider.name}"
            )
        found = await shop.order_views.get(None, item)
        session, _ = await open_session(shop, None, found.order_id)
        hook = await provider.answer(session.payment_id, pay=not cancel)
        await shop.payments.receive(hook.body, hook.headers)
        await settle(shop)
        return order_item(await shop.order_views.get(None, item))

    outcome = "payment canceled" if cancel else "paid"
    emit(run(work, settings), as_json, lambda d: fields(f"Order item {item}: {outcome}", d))


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
    wanted = choice(status, ORDER_STATUSES, "--status")
    settings = settings_for(data_dir, redis_url=redis_url)

    async def work(shop: Shop) -> Page[OrderItemView]:
        user_id = (await shop.users.find(user)).user_id if user else None
        return await shop.order_views.list(
            user_id=user_id,
            status=wanted,
            goods_id=goods,
            page=page,
            size=size,
        )

    found = run(work, settings)
    emit(
        page_json(found, order_item),
        as_json,
        lambda d: _items(f"Order items ({found.total_items})", d["items"]),
    )


@app.command("show")
def show(
    item: Annotated[int, typer.Argument(help="Order item (orderDetailId).")],
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Show one order item with its buyer, delivery address, payment and shipping.

    Example: miri order show 42 --json
    """
    settings = settings_for(data_dir, redis_url=redis_url)
    found = admin_item(run(lambda shop: shop.sales.get(None, item), settings))
    emit(found, as_json, lambda d: fields(f"Order item {item}", flat(d)))


@app.command("ship")
def ship(
    item: Annotated[int, typer.Argument(help="Order item (orderDetailId).")],
    carrier: Annotated[str, typer.Option(help="The carrier, e.g. 'CJ Logistics'.")],
    tracking: Annotated[str, typer.Option(help="The tracking number (letters, digits, -).")],
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Ship a paid item by hand: IN_TRANSIT with its tracking number; the buyer is mailed.

    Example: miri order ship 42 --carrier "CJ Logistics" --tracking 6123-4567-8901
    """
    try:
        body = validate(ShipBody, {"carrier": carrier, "trackingNumber": tracking})
    except ValidationFailed as exc:
        refuse(exc)
    settings = settings_for(data_dir, redis_url=redis_url)

    async def work(shop: Shop) -> dict[str, Any]:
        await shop.orders.fulfilment.ship(None, item, body.carrier, body.trackingNumber)
        await settle(shop)
        return admin_item(await shop.sales.get(None, item))

    emit(run(work, settings), as_json, lambda d: fields(f"Order item {item}: shipped", flat(d)))


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
        await shop.orders.changes.cancel(None, item)
        await settle(shop)
        return order_item(await shop.order_views.get(None, item))

    emit(run(work, settings), as_json, lambda d: fields(f"Order item {item}: canceled", d))


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

    async def work(shop: Shop) -> dict[str, Any]:
        await shop.orders.changes.request_return(None, item, reason)
        return order_item(await shop.order_views.get(None, item))

    found = run(work, settings)
    emit(found, as_json, lambda d: fields(f"Order item {item}: return requested", d))
