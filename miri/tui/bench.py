"""The flash-sale benchmark from the dashboard: a form, a progress bar, the result tables.

The bench (``miri.bench.flash_sale.flash_sale``, the same entry point as ``miri bench
flash-sale``) runs on the dashboard's data dir, so the sale shows on the dashboard as it happens:
it adds its buyers and one "Bench sale" goods. It runs in a thread with its own event loop, so
the load it generates never stalls the screen. The progress bar follows the bench goods' live
stock, read through the dashboard's own shop.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ProgressBar, RichLog, Select, Static
from textual.worker import Worker, WorkerState

from miri.shop import Shop

BENCH_GOODS = "Bench sale"
TARGETS = {
    "in-process": "in-process: the services directly, no HTTP",
    "subprocess": "a new `miri serve` on this data dir, over HTTP",
    "server": "the server already running on this data dir",
}


@dataclass
class BenchRequest:
    buyers: int = 200
    stock: int = 300
    concurrency: int = 32
    target: str = "in-process"
    url: str | None = None  # the running server, for target "server"
    opens_in: float = 2.0


class _Say:
    """What the bench's ``Ui`` prints to: lines go to the screen's log."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self.is_terminal = False

    def print(self, text: Any = "", *args: Any, **kwargs: Any) -> None:
        self._say(str(text))


class BenchRunner:
    """``flash_sale(opts)`` on its own thread and loop; ``cancel()`` stops it from any thread."""

    def __init__(self, opts: Any, say: Callable[[str], None]) -> None:
        self.opts = opts
        self.say = say
        self.done = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._cancelled = False
        self._lock = threading.Lock()

    def run(self) -> dict[str, Any]:
        from miri.bench.flash_sale import Ui, flash_sale

        loop = asyncio.new_event_loop()
        try:
            with self._lock:
                if self._cancelled:
                    raise asyncio.CancelledError()
                self._loop = loop
                self._task = loop.create_task(
                    flash_sale(self.opts, Ui(console=_Say(self.say), progress=False))
                )
            return loop.run_until_complete(self._task)
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self.done.set()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._task.cancel)


def bench_options(req: BenchRequest, data_dir: Any, admin_token: str | None = None) -> Any:
    from miri.bench.flash_sale import BenchOptions

    return BenchOptions(
        buyers=req.buyers,
        stock=req.stock,
        concurrency=req.concurrency,
        runs=1,
        opens_in=req.opens_in,
        in_process=req.target == "in-process",
        url=req.url if req.target == "server" else None,
        admin_token=admin_token if req.target == "server" else None,
        data_dir=data_dir,
        max_seconds=120.0,
        drain_timeout=60.0,
    )


class BenchScreen(ModalScreen[dict[str, Any] | None]):
    """Set up, run and read a flash-sale rehearsal."""

    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, shop: Shop, server_url: str | None = None) -> None:
        super().__init__()
        self.shop = shop
        self.server_url = server_url
        self.runner: BenchRunner | None = None
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.stock = 0
        self.goods_after = 0  # bench goods have ids above this
        self.phase = ""
        self.following = False

    def compose(self) -> ComposeResult:
        targets = [(label, key) for key, label in TARGETS.items()]
        if self.server_url is None:
            targets = [t for t in targets if t[1] != "server"]
        with Vertical(classes="dialog wide", id="bench-dialog"):
            yield Label("Flash-sale benchmark", classes="dialog-title")
            yield Static(
                "Runs on this shop's data dir: it adds its buyers and one "
                f'"{BENCH_GOODS}" goods, and the sale shows on the dashboard.',
                classes="dialog-note",
            )
            with Horizontal(id="bench-form"):
                with Vertical():
                    yield Label("Buyers", classes="field-label")
                    yield Input("200", type="integer", id="bench-buyers")
                with Vertical():
                    yield Label("Stock", classes="field-label")
                    yield Input("300", type="integer", id="bench-stock")
                with Vertical():
                    yield Label("Concurrency", classes="field-label")
                    yield Input("32", type="integer", id="bench-concurrency")
                with Vertical(classes="bench-target"):
                    yield Label("Target", classes="field-label")
                    yield Select(targets, value="in-process", allow_blank=False, id="bench-target")
            yield Static("", id="bench-error", classes="field-error")
            with Horizontal(id="bench-progress-row"):
                yield Label("ready", id="bench-phase")
                yield ProgressBar(total=None, show_eta=False, id="bench-progress")
            yield RichLog(id="bench-log", markup=True, wrap=True, max_lines=200)
            with VerticalScroll(id="bench-result-box"):
                yield Static("", id="bench-result")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start", variant="primary", id="bench-start")
                yield Button("Close", id="bench-close")

    def on_mount(self) -> None:
        self.query_one("#bench-start", Button).focus()

    # -- starting ------------------------------------------------------------------------------
    def request(self) -> BenchRequest:
        errors = []
        numbers = {}
        for name, low in (("buyers", 1), ("stock", 1), ("concurrency", 1)):
            raw = self.query_one(f"#bench-{name}", Input).value.strip()
            try:
                numbers[name] = int(raw)
                if numbers[name] < low:
                    raise ValueError
            except ValueError:
                errors.append(f"{name} must be a whole number of at least {low}")
        if errors:
            raise ValueError("; ".join(errors))
        target = str(self.query_one("#bench-target", Select).value)
        return BenchRequest(target=target, url=self.server_url, **numbers)

    @on(Button.Pressed, "#bench-start")
    def start(self) -> None:
        if self.runner is not None:
            return
        try:
            req = self.request()
        except ValueError as exc:
            self.query_one("#bench-error", Static).update(str(exc))
            return
        self.query_one("#bench-error", Static).update("")
        for widget in self.query("#bench-form Input, #bench-form Select, #bench-start"):
            widget.disabled = True
        self.stock = req.stock
        self.query_one("#bench-progress", ProgressBar).update(total=req.stock, progress=0)
        self.set_phase("making buyers")
        self.run_bench(req)
        self.set_interval(0.25, self.watch_sale)

    @work(group="bench", exit_on_error=False)
    async def run_bench(self, req: BenchRequest) -> None:
        ids = await self.shop.goods.listing(0, 1)
        self.goods_after = ids[0][0][0].goods_id if ids[0] else 0
        token = None
        if req.target == "server":
            [(_, token)] = await self.shop.users.add_bench_users(
                1, "dash" + secrets.token_hex(3), role="ADMIN"
            )
        opts = bench_options(req, self.shop.settings.data_dir, token)
        self.runner = BenchRunner(opts, lambda line: self.app.call_from_thread(self.log_line, line))
        self.run_in_thread()

    @work(thread=True, group="bench-thread", exit_on_error=False)
    def run_in_thread(self) -> dict[str, Any]:
        assert self.runner is not None
        return self.runner.run()

    def log_line(self, line: str) -> None:
        self.query_one("#bench-log", RichLog).write(Text.from_markup(line))

    def set_phase(self, text: str) -> None:
        self.phase = text
        self.query_one("#bench-phase", Label).update(text)

    # -- following -----------------------------------------------------------------------------
    def watch_sale(self) -> None:
        if self.result is None and self.error is None and not self.following:
            self.following = True
            self.follow_sale()

    @work(group="bench-watch", exit_on_error=False)
    async def follow_sale(self) -> None:
        try:
            rows, _ = await self.shop.goods.listing(0, 1, q=BENCH_GOODS)
        except Exception:  # noqa: BLE001 - the next tick looks again
            return
        finally:
            self.following = False
        if not rows or rows[0][0].goods_id <= self.goods_after:
            return
        goods, live = rows[0]
        if self.result is not None or self.error is not None:
            return
        sold = goods.stock_total - live
        self.query_one("#bench-progress", ProgressBar).update(
            total=goods.stock_total, progress=sold
        )
        if not goods.sale_open(self.shop.clock.now()):
            self.set_phase("waiting for the opening")
        elif live > 0:
            self.set_phase(f"selling: {sold:,} of {goods.stock_total:,}")
        else:
            self.set_phase("sold out: draining the bus and checking")

    @on(Worker.StateChanged)
    def bench_finished(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "bench-thread":
            return
        if event.state == WorkerState.SUCCESS:
            self.show_result(event.worker.result)
        elif event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            err = event.worker.error
            self.error = f"{err.__class__.__name__}: {err}" if err else "cancelled"
            self.set_phase("failed")
            self.query_one("#bench-error", Static).update(f"the bench stopped: {self.error}")

    def show_result(self, out: dict[str, Any]) -> None:
        from miri.bench import report

        self.result = out
        runs = next(iter(out["strategies"].values())).get("run_details") or [{}]
        sold = runs[-1].get("accepted_units")
        bar = self.query_one("#bench-progress", ProgressBar)
        bar.update(total=self.stock, progress=self.stock if sold is None else sold)
        verdict = "all checks pass" if out["passed"] else "A CHECK FAILED"
        self.set_phase(f"done: {verdict}")
        parts = [
            report.tables(f"flash sale ({name}, {section['target']})", section)
            for name, section in out["strategies"].items()
        ]
        from rich.console import Group

        self.query_one("#bench-result", Static).update(Group(*parts))
        self.query_one("#bench-close", Button).focus()

    # -- leaving -------------------------------------------------------------------------------
    @on(Button.Pressed, "#bench-close")
    def action_close(self) -> None:
        if self.runner is not None and self.result is None and self.error is None:
            self.runner.cancel()
            self.set_phase("stopping the bench...")
            return
        self.dismiss(self.result)
