"""Layout guard: every panel is on screen, none overlaps another, titles and figures show.

An exact SVG snapshot (pytest-textual-snapshot) would fail on every run here: the screen holds
the wall clock, temporary paths and "in 2h" countdowns. So the guard checks the geometry of each
panel and the text the app itself exports, at the documented size and at a small terminal.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest

from miri.tui.demo import screenshot
from tests.support.goods import add_goods
from tests.support.tui import dashboard, place_paid_order, screen_text, svg_text

PANELS = {
    "#server": "Server",
    "#health": "Redis & SQLite",
    "#bus": "Event bus",
    "#payments": "Payment outcomes",
    "#goods": "Goods",
    "#chart": "Orders per second",
    "#hosts": "Hosts",
    "#orders": "Latest orders",
    "#jobs": "Scheduled jobs",
    "#dead": "Dead letters",
    "#rooms": "Waiting rooms",
}


@pytest.mark.parametrize("size", [(160, 48), (110, 34)])
async def test_every_panel_is_on_screen_and_apart(settings, clock, size, tmp_path: Path):
    async with dashboard(settings, clock, size=size) as (app, pilot):
        assert app.shop is not None
        goods = await add_goods(app.shop, name="Linen Shirt")
        await place_paid_order(app.shop, goods.goods_id)
        await app.refresh_all()
        await pilot.pause()
        screen = app.screen.region
        regions = {}
        for selector in PANELS:
            region = app.query_one(selector).region
            assert region.width >= 20 and region.height >= 4, (selector, region)
            assert screen.contains_region(region), (selector, region, screen)
            regions[selector] = region
        for (a, ra), (b, rb) in combinations(regions.items(), 2):
            assert not ra.overlaps(rb), (a, ra, b, rb)
        saved = Path(app.save_screenshot("dashboard.svg", str(tmp_path)))
        text = svg_text(saved.read_text(encoding="utf-8"))
        assert text == screen_text(app)
        lines = text.splitlines()
        assert len(lines) == size[1]
        for title in PANELS.values():
            assert title in text, title
        assert "Linen Shirt" in text and "COMPLETED" in text
        assert "a Add goods" in lines[-1] and "palette" in lines[-1]  # the footer's keys
        if size[0] >= 160:
            assert "q Quit" in lines[-1]


@pytest.mark.timeout(120)
async def test_the_docs_screenshot_is_made_by_the_app(tmp_path: Path):
    path = await screenshot(tmp_path / "docs" / "dashboard.svg")
    svg = path.read_text(encoding="utf-8")
    assert svg.startswith("<svg")
    text = svg_text(svg)
    assert "Miri dashboard" in text.splitlines()[0]
    for title in PANELS.values():
        assert title in text, title
    assert "PAYMENT_COMPLETED" in text and "IN_TRANSIT" not in text.split("Latest orders")[0]
    assert "open" in text and "peak" in text
