"""``miri dashboard``: the live operator view of a data dir (Textual)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from miri.cli.common import DataDir, RedisUrl, settings_for


def dashboard(
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    refresh: Annotated[
        float, typer.Option(min=0.1, help="Seconds between refreshes of every panel.")
    ] = 1.0,
) -> None:
    """Watch the shop live and act on it: goods, orders, payments, bus, jobs, health.

    Works whether or not `miri serve` runs on the data dir.

    Keys: a add goods, s seed, r restock, o open a sale now, c cancel an order item, j run a job,
    d replay dead letters, b flash-sale benchmark, q quit; ctrl+p opens the command palette.

    Example: miri dashboard --data-dir ./shop-data --refresh 2
    """
    settings = settings_for(data_dir, redis_url=redis_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # The screen is the terminal's: log lines go to a file in the data dir instead.
    logging.basicConfig(
        filename=settings.data_dir / "dashboard.log",
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    from miri.tui.app import DashboardApp

    DashboardApp(settings, refresh=refresh).run()
