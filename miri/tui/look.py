"""How values look on the dashboard: statuses in their colours, durations, sizes, results."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

STATUS_STYLE = {
    "COMPLETED": "green",
    "PAYMENT_COMPLETED": "green",
    "DELIVERED": "green",
    "RETURN_COMPLETED": "cyan",
    "PAYMENT_PENDING": "yellow",
    "PAYMENT_SCREEN_ENTERED": "yellow",
    "PAYMENT_IN_PROGRESS": "yellow",
    "PENDING": "yellow",
    "IN_TRANSIT": "blue",
    "RETURN_IN_PROGRESS": "magenta",
    "CANCELED": "red",
    "PAYMENT_ABORTED": "red",
    "REFUNDED": "magenta",
}


def status(value: str | None, prefix: str = "") -> Text:
    """A status in its colour; ``prefix`` (PAYMENT_, RETURN_) is left out to save width."""
    if value is None:
        return Text("-", style="dim")
    shown = value[len(prefix) :] if prefix and value.startswith(prefix) else value
    return Text(shown, style=STATUS_STYLE.get(value, ""))


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def result(value: Any) -> str:
    """A job's result in one line: ``inTransit 1, delivered 0``."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def grid() -> Table:
    """Two columns, a bold label and its figures: the status strip's layout."""
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    return table


def dot(ok: bool | None) -> Text:
    if ok is None:
        return Text("●", style="dim")
    return Text("●", style="green" if ok else "red")
