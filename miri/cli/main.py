"""The ``miri`` command."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from miri import __version__
from miri.cli import (
    bench,
    bus,
    dashboard,
    db,
    doctor,
    goods,
    jobs,
    keys,
    orders,
    queue,
    sales,
    users,
)
from miri.cli.common import (
    DataDir,
    Json,
    RedisUrl,
    console,
    emit,
    run,
    run_fast,
    settings_for,
)

app = typer.Typer(
    name="miri",
    help="Miri: a pre-order and flash-sale shop. Start with `miri serve`.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
app.add_typer(users.app, name="user")
app.add_typer(bus.app, name="bus")
app.add_typer(bench.app, name="bench")
app.command("token")(users.token)
app.add_typer(goods.app, name="goods")
app.add_typer(orders.app, name="order")
app.add_typer(queue.app, name="queue")
app.add_typer(sales.app, name="sales")
app.add_typer(jobs.app, name="jobs")
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.command("doctor")(doctor.doctor)
app.command("dashboard")(dashboard.dashboard)


def _version(value: bool) -> None:
    if value:
        console.print(f"miri {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Miri: a pre-order and flash-sale shop."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (0 = any free port).")] = None,
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    database_url: db.DatabaseUrl = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = True,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="Server processes sharing the port.")
    ] = None,
    max_in_flight: Annotated[
        str | None,
        typer.Option(
            help="Requests in flight per worker before 503 + Retry-After:"
            " auto (adapts to latency), a number, or off."
        ),
    ] = None,
    reuse_port: Annotated[bool, typer.Option(hidden=True)] = False,
    redis_replica: Annotated[
        bool,
        typer.Option(
            "--redis-replica",
            help="Start an embedded replica of the embedded Redis and read listing stock from it.",
        ),
    ] = False,
) -> None:
    """Serve the HTTP API until SIGINT or SIGTERM.

    Example: miri serve --port 8080 --data-dir ./shop-data --workers 2
    """
    from miri.infra.postgres import redact
    from miri.server.presence import announce
    from miri.server.runner import serve as run_server
    from miri.server.workers import supervise

    settings = settings_for(
        data_dir,
        host=host,
        port=port,
        redis_url=redis_url,
        database_url=database_url,
        workers=workers,
        redis_replica=redis_replica or None,
        max_in_flight=max_in_flight,
    )
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run is noise

    def ready(url: str) -> None:
        console.print(f"[bold green]Miri {__version__}[/] listening on [bold]{url}[/]")
        console.print(f"data: {settings.data_dir}")
        if settings.database_url:
            console.print(f"database: {redact(settings.database_url)}", soft_wrap=True)
        redis = settings.redis_url or f"embedded ({settings.redis_dir})"
        console.print(f"redis: {redis}", soft_wrap=True)

    if settings.workers > 1 and not reuse_port:
        code = supervise(
            settings, settings.workers, access_log=access_log, ready=ready, announce=announce
        )
        raise typer.Exit(code)
    try:
        run_fast(run_server(settings, access_log=access_log, ready=ready, reuse_port=reuse_port))
    except OSError as exc:
        console.print(f"[red]cannot serve:[/] {exc}")
        raise typer.Exit(1) from None


@app.command()
def init(data_dir: DataDir = None, redis_url: RedisUrl = None, as_json: Json = False) -> None:
    """Create the data dir, its keys, the database and the embedded Redis, then exit.

    Example: miri init --data-dir ./shop-data
    """
    settings = settings_for(data_dir, redis_url=redis_url)
    report = run(lambda shop: shop.health(), settings)
    if as_json:
        emit({"dataDir": str(settings.data_dir), **report}, True, str)
        return
    console.print(f"data dir ready: {settings.data_dir}")
    console.print(f"database: {report['database']}, redis: {report['redis']}")


if __name__ == "__main__":
    app()
