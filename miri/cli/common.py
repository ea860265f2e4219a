"""What every command shares: settings from flags, running the shop, printing results."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from miri.config import Settings, SettingsError, load_settings
from miri.domain.errors import ShopError
from miri.domain.paging import Page
from miri.shop import Shop, open_shop

T = TypeVar("T")
SETTLE_TIMEOUT = 10.0  # seconds a command waits for the bus to deliver what it published
console = Console()
err_console = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="MIRI_DATA_DIR", help="Where the shop keeps its data."),
]
RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url", envvar="MIRI_REDIS_URL", help="A real Redis instead of the embedded one."
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


def settings_for(data_dir: Path | None = None, **flags: Any) -> Settings:
    try:
        return load_settings(data_dir=data_dir, **flags)
    except SettingsError as exc:
        err_console.print(f"[red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None


class _StderrHandler(logging.StreamHandler):
    """Warnings to whatever ``sys.stderr`` is at the time (a test runner swaps it per call)."""

    def __init__(self) -> None:
        super().__init__()
        self.setLevel(logging.WARNING)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def run(work: Callable[[Shop], Awaitable[T]], settings: Settings) -> T:
    """Open the shop, run ``work`` on it, close it; a refused operation exits 1 with a reason."""

    async def main() -> T:
        async with open_shop(settings) as shop:
            return await work(shop)

    if not logging.getLogger().handlers:
        logging.getLogger().addHandler(_StderrHandler())
    try:
        return asyncio.run(main())
    except ShopError as exc:
        refuse(exc)


async def settle(shop: Shop) -> None:
    """Deliver what the command published, so its effects (payments, refunds) are done when it
    returns, with or without a server on the data dir."""
    await shop.bus.drain(timeout=SETTLE_TIMEOUT)


def run_fast(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop where it is installed (a faster event loop), asyncio's own otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def refuse(exc: ShopError) -> NoReturn:
    """The shop said no: one line with its code and reason on stderr, exit code 1."""
    detail = f" {exc.data}" if exc.data else ""
    err_console.print(f"[red]{exc.code}:[/] {exc.message}{detail}")
    raise typer.Exit(1) from None


def choice(value: str | None, choices: Sequence[str], option: str) -> str | None:
    """``value`` upper-cased when it is one of ``choices``; anything else is a usage error (2)."""
    if value is None:
        return None
    if value.upper() not in choices:
        raise typer.BadParameter(f"one of {', '.join(choices)}", param_hint=option)
    return value.upper()


def table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    whole: Sequence[str] = (),
    optional: Sequence[str] = (),
) -> Table:
    """A table that fits the terminal without cutting a value of the ``whole`` columns.

    When it would not fit, the ``optional`` columns are left out, in that order, until it does;
    the caption names them (``--json`` has every field). Values are shown as they are, never
    read as markup (a schedule reads ``cron[hour='6']``); pass a ``Text`` to style one.
    """
    rows = [[_cell(v) for v in row] for row in rows]
    shown = list(columns)
    left_out: list[str] = []
    for dropped in [None, *optional]:
        if dropped is not None:
            shown.remove(dropped)
            left_out.append(dropped)
        t = Table(title=title, header_style="bold cyan")
        for col in shown:
            t.add_column(col, no_wrap=col in whole)
        for row in rows:
            t.add_row(*(row[columns.index(col)] for col in shown))
        unbounded = console.options.update_width(10_000)
        if console.measure(t, options=unbounded).minimum <= console.width:
            break
    if left_out:
        t.caption = f"{', '.join(left_out)}: left out to fit the terminal; --json has them"
    return t


def _cell(value: Any) -> Text:
    if isinstance(value, Text):
        return value
    return Text("" if value is None else str(value))


def fields(title: str, data: dict[str, Any]) -> Table:
    """One record as a field / value table."""
    return table(title, ["field", "value"], list(data.items()))


def flat(data: dict[str, Any]) -> dict[str, Any]:
    """Nested records (an item's ``buyer``) as ``buyer.userName`` fields, for a field table."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def page_json(page: Page[T], shape: Callable[[T], Any]) -> dict[str, Any]:
    """A page as every ``list --json`` prints it: the shaped items and how many there are."""
    return {"items": [shape(x) for x in page.items], "totalItems": page.total_items}


def emit(data: Any, as_json: bool, render: Callable[[Any], Any]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    else:
        console.print(render(data))
