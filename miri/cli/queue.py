"""``miri queue ...``: the waiting rooms from the operator's side."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from miri.cli.common import DataDir, Json, RedisUrl, emit, fields, run, settings_for

app = typer.Typer(help="Watch and steer the waiting rooms.", no_args_is_help=True)

STATUS_FIELDS = (
    ("goodsId", "goods"),
    ("enabled", "room on"),
    ("waiting", "waiting"),
    ("preQueue", "in the pre-queue"),
    ("admitted", "holding a pass"),
    ("used", "passes used"),
    ("expired", "passes expired"),
    ("soldOut", "told sold out"),
    ("saleSoldOut", "goods sold out"),
    ("admitPerSecond", "admitted per second"),
    ("passSeconds", "pass lasts (s)"),
    ("admittedTotal", "admitted so far"),
    ("opened", "sale open"),
    ("etaLastSeconds", "ETA of the last in line (s)"),
)


def _status_table(data: dict[str, Any]) -> Any:
    return fields(
        f"Waiting room of goods {data['goodsId']}",
        {label: data[key] for key, label in STATUS_FIELDS},
    )


@app.command("status")
def status(
    goods_id: Annotated[int, typer.Argument(help="Goods id.")],
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Waiting, admitted, used, expired, sold out, the admission rate, the ETA of the last in line.

    Example: miri queue status 3 --json
    """
    settings = settings_for(data_dir, redis_url=redis_url)
    emit(run(lambda shop: shop.queue.status(goods_id), settings), as_json, _status_table)


@app.command("set")
def set_rate(
    goods_id: Annotated[int, typer.Argument(help="Goods id.")],
    admit_rate: Annotated[
        int, typer.Option("--admit-rate", help="Buyers admitted per second (1-10000).")
    ],
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Change a waiting room's admission rate, also during a sale (every worker follows at once).

    Example: miri queue set 3 --admit-rate 200
    """
    settings = settings_for(data_dir, redis_url=redis_url)

    async def work(shop: Any) -> dict[str, Any]:
        await shop.queue.set_rate(goods_id, admit_rate)
        return await shop.queue.status(goods_id)

    emit(run(work, settings), as_json, _status_table)
