"""The dashboard, driven through Textual's pilot against a real shop (SQLite + embedded Redis).

Every admin action is taken the way an operator takes it (its key, a form or a confirmation, or
the command palette), and each test checks the shop's data changed, not only the screen.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from textual.widgets import Button, DataTable, Input, OptionList, ProgressBar, Static

from miri.domain.events import Event
from miri.infra.hosts import Hosts
from miri.server.presence import presence_path, servers
from miri.tui.bench import BenchScreen
from miri.tui.data import Snapshot
from miri.tui.panels import BusPanel, HealthPanel, OrderRateChart, PaymentsPanel, ServerPanel
from miri.tui.screens import ConfirmScreen, DetailScreen, FormScreen, JobPicker
from miri.tui.tables import DeadLettersTable, GoodsTable, JobsTable, OrdersTable
from tests.support.goods import add_goods
from tests.support.shop import add_user, free_port, make_settings
from tests.support.tui import (
    announced_server,
    cells,
    column,
    dashboard,
    place_paid_order,
    screen_text,
    settle,
    wait_for,
)


@dataclass(frozen=True, kw_only=True)
class DashboardPing(Event):
    n: int


def fill(form: FormScreen, **values: str) -> None:
    for name, value in values.items():
        form.query_one(f"#field-{name}", Input).value = value


def error_of(form: FormScreen, name: str) -> str:
    return str(form.query_one(f"#error-{name}", Static).render())


# -- what it shows -----------------------------------------------------------------------------------
async def test_panels_show_the_shop(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        shop = app.shop
        assert shop is not None, app.shop_error
        shirt = await add_goods(shop, stock=10, price=39_000, name="Linen Shirt")
        later = await add_goods(
            shop, shirt.seller_id, name="Wool Coat", opens=clock.now() + timedelta(hours=2)
        )
        item = await place_paid_order(shop, shirt.goods_id, 3)
        await app.refresh_all()
        await pilot.pause()

        goods = app.query_one("#goods", DataTable)
        row = cells(goods, str(shirt.goods_id))
        # id, name, category, price, sale opens, stock, live, sold, buyers
        assert row[1:4] == ["Linen Shirt", "FASHION", "39,000"]
        assert row[4] == "open" and row[5:] == ["10", "7", "3", "1"]
        assert "(in 2h00m)" in cells(goods, str(later.goods_id))[4]

        orders = app.query_one("#orders", DataTable)
        line = cells(orders, str(item))
        assert line[2] == "Linen Shirt" and line[3] == "3"
        assert line[5:9] == ["COMPLETED", "COMPLETED", "PENDING", "-"]

        jobs = column(app.query_one("#jobs", DataTable), "job")
        assert set(jobs) == {"shipping", "returns", "payment-expiry", "stock-sync"}
        next_runs = column(app.query_one("#jobs", DataTable), "next run")
        assert all(n != "-" for n in next_runs)

        text = screen_text(app)
        assert "no server on this data dir" in text
        assert "PAYMENT_COMPLETED" in text  # payment outcomes
        assert "backlog" in text and "dead letters" in text
        assert "Redis" in text and "SQLite" in text and "embedded" in text
        assert app.snapshot is not None and app.snapshot.errors == {}
        assert app.snapshot.health["status"] == "ok"
        assert sum(app.snapshot.rate) == 1  # one order, at the shop clock's "now"
        assert app.snapshot.rate[-1] == 1


async def test_periodic_refresh_picks_up_changes(settings, clock):
    async with dashboard(settings, clock, refresh=0.1) as (app, pilot):
        assert app.shop is not None
        goods = await add_goods(app.shop, name="Cotton Tee")
        table = app.query_one("#goods", DataTable)
        for _ in range(200):  # bounded: the 0.1 s timer refreshes on its own
            await pilot.pause(0.05)
            if str(goods.goods_id) in [k.value for k in table.rows]:
                break
        assert cells(table, str(goods.goods_id))[1] == "Cotton Tee"


async def test_a_shop_that_cannot_open_is_reported_not_fatal(data_dir):
    settings = make_settings(data_dir, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with dashboard(settings) as (app, pilot):
        assert app.shop is None and app.shop_error
        assert "shop unavailable" in screen_text(app)
        await pilot.press("s")  # an action without a shop: told, not crashed
        await settle(pilot)
        assert len(app.screen_stack) == 1
        assert "no server on this data dir" in screen_text(app)


async def test_each_panel_keeps_its_own_state(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        assert app.shop is not None
        await app.refresh_all()
        snap = app.snapshot
        assert snap is not None
        for panel in (HealthPanel, BusPanel, PaymentsPanel, OrderRateChart, GoodsTable,
                      OrdersTable, JobsTable, DeadLettersTable):  # fmt: skip
            assert app.query_one(panel).snapshot is snap, panel
        assert app.query_one(ServerPanel).servers == app.servers == []
        assert app.query_one(JobsTable).servers == []
        # A panel draws from what it holds: handed a snapshot of its own, it shows that one.
        payments = app.query_one(PaymentsPanel)
        payments.snapshot = Snapshot(taken_at=clock.now(), payments={"REFUNDED": 3})
        await pilot.pause()
        assert "no payments yet" not in screen_text(app)
        assert "REFUNDED" in screen_text(app) and "100%" in screen_text(app)
        # A section that could not be read says why, in its own panel; the others go on.
        broken = Snapshot(
            taken_at=clock.now(), errors={"redis": "ConnectionError: gone", "bus": "OSError: full"}
        )
        app.query_one(HealthPanel).snapshot = broken
        app.query_one(BusPanel).snapshot = broken
        await pilot.pause()
        assert "ConnectionError: gone" in screen_text(app) and "OSError: full" in screen_text(app)
        assert app.snapshot is snap  # the app's own is untouched


# -- where the server is ---------------------------------------------------------------------------
async def test_server_presence_is_found_and_probed(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        assert app.shop is not None
        async with announced_server(app.shop, settings.data_dir) as url:
            await app.refresh_all()
            await pilot.pause()
            [found] = app.servers
            assert found.pid == os.getpid() and found.url == url and found.health == "ok"
            text = screen_text(app)
            assert "serving" in text and url in text and f"pid {os.getpid()}" in text
        assert not presence_path(settings.data_dir).exists()
        await app.refresh_all()
        assert app.servers == []


async def test_jobs_say_when_no_server_runs_them(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        assert app.shop is not None
        jobs = app.query_one(JobsTable)
        await app.refresh_all()
        assert app.servers == []
        # No countdown to runs that will not happen; when they would run stays shown.
        assert set(column(jobs, "in")) == {"no server"}
        assert all(n != "-" for n in column(jobs, "next run"))
        assert "no server runs them · j runs one now" in str(jobs.border_subtitle)
        assert "no server runs them · j runs one now" in screen_text(app)
        async with announced_server(app.shop, settings.data_dir):
            await app.refresh_all()
            await pilot.pause()
            due = column(jobs, "in")
            assert due and all(d[0].isdigit() for d in due), due
            assert not jobs.border_subtitle
        # No server here, but a host elsewhere on the shop's database beats: it runs them.
        elsewhere = Hosts(app.shop.db, "elsewhere:1:abcdef")
        await elsewhere.beat()
        await app.refresh_all()
        assert app.servers == [] and all(d[0].isdigit() for d in column(jobs, "in"))
        await elsewhere.stopped()
        await app.refresh_all()
        assert set(column(jobs, "in")) == {"no server"}


def test_stale_presence_of_a_dead_process_is_ignored(settings):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    pid = int(done.stdout)
    path = presence_path(settings.data_dir, pid)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": pid, "url": "http://127.0.0.1:1", "startedAt": 0}))
    assert servers(settings.data_dir) == []
    # This process is alive, but started after the file says its server did: a reused pid.
    mine = presence_path(settings.data_dir)
    mine.write_text(json.dumps({"pid": os.getpid(), "url": "http://x", "startedAt": 1.0}))
    assert servers(settings.data_dir) == []


@pytest.mark.timeout(90)
async def test_miri_serve_announces_itself_while_it_runs(data_dir: Path):
    port = free_port()
    env = {**os.environ, "MIRI_DATA_DIR": str(data_dir), "MIRI_LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "miri.cli.main", "serve", "--port", str(port), "--no-access-log",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(600):
            found = await asyncio.to_thread(servers, data_dir)
            if found or proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        assert [(s["pid"], s["url"]) for s in found] == [(proc.pid, f"http://127.0.0.1:{port}")]
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 30)
    assert await asyncio.to_thread(servers, data_dir) == []
    assert not presence_path(data_dir, proc.pid).exists()


# -- actions ---------------------------------------------------------------------------------------
async def test_add_goods_form_validates_then_adds(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        assert app.shop is not None
        await pilot.press("a")
        form = app.screen
        assert isinstance(form, FormScreen)

        fill(form, name="Linen Shirt", description="Summer sale", price="", stock="5")
        form.query_one("#ok", Button).press()  # by the button: errors can push it off-screen
        await wait_for(pilot, lambda: error_of(form, "price") != "")
        assert error_of(form, "price") == "required"

        fill(form, name="A" * 21, price="39000", opens="2020-01-01T10:00", limit="0")
        form.query_one("#ok", Button).press()  # by the button: errors can push it off-screen
        await wait_for(pilot, lambda: error_of(form, "name") != "")
        assert app.screen is form  # refused by the shop: every bad field says why
        assert error_of(form, "name") == "goodsName must be 1 to 20 characters"
        assert error_of(form, "opens") == "reservationStartTime must be in the future"
        assert error_of(form, "limit").startswith("perBuyerLimit must be an integer")
        assert error_of(form, "price") == ""
        assert (await app.shop.goods.listing(0, 10))[1] == 0

        fill(form, name="Linen Shirt", opens="+2h", limit="2")
        form.query_one("#ok", Button).press()  # by the button: errors can push it off-screen
        await wait_for(pilot, lambda: app.screen is not form)
        [(goods, live)], total = await app.shop.goods.listing(0, 10)
        assert (goods.name, goods.price, goods.stock_total, live) == ("Linen Shirt", 39000, 5, 5)
        assert goods.per_buyer_limit == 2
        assert goods.reservation_start == clock.now() + timedelta(hours=2)
        seller = await app.shop.users.profile(goods.seller_id)
        assert seller.email == "seller@miri.local"
        assert cells(app.query_one("#goods", DataTable), str(goods.goods_id))[1] == "Linen Shirt"


async def test_seed_goods(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        assert app.shop is not None
        await pilot.press("s")
        form = app.screen
        assert isinstance(form, FormScreen)
        fill(form, quantity="0")
        await pilot.press("enter")
        await settle(pilot)
        assert error_of(form, "quantity") == "from 1 to 10,000"
        fill(form, quantity="7")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is not form
        _, total = await app.shop.goods.listing(0, 1)
        assert total == 7
        assert app.query_one("#goods", DataTable).row_count == 7


async def test_restock_then_open_the_sale(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        assert app.shop is not None
        goods = await add_goods(app.shop, stock=10, opens=clock.now() + timedelta(days=1))
        await app.refresh_all()
        table = app.query_one("#goods", DataTable)
        table.move_cursor(row=table.get_row_index(str(goods.goods_id)))

        await pilot.press("r")
        form = app.screen
        assert isinstance(form, FormScreen)
        fill(form, quantity="7")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is not form
        assert (await app.shop.goods.get(goods.goods_id)).stock_total == 17
        assert await app.shop.goods.live_stock(goods.goods_id) == 17
        assert cells(table, str(goods.goods_id))[5:7] == ["17", "17"]

        await pilot.press("o")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        opened = await app.shop.goods.get(goods.goods_id)
        assert opened.reservation_start is None and opened.sale_open(clock.now())
        assert cells(table, str(goods.goods_id))[4] == "open"
        buyer, _ = await add_user(app.shop, "early@example.com")
        await app.shop.orders.placing.place(buyer, goods.goods_id, 1, "Seoul 1")  # no SALE_NOT_OPEN


async def test_a_confirmation_shows_its_keys_and_enter_changes_nothing(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        assert app.shop is not None
        goods = await add_goods(app.shop, opens=clock.now() + timedelta(days=1))
        await app.refresh_all()
        table = app.query_one(GoodsTable)
        table.move_cursor(row=table.get_row_index(str(goods.goods_id)))
        await pilot.press("o")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        await pilot.pause()
        text = screen_text(app)
        assert "Open now (y)" in text and "No (n / Esc)" in text
        assert "y: Open now · n or Esc: No" in text
        assert "Enter presses the focused button (No until Tab moves it)" in text
        footer = text.splitlines()[-1]
        assert "y Yes" in footer and "n No" in footer, footer
        await pilot.press("enter")  # "No" has the focus: a stray Enter is safe
        await settle(pilot)
        assert app.screen is not dialog
        assert (await app.shop.goods.get(goods.goods_id)).reservation_start is not None


async def test_the_shops_data_shows_as_text_not_markup(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        assert app.shop is not None
        goods = await add_goods(app.shop, name="[Sale] Tee", opens=clock.now() + timedelta(days=1))
        await app.refresh_all()
        await pilot.pause()
        assert "[Sale] Tee" in screen_text(app)  # the goods table
        table = app.query_one(GoodsTable)
        table.move_cursor(row=table.get_row_index(str(goods.goods_id)))
        await pilot.press("o")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.pause()
        assert "Open the sale of [Sale] Tee now?" in screen_text(app)
        await pilot.press("y")
        await settle(pilot)
        assert (await app.shop.goods.get(goods.goods_id)).reservation_start is None
        await pilot.press("r")
        assert isinstance(app.screen, FormScreen)
        await pilot.pause()
        assert "Restock [Sale] Tee" in screen_text(app)


async def test_cancel_an_order_item(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        assert app.shop is not None
        goods = await add_goods(app.shop, stock=5)
        item = await place_paid_order(app.shop, goods.goods_id, 2)
        await app.refresh_all()
        orders = app.query_one("#orders", DataTable)
        orders.move_cursor(row=orders.get_row_index(str(item)))

        await pilot.press("c")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # changed their mind: nothing happens
        await settle(pilot)
        assert (await app.shop.order_views.get(None, item)).order_status == "COMPLETED"

        await pilot.press("c")
        await pilot.click("#yes")
        await settle(pilot)
        after = await app.shop.order_views.get(None, item)
        assert after.order_status == "CANCELED" and after.shipping_status == "CANCELED"
        assert after.payment_status == "REFUNDED"  # the bus delivered the refund
        assert await app.shop.goods.live_stock(goods.goods_id) == 5
        assert cells(orders, str(item))[5:8] == ["CANCELED", "REFUNDED", "CANCELED"]


async def test_an_item_with_its_buyer_then_ship_it(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        assert app.shop is not None
        goods = await add_goods(app.shop, stock=5)
        item = await place_paid_order(app.shop, goods.goods_id, 1)
        await app.refresh_all()
        orders = app.query_one("#orders", DataTable)
        orders.move_cursor(row=orders.get_row_index(str(item)))

        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen))
        shown = str(app.screen.query_one("#detail-body", Static).render())
        sale = await app.shop.sales.get(None, item)
        assert sale.address in shown and sale.buyer_name in shown and sale.email in shown
        assert "PENDING" in shown
        await pilot.click("#do-ship")  # the detail offers shipping while it is PENDING
        await wait_for(pilot, lambda: isinstance(app.screen, FormScreen))
        form = app.screen
        fill(form, carrier="CJ Logistics", tracking="12 34")
        form.query_one("#ok", Button).press()
        await wait_for(pilot, lambda: error_of(form, "tracking") != "")
        assert app.screen is form  # refused: the field says why, nothing shipped
        assert (await app.shop.sales.get(None, item)).item.shipping_status == "PENDING"

        fill(form, tracking="6123-4567-8901")
        form.query_one("#ok", Button).press()
        await wait_for(pilot, lambda: app.screen is not form)
        await settle(pilot)
        after = await app.shop.sales.get(None, item)
        assert (after.item.shipping_status, after.carrier, after.tracking_number) == (
            "IN_TRANSIT",
            "CJ Logistics",
            "6123-4567-8901",
        )
        assert cells(orders, str(item))[7] == "IN_TRANSIT"

        await pilot.press("p")  # shipped already: the shop refuses, the form says so
        await wait_for(pilot, lambda: isinstance(app.screen, FormScreen))
        form = app.screen
        fill(form, carrier="CJ", tracking="99999")
        form.query_one("#ok", Button).press()
        await wait_for(
            pilot, lambda: "INVALID_STATE" in str(form.query_one("#form-error", Static).render())
        )


async def test_run_a_job_now(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        assert app.shop is not None
        goods = await add_goods(app.shop)
        item = await place_paid_order(app.shop, goods.goods_id)
        clock.advance(days=1, seconds=1)  # shipping moves items whose status is a day old
        await pilot.press("j")
        picker = app.screen
        assert isinstance(picker, JobPicker)
        options = picker.query_one(OptionList)
        names = [options.get_option_at_index(i).id for i in range(options.option_count)]
        options.highlighted = names.index("shipping")
        await pilot.press("enter")
        await settle(pilot)
        assert (await app.shop.order_views.get(None, item)).shipping_status == "IN_TRANSIT"
        jobs = app.query_one("#jobs", DataTable)
        assert cells(jobs, "shipping")[3] == "inTransit 1, delivered 0"


async def test_replay_dead_letters(data_dir, clock):
    settings = make_settings(data_dir, bus_max_attempts=1)
    async with dashboard(settings, clock) as (app, pilot):
        shop = app.shop
        assert shop is not None
        handled: list[int] = []
        broken = True

        async def flaky(event: DashboardPing) -> None:
            if broken:
                raise RuntimeError("audit store down")
            handled.append(event.n)

        shop.bus.subscribe("audit", DashboardPing, flaky)
        await shop.db.write(lambda conn: shop.bus.record(conn, DashboardPing(n=1)))
        assert await shop.bus.drain(timeout=10)
        await app.refresh_all()
        assert (await shop.bus.views.counts())["deadLetters"] == 1
        dead = app.query_one("#dead", DataTable)
        assert dead.row_count == 1
        assert "audit store down" in str(dead.get_row_at(0)[4])

        broken = False
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert handled == [1]
        assert await shop.bus.views.counts() == {"pending": 0, "deadLetters": 0}
        assert dead.row_count == 0


@pytest.mark.parametrize(
    ("command", "expect"),
    [
        ("Seed goods", FormScreen),
        ("Run a job now", JobPicker),
        ("Flash-sale benchmark", BenchScreen),
    ],
)
async def test_command_palette_offers_the_actions(settings, clock, command, expect):
    async with dashboard(settings, clock) as (app, pilot):
        await pilot.press("ctrl+p")
        await pilot.press(*command)
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, expect)
        if command == "Seed goods":  # carried through: goods are made
            fill(app.screen, quantity="3")
            await pilot.press("enter")
            await settle(pilot)
            assert app.shop is not None and (await app.shop.goods.listing(0, 1))[1] == 3


@pytest.mark.timeout(120)
async def test_flash_sale_benchmark_runs_on_screen(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        assert app.shop is not None
        await pilot.press("b")
        bench = app.screen
        assert isinstance(bench, BenchScreen)
        bench.query_one("#bench-buyers", Input).value = "0"
        bench.query_one("#bench-start", Button).press()
        await wait_for(pilot, lambda: str(bench.query_one("#bench-error").render()) != "")
        assert "buyers must be a whole number" in str(bench.query_one("#bench-error").render())

        bench.query_one("#bench-buyers", Input).value = "40"
        bench.query_one("#bench-stock", Input).value = "60"
        bench.query_one("#bench-concurrency", Input).value = "8"
        bench.query_one("#bench-start", Button).press()
        # The worker's end reaches the screen as a message.
        await wait_for(pilot, lambda: bench.result is not None or bench.error is not None, 90)
        assert bench.error is None, bench.error
        assert bench.result is not None and bench.result["passed"], bench.result["checks"]
        assert bench.phase == "done: all checks pass"
        bar = bench.query_one("#bench-progress", ProgressBar)
        assert bar.total == 60 and bar.progress == 60
        shown = screen_text(app)
        assert "flash sale (lua, in-process)" in shown and "accepted" in shown
        # It ran on this shop: its goods sold out here, and the dashboard sees them.
        rows, _ = await app.shop.goods.listing(0, 5, q="Bench sale")
        [(goods, live)] = rows
        assert goods.stock_total == 60 and live == 0
        await pilot.click("#bench-close")
        await settle(pilot)
        assert not isinstance(app.screen, BenchScreen)
        assert cells(app.query_one("#goods", DataTable), str(goods.goods_id))[6:8] == [
            "sold out",
            "60",
        ]


def test_the_cli_registers_the_dashboard():
    from typer.testing import CliRunner

    from miri.cli.main import app

    result = CliRunner().invoke(app, ["dashboard", "--help"])
    assert result.exit_code == 0 and "--refresh" in result.output
    assert CliRunner().invoke(app, ["dashboard", "--refresh", "0"]).exit_code == 2


async def test_server_panel_shows_the_in_flight_bound_and_the_shed_rate(settings, clock):
    async with dashboard(settings, clock) as (app, pilot):
        assert app.shop is not None
        async with announced_server(app.shop, settings.data_dir):
            await app.refresh_all()
            await pilot.pause()
            [found] = app.servers
            assert found.overload is not None and found.overload["mode"] == "auto"
            text = screen_text(app)
            assert f"bound {found.overload['limit']} auto · 0 busy" in text and "shed …" in text
        panel = app.query_one(ServerPanel)
        bound = {
            **found.overload,
            "shed": {"orders": 0, "reads": 0, "admin": 0, "other": 0, "streams": 0},
        }
        panel.servers = [dataclasses.replace(found, overload=bound)]
        await asyncio.sleep(0.05)
        bound = {
            **bound,
            "shed": {"orders": 400, "reads": 100, "admin": 0, "other": 0, "streams": 0},
            "lagMs": 42.4,  # the event loop runs late: requests wait before any handler
        }
        panel.servers = [dataclasses.replace(found, overload=bound)]
        await pilot.pause()
        rate = panel.shed_rates[found.pid]
        assert rate is not None and rate > 0  # 500 refused since the last look
        assert f"shed {rate:,.0f}/s · lag 42 ms" in screen_text(app)
        # clients ignored Retry-After: the bound lets everyone in for a while, and says so
        panel.servers = [dataclasses.replace(found, overload={**bound, "open": True})]
        await pilot.pause()
        text = screen_text(app)
        assert "bound open · 0 busy" in text and "Retry-After ignored" in text
