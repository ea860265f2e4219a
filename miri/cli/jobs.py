"""``miri jobs ...``: the scheduled runs, listed or run now."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from miri.cli.common import DataDir, Json, RedisUrl, emit, run, settings_for, settle, table
from miri.shop import Shop

app = typer.Typer(help="List the scheduled jobs or run one now.", no_args_is_help=True)


@app.command("list")
def list_jobs(data_dir: DataDir = None, redis_url: RedisUrl = None, as_json: Json = False) -> None:
    """Every job with its schedule and next run.

    Example: miri jobs list --json
    """
    settings = settings_for(data_dir, redis_url=redis_url)

    async def work(shop: Shop) -> list[dict[str, Any]]:
        zone = ZoneInfo(settings.timezone)
        out = []
        for job in shop.jobs.list():
            nxt = job.next_run(shop.clock.now())
            out.append(
                {
                    "name": job.name,
                    "schedule": job.schedule,
                    "description": job.description,
                    "nextRun": nxt.astimezone(zone).isoformat(timespec="seconds") if nxt else None,
                }
            )
        return out

    emit(
        run(work, settings),
        as_json,
        lambda jobs: table(
            "Jobs",
            ["name", "schedule", "next run", "what it does"],
            [(j["name"], j["schedule"], j["nextRun"], j["description"]) for j in jobs],
        ),
    )


@app.command("run")
def run_job(
    name: Annotated[str, typer.Argument(help="shipping, returns, stock-sync or payment-expiry.")],
    as_of: Annotated[str | None, typer.Option(help="Run as if at this ISO time.")] = None,
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Run a job now, or as if at --as-of.

    Example: miri jobs run shipping --as-of 2026-11-25T06:00:00+09:00
    """
    settings = settings_for(data_dir, redis_url=redis_url)
    when = None
    if as_of:
        try:
            when = datetime.fromisoformat(as_of)
        except ValueError:
            raise typer.BadParameter("not an ISO-8601 time", param_hint="--as-of") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=ZoneInfo(settings.timezone))

    async def work(shop: Shop) -> Any:
        if name not in shop.jobs.names():
            raise typer.BadParameter(f"no job {name!r}; jobs: {', '.join(shop.jobs.names())}")
        result = await shop.jobs.run(name, when)
        await settle(shop)
        return {"job": name, "asOf": when.isoformat() if when else None, "result": result}

    emit(
        run(work, settings),
        as_json,
        lambda d: table(
            f"Ran {d['job']}",
            ["figure", "value"],
            d["result"].items() if isinstance(d["result"], dict) else [("result", d["result"])],
        ),
    )
