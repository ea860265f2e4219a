"""The status strip and the chart: panels that each keep their own state and draw themselves.

Each panel holds a reactive ``snapshot`` (and, where it needs them, the servers found on the data
dir or why the shop did not open); the app binds them to its own, so a refresh is one assignment
on the app and every panel redraws from what it holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static
from textual_plotext import PlotextPlot

from miri.tui.data import ServerInfo, Snapshot
from miri.tui.look import dot, duration, grid, size, status

PAYMENT_ORDER = (
    "PAYMENT_COMPLETED",
    "PAYMENT_IN_PROGRESS",
    "PAYMENT_SCREEN_ENTERED",
    "PAYMENT_ABORTED",
    "REFUNDED",
)


def _line_or_error(snap: Snapshot, section: str, line: Callable[[], str]) -> Text:
    """``line()``, or why reading that section of the snapshot failed, in red."""
    if section in snap.errors:
        return Text(snap.errors[section], style="red")
    return Text(line())


class StripPanel(Static):
    """A panel of the status strip: its part of the latest snapshot, as text."""

    TITLE = ""
    SECTION = ""  # the snapshot's section shown; when reading it failed, why is shown instead
    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True)

    def __init__(self, *, id: str) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id, classes="panel")
        self.border_title = self.TITLE

    def watch_snapshot(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        self.update(self.content_for(self.snapshot))

    def content_for(self, snap: Snapshot | None) -> RenderableType:
        if snap is None:
            return Text("...", style="dim")
        if self.SECTION in snap.errors:
            return Text(snap.errors[self.SECTION], style="red")
        return self.figures(snap)

    def figures(self, snap: Snapshot) -> RenderableType:
        raise NotImplementedError


def bound_lines(bound: dict | None, shed_rate: float | None) -> list[Text]:
    """The in-flight bound of a server: its limit, what is in flight, how fast it refuses."""
    if not bound:
        return []
    if bound.get("mode") == "off":
        return [Text("no in-flight bound", style="dim")]
    in_flight = sum((bound.get("inFlight") or {}).values())
    rate = "…" if shed_rate is None else f"{shed_rate:,.0f}/s"
    lag = bound.get("lagMs")  # how late the event loop runs: a wait no handler sees
    late = "" if lag is None else f" · lag {lag:,.0f} ms"
    shed = Text.assemble("shed ", Text(rate, style="bold red" if shed_rate else ""), late)
    if bound.get("open"):  # clients ignored Retry-After: refusing only made them spin
        head = Text(f"bound open · {in_flight} busy", style="yellow")
        return [head, Text("Retry-After ignored", style="yellow"), shed]
    return [Text(f"bound {bound.get('limit')} {bound.get('mode')} · {in_flight} busy"), shed]


class ServerPanel(StripPanel):
    """The ``miri serve`` processes on the data dir, each with its health and in-flight bound;
    the panel keeps each server's last shed count to show the rate at which it refuses (the
    shop's hosts on other machines are the Hosts table's)."""

    TITLE = "Server"
    servers: reactive[list[ServerInfo] | None] = reactive(None, always_update=True)

    def __init__(self, data_dir: str, *, id: str) -> None:  # noqa: A002
        super().__init__(id=id)
        self.data_dir = data_dir
        self._shed_seen: dict[int, tuple[float, int]] = {}  # pid -> (when, requests shed)
        self.shed_rates: dict[int, float | None] = {}

    def watch_servers(self) -> None:
        now = time.monotonic()
        seen, rates = {}, {}
        for s in self.servers or []:
            if not s.overload or "shed" not in s.overload:
                continue
            total = sum(s.overload["shed"].values())
            before = self._shed_seen.get(s.pid)
            rates[s.pid] = None
            if before and now > before[0] and total >= before[1]:
                rates[s.pid] = (total - before[1]) / (now - before[0])
            seen[s.pid] = (now, total)
        self._shed_seen, self.shed_rates = seen, rates
        self.redraw()

    def content_for(self, snap: Snapshot | None) -> RenderableType:
        servers = self.servers
        if servers is None:
            return Text("looking...", style="dim")
        if not servers:
            alive = sum(h.state == "alive" for h in snap.hosts) if snap else 0
            elsewhere = (
                Text(f"{alive} host{'s' if alive != 1 else ''} serve the shop: see Hosts")
                if alive
                else Text("the dashboard works on the files directly", style="dim")
            )
            return Group(
                Text.assemble(dot(None), " no server on this data dir"),
                elsewhere,
                Text(self.data_dir, style="dim", overflow="ellipsis", no_wrap=True),
            )
        table = grid()
        now = time.time()
        for s in servers:
            table.add_row(
                Text.assemble(dot(s.health == "ok"), " serving"),
                Text(s.url, style="bold cyan"),
            )
            table.add_row("", Text(f"pid {s.pid} · up {duration(now - s.started_at)} · {s.health}"))
            for line in bound_lines(s.overload, self.shed_rates.get(s.pid)):
                table.add_row("", line)
        if len(servers) > 1:
            table.add_row("", Text(f"{len(servers)} worker processes", style="dim"))
        return table


class HealthPanel(StripPanel):
    """Redis and SQLite: reachable, how big, how busy; the breakers; or why the shop is shut."""

    TITLE = "Redis & SQLite"
    shop_error: reactive[str | None] = reactive(None)

    def watch_shop_error(self) -> None:
        self.redraw()

    def content_for(self, snap: Snapshot | None) -> RenderableType:
        if self.shop_error:
            return Text.assemble(
                dot(False), " shop unavailable: ", Text(self.shop_error, style="red")
            )
        if snap is None:
            return Text("opening the shop...", style="dim")
        table = grid()
        health, redis, sqlite = snap.health, snap.redis, snap.sqlite
        redis_ok = health.get("redis") == "ok" if health else None
        db_ok = health.get("database") == "ok" if health else None
        redis_line = _line_or_error(
            snap,
            "redis",
            lambda: (
                f"{redis.get('mode')} {redis.get('version')} · {redis.get('keys')} keys · "
                f"{redis.get('memory')} · {redis.get('clients')} clients · "
                f"ping {redis.get('ping_ms')} ms"
            ),
        )
        table.add_row(Text.assemble(dot(redis_ok), " Redis"), redis_line)
        sqlite_line = _line_or_error(
            snap,
            "sqlite",
            lambda: (
                f"{size(sqlite.get('file'))} + WAL {size(sqlite.get('wal'))} · "
                f"schema v{sqlite.get('schema')}"
            ),
        )
        table.add_row(Text.assemble(dot(db_ok), " SQLite"), sqlite_line)
        breakers = health.get("breakers") or {}
        if breakers:
            parts = [
                Text(f"{name} {state}", style="green" if state == "closed" else "red")
                for name, state in sorted(breakers.items())
            ]
            table.add_row("  Breakers", Text(" · ").join(parts))
        if health and health.get("status") != "ok":
            table.add_row(
                "", Text(f"redis: {health.get('redis')}, database: {health.get('database')}")
            )
        return table


class BusPanel(StripPanel):
    """The event bus: backlog, dead letters and deliveries, per consumer."""

    TITLE = "Event bus"
    SECTION = "bus"

    def figures(self, snap: Snapshot) -> RenderableType:
        bus = snap.bus
        dead = bus.get("deadLetters", 0)
        pending = bus.get("pending", 0)
        table = Table.grid(padding=(0, 1))
        table.add_column(style="bold")
        table.add_column(justify="right")
        table.add_column(justify="right")
        table.add_row("backlog", Text(f"{pending:,}", style="yellow" if pending else "green"), "")
        table.add_row("dead letters", Text(f"{dead:,}", style="bold red" if dead else "green"), "")
        table.add_row("delivered", f"{bus.get('delivered', 0):,}", "")
        for name, c in (bus.get("consumers") or {}).items():
            table.add_row(
                Text(f"  {name}", style="dim"),
                Text(f"{c['pending']} pending", style="yellow" if c["pending"] else "dim"),
                Text(f"{c['dead']} dead", style="red" if c["dead"] else "dim"),
            )
        parts: list[RenderableType] = [table]
        if dead:
            parts.append(Text("press d to replay them", style="dim"))
        return Group(*parts)


class PaymentsPanel(StripPanel):
    """How payments ended: a count and a share per outcome."""

    TITLE = "Payment outcomes"
    SECTION = "payments"

    def figures(self, snap: Snapshot) -> RenderableType:
        outcomes = snap.payments
        total = sum(outcomes.values())
        if not total:
            return Text("no payments yet", style="dim")
        table = Table.grid(padding=(0, 1))
        table.add_column()
        table.add_column(justify="right")
        table.add_column(justify="right", style="dim")
        names = [n for n in PAYMENT_ORDER if n in outcomes] + sorted(
            n for n in outcomes if n not in PAYMENT_ORDER
        )
        for name in names:
            count = outcomes[name]
            table.add_row(status(name), f"{count:,}", f"{count / total:.0%}")
        return table


class OrderRateChart(PlotextPlot):
    """Orders per second over the last minutes, with now, the last 5 s and the peak below."""

    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True)

    def __init__(self, *, id: str) -> None:  # noqa: A002
        super().__init__(id=id, classes="panel")
        self.border_title = "Orders per second"

    def watch_snapshot(self, snap: Snapshot | None) -> None:
        if snap is None:
            return
        rate = snap.rate
        plt = self.plt
        plt.clear_figure()
        if rate:
            n = len(rate)
            xs = list(range(-n + 1, 1))
            plt.plot(xs, rate, marker="braille", color="cyan")
            plt.xlim(-n + 1, 0)
            plt.ylim(0, max(1, max(rate)) * 1.1)
            plt.xticks([-n + 1, -(n * 2) // 3, -n // 3, 0], [f"-{n // 60}m", "", "", "now"])
            recent = rate[-5:]
            self.border_subtitle = (
                f"now {recent[-1]}/s · last 5 s {sum(recent) / len(recent):.1f}/s · "
                f"peak {max(rate)}/s · {n // 60} min"
            )
        self.refresh()
