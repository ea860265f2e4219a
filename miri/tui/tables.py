"""The dashboard's tables: goods, latest orders, scheduled jobs, the shop's hosts, dead letters.

Each is a ``DataTable`` that keeps its own reactive ``snapshot`` (bound to the app's), turns its
part into rows, keeps the cursor on the same row across refreshes, and says which row is selected.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable

from miri.domain.views.dashboard import ServingHost
from miri.domain.views.orders import OrderItemView
from miri.tui.data import GoodsRow, JobRow, ServerInfo, Snapshot
from miri.tui.look import duration, result, status


class TablePanel(DataTable[Any]):
    """A table panel: ``rows_of(snapshot)`` gives (key, cells); the rest is shared."""

    TITLE = ""
    COLUMNS: tuple[str, ...] = ()
    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True)

    def __init__(self, zone: tzinfo, *, id: str, zebra_stripes: bool = False) -> None:  # noqa: A002
        super().__init__(id=id, classes="panel", cursor_type="row", zebra_stripes=zebra_stripes)
        self.zone = zone
        self.border_title = self.TITLE

    def on_mount(self) -> None:
        if not self.columns:
            self.add_columns(*self.COLUMNS)

    def watch_snapshot(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        if not self.columns:
            self.add_columns(*self.COLUMNS)
        self.border_subtitle = self.subtitle(snap)
        self.fill(self.rows_of(snap))

    def subtitle(self, snap: Snapshot) -> str:
        return ""

    def rows_of(self, snap: Snapshot) -> Iterable[tuple[str, tuple[Any, ...]]]:
        raise NotImplementedError

    def fill(self, rows: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
        """Replace the rows, keeping the cursor on the same key when it is still there."""
        selected = self.selected_key()
        self.clear()
        for key, cells in rows:
            # Plain strings as text: a DataTable reads them as markup, and a goods name may
            # read "[Sale] Linen Shirt".
            self.add_row(*(Text(c) if isinstance(c, str) else c for c in cells), key=key)
        if selected is not None:
            try:
                self.move_cursor(row=self.get_row_index(selected), animate=False)
            except Exception:  # noqa: BLE001 - the row is gone: the cursor stays where it is
                pass

    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - no valid cursor
            return None


# -- goods ------------------------------------------------------------------------------------------
def opens(row: GoodsRow, zone: tzinfo, now: datetime) -> Text:
    if row.open:
        return Text("open", style="bold green")
    assert row.opens is not None
    local = row.opens.astimezone(zone)
    return Text(f"{local:%m-%d %H:%M} (in {duration((row.opens - now).total_seconds())})")


def goods_cells(row: GoodsRow, zone: tzinfo, now: datetime) -> tuple[Any, ...]:
    live: Any = "?" if row.live is None else f"{row.live:,}"
    if row.live == 0 and row.stock_total:
        live = Text("sold out", style="red")
    return (
        str(row.goods_id),
        row.name,
        row.category,
        Text(f"{row.price:,}", justify="right"),
        opens(row, zone, now),
        Text(f"{row.stock_total:,}", justify="right"),
        live if isinstance(live, Text) else Text(live, justify="right"),
        Text(f"{row.sold:,}", justify="right"),
        Text(f"{row.buyers:,}", justify="right"),
    )


class GoodsTable(TablePanel):
    """The newest goods: price, sale opening, stock, live stock, units sold and buyers."""

    TITLE = "Goods"
    COLUMNS = ("id", "name", "category", "price", "sale opens", "stock", "live", "sold", "buyers")

    def subtitle(self, snap: Snapshot) -> str:
        if "goods" in snap.errors:
            return snap.errors["goods"]
        return f"{len(snap.goods)} of {snap.goods_total:,}"

    def rows_of(self, snap: Snapshot) -> Iterable[tuple[str, tuple[Any, ...]]]:
        for g in snap.goods:
            yield str(g.goods_id), goods_cells(g, self.zone, snap.taken_at)

    def row(self, goods_id: int) -> GoodsRow | None:
        snap = self.snapshot
        return next((g for g in snap.goods if g.goods_id == goods_id), None) if snap else None


# -- order items ------------------------------------------------------------------------------------
def order_cells(item: OrderItemView, zone: tzinfo) -> tuple[Any, ...]:
    return (
        str(item.order_item_id),
        str(item.order_id),
        item.goods_name,
        Text(str(item.quantity), justify="right"),
        Text(f"{item.sub_total_price:,}", justify="right"),
        status(item.order_status),
        status(item.payment_status, "PAYMENT_"),
        status(item.shipping_status),
        status(item.return_status, "RETURN_"),
        f"{item.ordered_at.astimezone(zone):%H:%M:%S}",
    )


class OrdersTable(TablePanel):
    """The latest order items, each with its order, payment, shipping and return status."""

    TITLE = "Latest orders"
    COLUMNS = (
        "item",
        "order",
        "goods",
        "qty",
        "total",
        "status",
        "payment",
        "shipping",
        "return",
        "at",
    )

    def subtitle(self, snap: Snapshot) -> str:
        if "orders" in snap.errors:
            return snap.errors["orders"]
        return f"{len(snap.orders)} of {snap.orders_total:,} items"

    def rows_of(self, snap: Snapshot) -> Iterable[tuple[str, tuple[Any, ...]]]:
        for item in snap.orders:
            yield str(item.order_item_id), order_cells(item, self.zone)


# -- jobs -------------------------------------------------------------------------------------------
NO_SERVER = "no server"


def job_cells(job: JobRow, zone: tzinfo, now: datetime, served: bool) -> tuple[Any, ...]:
    """``served``: a server runs the schedule; without one, no countdown (nothing will run)."""
    nxt = job.next_run
    if nxt is None:
        due: Any = "-"
    elif served:
        due = duration((nxt - now).total_seconds())
    else:
        due = Text(NO_SERVER, style="dim")
    return (
        Text(job.name, style="bold"),
        f"{nxt.astimezone(zone):%m-%d %H:%M:%S}" if nxt else "-",
        due,
        result(job.last_result),
    )


class JobsTable(TablePanel):
    """The scheduled jobs: next run, how long until it, the last result seen here.

    Only a ``miri serve`` runs the schedule: with none on the data dir and no live host in the
    shop's heartbeat table (hosts elsewhere on a shared database), the panel says so instead of
    counting down to runs that will not happen.
    """

    TITLE = "Scheduled jobs"
    COLUMNS = ("job", "next run", "in", "last result")
    servers: reactive[list[ServerInfo] | None] = reactive(None, always_update=True)

    def watch_servers(self) -> None:
        self.redraw()

    @property
    def served(self) -> bool:
        """Unknown yet counts as served: the panel says "no server" only once it knows."""
        if self.servers is None or self.servers:
            return True
        snap = self.snapshot
        return snap is None or "hosts" in snap.errors or any(h.state == "alive" for h in snap.hosts)

    def subtitle(self, snap: Snapshot) -> str:
        if not self.served:
            return "no server runs them · j runs one now"
        return ""

    def rows_of(self, snap: Snapshot) -> Iterable[tuple[str, tuple[Any, ...]]]:
        for job in snap.jobs:
            yield job.name, job_cells(job, self.zone, snap.taken_at, self.served)


# -- hosts ------------------------------------------------------------------------------------------
HOST_STATE = {"alive": "green", "gone": "bold red", "stopped": "dim"}


def host_cells(host: ServingHost, now: float) -> tuple[Any, ...]:
    style = HOST_STATE.get(host.state, "")
    return (
        Text(f"● {host.state}", style=style),
        Text(host.hostname, style="bold" if host.state == "alive" else ""),
        Text(str(host.pid), justify="right"),
        Text("jobs", style="bold cyan") if host.leader else Text("-", style="dim"),
        Text(f"{duration(now - host.seen_at)} ago", justify="right"),
        host.url or "-",
        Text(host.host_id, style="dim"),
    )


class HostsTable(TablePanel):
    """Every ``miri serve`` of the shop, on any machine, from the heartbeat table (not the data
    dir's files): alive, gone (stopped beating without saying so) or stopped; which one runs
    the jobs; when each was last seen."""

    TITLE = "Hosts"
    COLUMNS = ("state", "hostname", "pid", "leader", "last seen", "url", "id")

    def subtitle(self, snap: Snapshot) -> str:
        if "hosts" in snap.errors:
            return snap.errors["hosts"]
        alive = sum(h.state == "alive" for h in snap.hosts)
        gone = sum(h.state == "gone" for h in snap.hosts)
        return f"{alive} alive" + (f" · {gone} gone" if gone else "")

    def rows_of(self, snap: Snapshot) -> Iterable[tuple[str, tuple[Any, ...]]]:
        now = snap.checked_at
        for host in snap.hosts:
            yield host.host_id, host_cells(host, now)


# -- dead letters -----------------------------------------------------------------------------------
def dead_cells(letter: dict[str, Any], zone: tzinfo) -> tuple[Any, ...]:
    error = (letter.get("lastError") or "").splitlines()
    failed = datetime.fromtimestamp(letter["failedAt"], zone) if letter.get("failedAt") else None
    return (
        Text(letter["type"], style="bold"),
        letter["consumer"],
        str(letter["attempts"]),
        f"{failed:%m-%d %H:%M:%S}" if failed else "-",
        Text(error[0] if error else "", style="red"),
    )


class DeadLettersTable(TablePanel):
    """The newest dead letters: which event, which consumer, how many tries, the last error."""

    TITLE = "Dead letters"
    COLUMNS = ("event", "consumer", "tries", "failed", "error")

    def subtitle(self, snap: Snapshot) -> str:
        return f"{snap.bus.get('deadLetters', 0):,} · d replays them"

    def rows_of(self, snap: Snapshot) -> Iterable[tuple[str, tuple[Any, ...]]]:
        for d in snap.dead_letters:
            yield f"{d['eventId']}:{d['consumer']}", dead_cells(d, self.zone)


# -- waiting rooms -----------------------------------------------------------------------------------
class RoomsTable(TablePanel):
    """Each waiting room live: line length, admitted per second, passes used vs expired, rate.

    Admitted per second is measured here, between two snapshots, from the room's count of
    admissions; the table keeps the previous count per goods as its own state.
    """

    TITLE = "Waiting rooms"
    COLUMNS = ("goods", "in line", "admitted/s", "holding", "used", "expired", "rate", "state")

    def __init__(self, zone: tzinfo, *, id: str, zebra_stripes: bool = False) -> None:  # noqa: A002
        super().__init__(zone, id=id, zebra_stripes=zebra_stripes)
        self._seen: dict[int, tuple[datetime, int]] = {}  # goods -> (when, admitted so far)

    def subtitle(self, snap: Snapshot) -> str:
        return "w sets the rate" if snap.rooms else "none · goods opt in with waitingRoom"

    def admitted_per_second(self, room: dict[str, Any], at: datetime) -> float | None:
        goods_id, total = room["goodsId"], room["admittedTotal"]
        before = self._seen.get(goods_id)
        self._seen[goods_id] = (at, total)
        if before is None or at <= before[0]:
            return None
        return max(total - before[1], 0) / (at - before[0]).total_seconds()

    def rows_of(self, snap: Snapshot) -> Iterable[tuple[str, tuple[Any, ...]]]:
        for room in snap.rooms:
            rate = self.admitted_per_second(room, snap.taken_at)
            if room["saleSoldOut"]:
                state = Text("sold out", style="red")
            elif not room["enabled"]:
                state = Text("off", style="dim")
            elif not room["opened"]:
                state = Text(f"pre-queue {room['preQueue']:,}", style="yellow")
            else:
                state = Text("admitting", style="green")
            yield (
                str(room["goodsId"]),
                (
                    str(room["goodsId"]),
                    f"{room['waiting']:,}",
                    "-" if rate is None else f"{rate:,.1f}",
                    f"{room['admitted']:,}",
                    f"{room['used']:,}",
                    f"{room['expired']:,}",
                    f"{room['admitPerSecond']:,}/s",
                    state,
                ),
            )
