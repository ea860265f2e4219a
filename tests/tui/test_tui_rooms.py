"""The dashboard's waiting rooms: each room live (line, admitted per second, passes used vs
expired) and its rate changed from the dashboard, driven through Textual's pilot."""

from __future__ import annotations

from miri.domain.queue import RoomSettings
from miri.tui.screens import FormScreen
from miri.tui.tables import RoomsTable
from tests.support.goods import add_goods
from tests.support.shop import add_user
from tests.support.tui import cells, dashboard, settle
from tests.tui.test_tui import error_of, fill


async def test_rooms_show_live_and_the_rate_changes(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        shop = app.shop
        assert shop is not None
        goods = await add_goods(shop, stock=10)
        gid = goods.goods_id
        await shop.queue.configure(gid, RoomSettings(True, 4, 60))
        for i in range(6):
            buyer, _ = await add_user(shop, f"b{i}@example.com")
            await shop.queue.join(buyer, gid)
        await shop.queue.tick()
        await app.refresh_all()
        table = app.query_one(RoomsTable)
        row = cells(table, str(gid))
        assert row[1] == "6" and row[6] == "4/s" and row[7] == "admitting"

        clock.advance(seconds=1)
        assert sum(a for _, a, _, _ in (await shop.queue.tick()).values()) == 4
        await app.refresh_all()
        row = cells(table, str(gid))
        assert row[1] == "2" and row[3] == "4"  # two in line, four holding a pass
        assert row[2] != "-"  # admitted per second, measured between two refreshes

        table.focus()
        table.move_cursor(row=table.get_row_index(str(gid)))
        await pilot.press("w")
        form = app.screen
        assert isinstance(form, FormScreen)
        fill(form, quantity="0")
        await pilot.press("enter")
        await settle(pilot)
        assert "admitPerSecond" in error_of(form, "quantity")  # refused, nothing changed
        assert (await shop.queue.settings(gid)).admit_per_second == 4
        fill(form, quantity="25")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is not form
        assert (await shop.queue.settings(gid)).admit_per_second == 25
        assert cells(table, str(gid))[6] == "25/s"
