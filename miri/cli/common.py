"""What every command shares: settings from flags, running the shop, printing results."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from miri.config import Settings, SettingsError, load_settings
from miri.domain.errors import ShopError
from miri.shop import Shop, open_shop

T = TypeVar("T")
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
        detail = f" {exc.data}" if exc.data else ""
        err_console.print(f"[red]{exc.code}:[/] {exc.message}{detail}")
        raise typer.Exit(1) from None


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, header_style="bold cyan")
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


def emit(data: Any, as_json: bool, render: Callable[[Any], Any]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    else:
        console.print(render(data))
