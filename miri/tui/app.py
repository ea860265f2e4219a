"""``miri dashboard``: the operator's live view of a data dir, and the admin's hands on it.

The app opens the shop on its data dir without background work (no dispatcher, no scheduler; the
dashboard is a reader like any CLI command), whether or not ``miri serve`` runs on that dir. All
I/O runs in Textual workers: a refresh every ``refresh`` seconds (one at a time; a slow one is
never stacked), and each admin action in its own worker, followed by a refresh of its own. The
benchmark runs on a thread with its own event loop.

A refresh sets three reactives of the app (the snapshot, the servers, why the shop is shut);
every panel is bound to the ones it shows and redraws itself (``panels``, ``tables``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from typing import Any
from zoneinfo import ZoneInfo

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Header
from textual.worker import Worker

from miri.config import Settings
from miri.domain.errors import ShopError, ValidationFailed
from miri.infra.clock import Clock
from miri.shop import Shop, open_shop
from miri.tui import actions, data, look
from miri.tui.bench import BenchScreen
from miri.tui.panels import BusPanel, HealthPanel, OrderRateChart, PaymentsPanel, ServerPanel
from miri.tui.screens import (
    ConfirmScreen,
    DetailScreen,
    FormError,
    JobPicker,
    goods_form,
    number_form,
    ship_form,
)
from miri.tui.tables import (
    DeadLettersTable,
    GoodsTable,
    HostsTable,
    JobsTable,
    OrdersTable,
    RoomsTable,
)

log = logging.getLogger(__name__)
RECONNECT_EVERY = 5.0  # seconds between attempts to open a shop that failed to open
DRAIN_TIMEOUT = 10.0  # seconds an action waits for the bus to deliver what it published


class DashboardApp(App[None]):
    """Miri's dashboard. ``refresh``: seconds between refreshes."""

    CSS_PATH = "dashboard.tcss"
    TITLE = "Miri dashboard"
    BINDINGS = [
        Binding("a", "add_goods", "Add goods"),
        Binding("s", "seed_goods", "Seed"),
        Binding("r", "restock", "Restock"),
        Binding("o", "open_sale", "Open sale"),
        Binding("c", "cancel_order", "Cancel order"),
        Binding("i", "order_detail", "Item detail"),
        Binding("p", "ship_order", "Ship"),
        Binding("j", "run_job", "Run job"),
        Binding("d", "replay_dead_letters", "Replay dead"),
        Binding("w", "room_rate", "Room rate"),
        Binding("b", "bench", "Benchmark"),
        Binding("f5", "refresh_now", "Refresh", show=False),
        Binding("q", "quit", "Quit"),
    ]
    ADMIN_ACTIONS = {
        "add_goods",
        "seed_goods",
        "restock",
        "open_sale",
        "cancel_order",
        "order_detail",
        "ship_order",
        "run_job",
        "replay_dead_letters",
        "bench",
    }

    snapshot: reactive[data.Snapshot | None] = reactive(None, always_update=True)
    servers: reactive[list[data.ServerInfo] | None] = reactive(None, always_update=True)
    shop_error: reactive[str | None] = reactive(None)

    def __init__(
        self,
        settings: Settings,
        *,
        refresh: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.refresh_every = max(0.1, refresh)
        self.clock = clock
        self.zone = ZoneInfo(settings.timezone)
        self.shop: Shop | None = None
        self.rate = data.OrderRate()
        self._stack: AsyncExitStack | None = None
        self._connecting = False
        self._connect_failed_at = 0.0
        self._refresh_lock = asyncio.Lock()
        self._bench: BenchScreen | None = None

    # -- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        app = DashboardApp
        zone = self.zone
        yield Header(show_clock=True)
        with Horizontal(id="top"):
            yield ServerPanel(str(self.settings.data_dir), id="server").data_bind(
                app.servers, app.snapshot
            )
            yield HealthPanel(id="health").data_bind(app.snapshot, app.shop_error)
            yield BusPanel(id="bus").data_bind(app.snapshot)
            yield PaymentsPanel(id="payments").data_bind(app.snapshot)
        with Horizontal(id="middle"):
            yield GoodsTable(zone, id="goods", zebra_stripes=True).data_bind(app.snapshot)
            with Vertical(id="middle-side"):
                yield OrderRateChart(id="chart").data_bind(app.snapshot)
                yield RoomsTable(zone, id="rooms").data_bind(app.snapshot)
                yield HostsTable(zone, id="hosts").data_bind(app.snapshot)
        with Horizontal(id="bottom"):
            yield OrdersTable(zone, id="orders", zebra_stripes=True).data_bind(app.snapshot)
            with Vertical(id="side"):
                yield JobsTable(zone, id="jobs").data_bind(app.snapshot, app.servers)
                yield DeadLettersTable(zone, id="dead").data_bind(app.snapshot)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = str(self.settings.data_dir)
        self.connect()
        self.set_interval(self.refresh_every, self.tick)

    # -- the shop -------------------------------------------------------------------------------
    @work(group="connect", exit_on_error=False)
    async def connect(self) -> None:
        if self._connecting or self.shop is not None:
            return
        self._connecting = True
        stack = AsyncExitStack()
        try:
            self.shop = await stack.enter_async_context(open_shop(self.settings, clock=self.clock))
            self._stack = stack
            self.shop_error = None
        except Exception as exc:  # noqa: BLE001 - shown in the health panel, retried
            await stack.aclose()
            self.shop_error = f"{exc.__class__.__name__}: {exc}"
            self._connect_failed_at = time.monotonic()
            log.warning("dashboard could not open the shop: %s", exc)
        finally:
            self._connecting = False
        await self.refresh_all()

    async def on_unmount(self) -> None:
        if self._bench is not None and self._bench.runner is not None:
            runner = self._bench.runner
            runner.cancel()
            await asyncio.to_thread(runner.done.wait, 60)
        stack, self._stack, self.shop = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # -- refreshing -----------------------------------------------------------------------------
    def tick(self) -> None:
        if self.shop is None and not self._connecting:
            if time.monotonic() - self._connect_failed_at >= RECONNECT_EVERY:
                self.connect()
            return
        if not self._refresh_lock.locked():
            self.refresh_worker()

    @work(group="refresh", exit_on_error=False)
    async def refresh_worker(self) -> None:
        await self.refresh_all()

    async def refresh_all(self) -> None:
        """One full read; callers queue behind a refresh already running, so theirs is fresh."""
        async with self._refresh_lock:
            try:
                servers = await data.find_servers(self.settings.data_dir)
            except Exception as exc:  # noqa: BLE001 - the panel says so; the rest goes on
                log.warning("server lookup failed: %s", exc)
            else:
                self.servers = servers
            shop = self.shop
            if shop is None:
                return
            try:
                snapshot = await data.collect(shop, self.rate)
            except Exception as exc:  # noqa: BLE001
                self.shop_error = f"{exc.__class__.__name__}: {exc}"
            else:
                self.snapshot = snapshot  # outside the try: a panel's own error is not the shop's

    def action_refresh_now(self) -> None:
        self.refresh_worker()

    # -- actions: helpers -----------------------------------------------------------------------
    def notify(self, message: str, *, markup: bool = False, **kwargs: Any) -> None:
        """As Textual's, but the message is text by default: it carries the shop's data (goods
        names, errors), which may hold square brackets."""
        super().notify(message, markup=markup, **kwargs)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.ADMIN_ACTIONS and len(self.screen_stack) > 1:
            return False  # a dialog is open: its keys are its own
        return True

    def _need_shop(self) -> Shop | None:
        if self.shop is None:
            self.notify(
                f"the shop is not open yet{': ' + self.shop_error if self.shop_error else ''}",
                severity="warning",
            )
        return self.shop

    def _selected(self, table: type[GoodsTable | OrdersTable], what: str) -> int | None:
        key = self.query_one(table).selected_key()
        if key is None:
            self.notify(f"select {what} first", severity="warning")
            return None
        return int(key)

    def act(self, title: str, work: Callable[[Shop], Awaitable[str]]) -> Worker[None]:
        """Run ``work`` in a worker; its answer (or refusal) is a notification, then a refresh."""

        async def run() -> None:
            shop = self._need_shop()
            if shop is None:
                return
            try:
                message = await work(shop)
            except ShopError as exc:
                self.notify(f"{exc.code}: {exc.message}", title=title, severity="error")
            except Exception as exc:  # noqa: BLE001 - told, not raised: the dashboard goes on
                log.exception("%s failed", title)
                self.notify(f"{exc.__class__.__name__}: {exc}", title=title, severity="error")
            else:
                self.notify(message, title=title)
            await self.refresh_all()

        return self.run_worker(run(), group="action", description=title, exit_on_error=False)

    async def _settle(self, shop: Shop) -> None:
        """Deliver what an action published (as the CLI does; a running server would too)."""
        await shop.bus.drain(timeout=DRAIN_TIMEOUT)

    # -- actions --------------------------------------------------------------------------------
    def action_add_goods(self) -> None:
        if self._need_shop() is None:
            return

        async def submit(values: dict[str, Any]) -> int:
            shop = self.shop
            if shop is None:
                raise FormError({"name": "the shop is not open yet"})
            try:
                opening = actions.parse_opening(values["opens"], self.zone, shop.clock.now())
            except ValueError as exc:
                raise FormError({"opens": str(exc)}) from None
            seller = await actions.house_seller(shop)
            goods = await shop.goods.register(
                seller,
                name=values["name"],
                description=values["description"],
                price=values["price"],
                stock=values["stock"],
                category=values["category"],
                reservation_start=opening,
                per_buyer_limit=values["limit"],
            )
            self.notify(f"added goods {goods.goods_id}: {goods.name}", title="Add goods")
            await self.refresh_all()
            return goods.goods_id

        self.push_screen(goods_form(submit))

    def action_seed_goods(self) -> None:
        if self._need_shop() is None:
            return

        async def submit(values: dict[str, Any]) -> int:
            count = values["quantity"]
            if not 1 <= count <= 10_000:
                raise FormError({"quantity": "from 1 to 10,000"})
            shop = self.shop
            if shop is None:
                raise FormError({"quantity": "the shop is not open yet"})
            ids = await actions.seed_goods(shop, count)
            self.notify(f"created {len(ids)} goods (ids {ids[0]}..{ids[-1]})", title="Seed")
            await self.refresh_all()
            return len(ids)

        self.push_screen(
            number_form(
                "Seed goods",
                "How many goods (1-10,000)?",
                20,
                submit,
                note=f"Realistic goods sold by {actions.HOUSE_SELLER}; about 30% open later.",
            )
        )

    def action_restock(self) -> None:
        if self._need_shop() is None:
            return
        goods_id = self._selected(GoodsTable, "goods")
        if goods_id is None:
            return
        row = self.query_one(GoodsTable).row(goods_id)
        name = row.name if row else f"goods {goods_id}"

        async def submit(values: dict[str, Any]) -> int:
            shop = self.shop
            if shop is None:
                raise FormError({"quantity": "the shop is not open yet"})
            stock = await shop.goods.restock(0, True, goods_id, values["quantity"])
            self.notify(f"{name}: live stock now {stock:,}", title="Restock")
            await self.refresh_all()
            return stock

        self.push_screen(number_form(f"Restock {name}", "Units to add", 10, submit))

    def action_room_rate(self) -> None:
        """Change the admission rate of the waiting room selected in its table."""
        if self._need_shop() is None:
            return
        table = self.query_one(RoomsTable)
        key = table.selected_key()
        if key is None:
            self.notify("select a waiting room first", severity="warning")
            return
        goods_id = int(key)
        room = next(
            (r for r in (self.snapshot.rooms if self.snapshot else []) if r["goodsId"] == goods_id),
            None,
        )
        current = room["admitPerSecond"] if room else 50

        async def submit(values: dict[str, Any]) -> int:
            shop = self.shop
            if shop is None:
                raise FormError({"quantity": "the shop is not open yet"})
            try:
                await shop.queue.set_rate(goods_id, values["quantity"])
            except ValidationFailed as exc:
                raise FormError(
                    {"quantity": next(iter((exc.data or {}).values()), exc.message)}
                ) from None
            self.notify(
                f"goods {goods_id}: {values['quantity']:,} admitted per second", title="Room rate"
            )
            await self.refresh_all()
            return values["quantity"]

        self.push_screen(
            number_form(f"Waiting room of goods {goods_id}", "Admitted per second", current, submit)
        )

    def action_open_sale(self) -> None:
        goods_id = self._selected(GoodsTable, "goods")
        if goods_id is None:
            return
        row = self.query_one(GoodsTable).row(goods_id)
        if row is not None and row.open:
            self.notify(f"{row.name}: the sale is open already")
            return
        name = row.name if row else f"goods {goods_id}"

        async def work(shop: Shop) -> str:
            await actions.open_sale_now(shop, goods_id)
            return f"{name}: on sale from now"

        def answered(yes: bool | None) -> None:
            if yes:
                self.act("Open sale", work)

        self.push_screen(ConfirmScreen(f"Open the sale of {name} now?", "Open now"), answered)

    def action_cancel_order(self) -> None:
        item = self._selected(OrdersTable, "an order item")
        if item is None:
            return

        async def work(shop: Shop) -> str:
            await shop.orders.changes.cancel(None, item)
            await self._settle(shop)
            after = await shop.order_views.get(None, item)
            return (
                f"item {item}: {after.order_status}, payment {after.payment_status},"
                f" shipping {after.shipping_status}"
            )

        def answered(yes: bool | None) -> None:
            if yes:
                self.act("Cancel order", work)

        self.push_screen(
            ConfirmScreen(
                f"Cancel order item {item}? Its stock goes back and the payment is refunded.",
                "Cancel item",
            ),
            answered,
        )

    def action_order_detail(self) -> None:
        """The selected item with buyer, address, payment and shipping; ship from there."""
        item = self._selected(OrdersTable, "an order item")
        if item is None:
            return

        async def show() -> None:
            shop = self._need_shop()
            if shop is None:
                return
            try:
                rows = await actions.item_detail(shop, item)
            except ShopError as exc:
                self.notify(f"{exc.code}: {exc.message}", title="Item", severity="error")
                return
            state = dict(rows)
            can_ship = state["orderStatus"] == "COMPLETED" and state["shippingStatus"] == "PENDING"

            def chosen(action: str | None) -> None:
                if action == "ship":
                    self._ship(item)

            self.push_screen(
                DetailScreen(
                    f"Order item {item}", rows, (("ship", "Ship (p)"),) if can_ship else ()
                ),
                chosen,
            )

        self.run_worker(show(), group="action", description="Item", exit_on_error=False)

    def action_ship_order(self) -> None:
        item = self._selected(OrdersTable, "an order item")
        if item is not None:
            self._ship(item)

    def _ship(self, item: int) -> None:
        if self._need_shop() is None:
            return

        async def submit(values: dict[str, Any]) -> str:
            shop = self.shop
            if shop is None:
                raise FormError({"carrier": "the shop is not open yet"})
            message = await actions.ship_item(shop, item, values["carrier"], values["tracking"])
            await self._settle(shop)
            self.notify(message, title="Ship")
            await self.refresh_all()
            return message

        self.push_screen(
            ship_form(submit, note=f"Order item {item}: IN_TRANSIT now; the buyer is mailed.")
        )

    def action_run_job(self) -> None:
        shop = self._need_shop()
        if shop is None:
            return
        jobs = [(j.name, j.schedule, j.description) for j in shop.jobs.list()]

        def picked(name: str | None) -> None:
            if name:
                self.act(f"Run {name}", lambda shop: self._run_job(shop, name))

        self.push_screen(JobPicker(jobs), picked)

    async def _run_job(self, shop: Shop, name: str) -> str:
        outcome = await shop.jobs.run(name)
        await self._settle(shop)
        return f"{name}: {look.result(outcome)}"

    def action_replay_dead_letters(self) -> None:
        dead = self.snapshot.bus.get("deadLetters", 0) if self.snapshot else 0

        async def work(shop: Shop) -> str:
            count = await shop.bus.views.replay(None)
            if count:
                await self._settle(shop)
            left = (await shop.bus.views.counts())["deadLetters"]
            return f"replayed {count} deliveries; {left} dead letters left"

        if not dead:
            self.act("Replay dead letters", work)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.act("Replay dead letters", work)

        self.push_screen(
            ConfirmScreen(f"Replay {dead} dead letters (attempts reset)?", "Replay"), answered
        )

    def action_bench(self) -> None:
        shop = self._need_shop()
        if shop is None:
            return
        url = self.servers[0].url if self.servers else None
        self._bench = BenchScreen(shop, url)

        def closed(result: dict[str, Any] | None) -> None:
            self._bench = None
            if result is not None:
                verdict = "all checks pass" if result["passed"] else "a check failed"
                self.notify(
                    f"{result['accepted_orders_per_s']:,} accepted orders/s; {verdict}",
                    title="Benchmark",
                )
            self.refresh_worker()

        self.push_screen(self._bench, closed)

    # -- the command palette --------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        commands = (
            ("Add goods", "Register new goods (a form with validation)", self.action_add_goods),
            ("Seed goods", "Fill the catalogue with realistic goods", self.action_seed_goods),
            ("Restock goods", "Add stock to the selected goods", self.action_restock),
            ("Open sale now", "Open the selected goods' sale now", self.action_open_sale),
            ("Cancel order item", "Cancel the selected order item", self.action_cancel_order),
            (
                "Order item detail",
                "Buyer, address, payment and shipping of the selected item",
                self.action_order_detail,
            ),
            ("Ship order item", "Carrier and tracking number", self.action_ship_order),
            ("Run a job now", "Shipping, returns, payment expiry, stock sync", self.action_run_job),
            (
                "Replay dead letters",
                "Put dead-lettered deliveries back in line",
                self.action_replay_dead_letters,
            ),
            ("Flash-sale benchmark", "Rehearse a flash sale on this shop", self.action_bench),
            ("Refresh now", "Read everything again", self.action_refresh_now),
        )
        for title, help_text, callback in commands:
            yield SystemCommand(title, help_text, callback)
