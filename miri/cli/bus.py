"""``miri bus ...``: the event bus backlog, its dead letters, and replaying them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.text import Text

from miri.cli.common import (
    DataDir,
    Json,
    RedisUrl,
    emit,
    err_console,
    refuse,
    run,
    settings_for,
)
from miri.cli.common import table as make_table
from miri.domain.errors import NotFound

app = typer.Typer(help="Inspect the event bus and replay dead letters.", no_args_is_help=True)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command("status")
def status(data_dir: DataDir = None, redis_url: RedisUrl = None, as_json: Json = False) -> None:
    """Pending, dead-lettered and delivered deliveries, per consumer.

    Example: miri bus status --data-dir ./shop-data
    """
    settings = settings_for(data_dir, redis_url=redis_url)
    data = run(lambda shop: shop.bus.views.status(), settings)

    def render(d: dict[str, Any]) -> Any:
        rows = [(name, c["pending"], c["dead"], c["done"]) for name, c in d["consumers"].items()]
        rows.append((Text("total", style="bold"), d["pending"], d["deadLetters"], d["delivered"]))
        return make_table("Event bus", ["consumer", "pending", "dead letters", "delivered"], rows)

    emit(data, as_json, render)


@app.command("dead-letters")
def dead_letters(
    limit: Annotated[int, typer.Option(min=1, max=10000, help="How many, newest first.")] = 100,
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Deliveries that failed every try, newest first, with their last error.

    Example: miri bus dead-letters --limit 20
    """
    settings = settings_for(data_dir, redis_url=redis_url)
    data = run(lambda shop: shop.bus.views.dead_letters(limit), settings)
    emit(
        data,
        as_json,
        lambda d: make_table(
            f"Dead letters ({len(d)})",
            ["event id", "type", "consumer", "attempts", "failed at", "last error"],
            [
                (
                    x["eventId"],
                    x["type"],
                    x["consumer"],
                    x["attempts"],
                    _when(x["failedAt"]),
                    x["lastError"],
                )
                for x in d
            ],
        ),
    )


@app.command("replay")
def replay(
    event_id: Annotated[str | None, typer.Argument(help="The dead letter's event id.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Put dead letters back in line (attempts reset); a running server delivers them.

    Example: miri bus replay 3f2a...  or  miri bus replay --all
    """
    if (event_id is None) == (not all_):
        err_console.print("[red]give one event id or --all[/]")
        raise typer.Exit(2)
    settings = settings_for(data_dir, redis_url=redis_url)
    count = run(lambda shop: shop.bus.views.replay(None if all_ else event_id), settings)
    if event_id is not None and count == 0:
        refuse(NotFound(f"no dead letter with event id {event_id}"))
    emit(
        {"replayed": count},
        as_json,
        lambda d: f"replayed {d['replayed']} deliveries; a running server delivers them now",
    )
