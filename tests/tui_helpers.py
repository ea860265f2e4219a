"""Driving the dashboard in tests: open it on a data dir, wait for its workers, read its screen."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable

from miri.config import Settings
from miri.infra.clock import Clock
from miri.tui.app import DashboardApp

SIZE = (160, 48)


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


def screen_text(app: DashboardApp) -> str:
    """The screen as plain text, one line per terminal row (from the app's own SVG export)."""
    return svg_text(app.export_screenshot())


def svg_text(svg: str) -> str:
    rows: dict[float, list[str]] = {}
    for y, content in re.findall(r'<text [^>]*?y="([\d.]+)"[^>]*>(.*?)</text>', svg, re.S):
        rows.setdefault(float(y), []).append(html.unescape(content).replace("\xa0", " "))
    return "\n".join("".join(parts) for _, parts in sorted(rows.items()))


def cells(table: DataTable, key: str) -> list[str]:
    return [str(c) for c in table.get_row(key)]


def column(table: DataTable, name: str) -> list[str]:
    labels = [str(c.label) for c in table.columns.values()]
    index = labels.index(name)
    return [str(table.get_row_at(r)[index]) for r in range(table.row_count)]
