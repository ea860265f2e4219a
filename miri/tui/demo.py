"""A demo shop and the dashboard's own screenshot of it (``docs/dashboard.svg``).

    python -m miri.tui.demo docs/dashboard.svg

Builds a fresh temporary data dir: seeded goods, buyers, a few minutes of orders shaped like a
flash sale (placed under a clock that steps through those minutes), payments settled through the
bus, some items canceled and shipped. Then the dashboard opens on it headless and saves an SVG.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from miri.config import load_settings
from miri.domain.errors import ShopError
from miri.infra.clock import FixedClock
from miri.shop import Shop
from miri.tui import actions

SIZE = (160, 48)


def demo_settings(data_dir: Path) -> Any:
    return load_settings(
        data_dir=data_dir,
        env={},
        argon2_memory_kib=1024,
        argon2_time_cost=1,
        payment_provider="simulated",  # the demo's buyers pay (or leave) on their own
        payment_abandon_rate=0.12,
        payment_seed=7,
        stock_sync_interval=3600.0,
    )


def _rate(second: int, minutes: int) -> float:
    """Orders per second: a quiet shop, then a sale opening two thirds of the way in."""
    opening = minutes * 60 * 2 // 3
    if second < opening:
        return 0.6 + 0.4 * math.sin(second / 9)
    return 2 + 38 * math.exp(-(second - opening) / 14)


async def fill(shop: Shop, clock: FixedClock, *, minutes: int = 4, buyers: int = 80) -> int:
    """Demo data on ``shop``; the clock ends at ``clock.now()`` as it was. Returns orders placed."""
    end = clock.now()
    start = end - timedelta(minutes=minutes)
    clock.set(start - timedelta(seconds=5))
    rng = random.Random(7)
    ids = await actions.seed_goods(shop, 14, 3)
    goods = await shop.goods.get_many(ids)
    on_sale = [g for g in goods.values() if g.reservation_start is None]
    people = await shop.users.add_bench_users(buyers, "demo")
    placed = 0
    for second in range(minutes * 60):
        clock.set(start + timedelta(seconds=second))
        for _ in range(int(_rate(second, minutes) + rng.random())):
            user_id, _ = rng.choice(people)
            g = rng.choice(on_sale)
            try:
                await shop.orders.placing.place(
                    user_id, g.goods_id, rng.choice([1, 1, 1, 2]), "Seoul 1"
                )
                placed += 1
            except ShopError:
                pass  # sold out or over the limit: buyers are told so in the shop too
    clock.set(end)
    await shop.bus.drain(timeout=60)
    completed = await shop.order_views.list(status="COMPLETED", size=6)
    for item in completed.items[:2]:
        await shop.orders.changes.cancel(None, item.order_item_id)
    await shop.bus.drain(timeout=30)
    # The first half of the orders a day on: they leave for delivery.
    await shop.orders.lifecycle.run_shipping(as_of=start + timedelta(days=1, seconds=minutes * 30))
    return placed


async def screenshot(path: Path, data_dir: Path | None = None) -> Path:
    from miri.tui.app import DashboardApp

    with tempfile.TemporaryDirectory(prefix="miri-demo-") as tmp:
        settings = demo_settings(data_dir or Path(tmp) / "data")
        clock = FixedClock(datetime.now(UTC).replace(microsecond=0))
        app = DashboardApp(settings, refresh=3600, clock=clock)
        async with app.run_test(size=SIZE) as pilot:
            while app.shop is None and app.shop_error is None:
                await pilot.pause(0.05)
            if app.shop is None:
                raise RuntimeError(f"the shop did not open: {app.shop_error}")
            await fill(app.shop, clock)
            await app.refresh_all()
            app.query_one("#goods").focus()
            await pilot.pause()
            path.parent.mkdir(parents=True, exist_ok=True)
            app.save_screenshot(path.name, str(path.parent))
    return path


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0] if args else "docs/dashboard.svg")
    print(asyncio.run(screenshot(target)))


if __name__ == "__main__":
    main()
