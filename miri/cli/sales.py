"""``miri sales ...``: what sellers sold, for packing and shipping."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from miri.cli.common import DataDir, RedisUrl, choice, err_console, run, settings_for
from miri.server.routes.sales import packing_list
from miri.shop import Shop

app = typer.Typer(help="Sellers' sales: the packing list.", no_args_is_help=True)

ORDER_STATUSES = ("PAYMENT_PENDING", "COMPLETED", "CANCELED")
SHIPPING_STATUSES = ("PENDING", "IN_TRANSIT", "DELIVERED", "CANCELED")


@app.command("export")
def export(
    seller: Annotated[
        str | None, typer.Option(help="The seller: email or user id (default: every seller).")
    ] = None,
    status: Annotated[str | None, typer.Option(help="Order status, e.g. COMPLETED.")] = None,
    shipping: Annotated[str | None, typer.Option(help="Shipping status, e.g. PENDING.")] = None,
    goods: Annotated[int | None, typer.Option(help="Only this goods id.")] = None,
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
) -> None:
    """Write the packing list as CSV to stdout (buyer, address, quantities; one line per item).

    Example: miri sales export --seller seller@example.com --status COMPLETED --shipping PENDING > packing.csv
    """
    wanted = choice(status, ORDER_STATUSES, "--status")
    ship_state = choice(shipping, SHIPPING_STATUSES, "--shipping")
    settings = settings_for(data_dir, redis_url=redis_url)

    async def work(shop: Shop) -> int:
        seller_id = (await shop.users.find(seller)).user_id if seller else None
        rows = shop.sales.every(seller_id, status=wanted, shipping=ship_state, goods_id=goods)
        count = await packing_list(rows, sys.stdout)
        return count

    count = run(work, settings)
    err_console.print(f"{count} item{'s' if count != 1 else ''} in the packing list")
