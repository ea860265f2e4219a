"""Driving the dashboard in tests: open it on a data dir, wait for its workers, read its screen."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp.test_utils import TestServer
from textual.pilot import Pilot
from textual.widgets import DataTable

from miri.config import Settings
from miri.infra.clock import Clock
from miri.server.app import create_app
from miri.server.presence import announce
from miri.shop import Shop
from miri.tui.app import DashboardApp
from tests.support.shop import add_user

SIZE = (160, 48)


async def wait_for(pilot: Pilot, predicate: Any, timeout: float = 30.0) -> None:
    """Until ``predicate()`` holds: a click's message is handled, and its worker started,
    some turns after ``pilot.click`` returns, so settling right away can look too early."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            await settle(pilot)
            return
        await pilot.pause(0.02)
    raise AssertionError("the dashboard did not get there in time")


async def settle(pilot: Pilot, rounds: int = 200) -> None:
    """Until no worker is left running (actions start workers that start refreshes)."""
    app = pilot.app
    for _ in range(rounds):
        await pilot.pause()
        busy = [w for w in app.workers if not w.is_finished]
        if not busy:
            await pilot.pause()
            return
        await app.workers.wait_for_complete(busy)
    raise AssertionError(f"workers still running: {[w.name for w in app.workers]}")


@asynccontextmanager
async def dashboard(
    settings: Settings, clock: Clock | None = None, size: tuple[int, int] = SIZE, **kw: Any
) -> AsyncIterator[tuple[DashboardApp, Pilot]]:
    """The app with refreshes only when asked (tests call ``refresh_all``), shop open."""
    app = DashboardApp(settings, refresh=kw.pop("refresh", 3600), clock=clock, **kw)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        yield app, pilot


@asynccontextmanager
async def announced_server(shop: Shop, data_dir: Any) -> AsyncIterator[str]:
    """The shop served over HTTP on a free port, announced on the data dir as ``miri serve``
    announces itself; yields its URL."""
    server = TestServer(create_app(shop), host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        with announce(data_dir, url):
            yield url
    finally:
        await server.close()


def screen_text(app: DashboardApp) -> str:
    """The screen as plain text, one line per terminal row (from the app's own SVG export)."""
    return svg_text(app.export_screenshot())


def svg_text(svg: str) -> str:
    """The terminal's lines, rebuilt from the SVG: Rich clips each text run to its line and
    places it at ``x`` = column x cell width (runs of blanks are left out, so place by ``x``)."""
    pattern = (
        r'<text [^>]*?x="([\d.]+)" y="[\d.]+" textLength="([\d.]+)"'
        r'[^>]*?clip-path="url\(#terminal-\d+-line-(\d+)\)"[^>]*>(.*?)</text>'
    )
    runs = [
        (float(x), float(length), int(line), html.unescape(content).replace("\xa0", " "))
        for x, length, line, content in re.findall(pattern, svg, re.S)
    ]
    if not runs:
        return ""
    cell = min(length / len(text) for _, length, _, text in runs if text)
    lines: dict[int, list[str]] = {}
    for x, _, line, text in runs:
        chars = lines.setdefault(line, [])
        col = round(x / cell)
        if len(chars) < col + len(text):
            chars.extend(" " * (col + len(text) - len(chars)))
        chars[col : col + len(text)] = list(text)
    return "\n".join("".join(lines.get(n, [])).rstrip() for n in range(max(lines) + 1))


def cells(table: DataTable, key: str) -> list[str]:
    return [str(c) for c in table.get_row(key)]


def column(table: DataTable, name: str) -> list[str]:
    labels = [str(c.label) for c in table.columns.values()]
    index = labels.index(name)
    return [str(table.get_row_at(r)[index]) for r in range(table.row_count)]


async def place_paid_order(shop: Shop, goods_id: int, quantity: int = 1) -> int:
    """A buyer's order, paid: the bus delivers OrderPlaced to payments and back."""
    buyer, _ = await add_user(shop, f"buyer{goods_id}-{quantity}@example.com")
    placed = await shop.orders.placing.place(buyer, goods_id, quantity, "Seoul Gangnam 1")
    assert await shop.bus.drain(timeout=10)
    return placed.items[0].order_item_id
