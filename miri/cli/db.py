"""``miri db``: the schema version, migrations, and moving an embedded shop to PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from miri.cli.common import DataDir, Json, RedisUrl, console, emit, err_console, settings_for, table
from miri.config import Settings
from miri.infra import pg_schema, schema
from miri.infra.database import is_postgres
from miri.infra.sqlite import connect, migrate

app = typer.Typer(help="The shop's database: version, migrations, moving to PostgreSQL.")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="MIRI_DATABASE_URL",
        help="postgresql://user:pass@host/db; unset: the SQLite file in the data dir.",
    ),
]
# Every table, parents before children, so foreign keys hold while rows arrive.
TABLES = (
    "users",
    "email_verifications",
    "password_resets",
    "goods",
    "wishlist",
    "orders",
    "order_items",
    "shipping",
    "idempotency_keys",
    "payments",
    "checkout_sessions",
    "provider_checkouts",
    "provider_refunds",
    "outbox",
    "deliveries",
    "handled_events",
    "mail_log",
)
# Tables whose ids come from an identity: after a copy it must continue past the copied ids.
ID_TABLES = ("users", "goods", "wishlist", "orders", "order_items", "payments", "outbox")
COPY_BATCH = 5000


def _status(settings: Settings) -> dict[str, Any]:
    """Where the shop's data lives, its schema version, and what is still to apply."""
    if settings.database_url:
        from miri.infra.postgres import redact, schema_version

        version = schema_version(settings.database_url)
        latest = len(pg_schema.MIGRATIONS)
        where = {"engine": "postgresql", "database": redact(settings.database_url)}
    else:
        latest = len(schema.MIGRATIONS)
        version = 0
        if settings.db_path.exists():
            conn = connect(settings.db_path, readonly=True)
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            finally:
                conn.close()
        where = {"engine": "sqlite", "database": str(settings.db_path)}
    return {
        **where,
        "version": version,
        "latest": latest,
        "pending": list(range(version + 1, latest + 1)),
    }


@app.command("status")
def status(
    data_dir: DataDir = None, database_url: DatabaseUrl = None, as_json: Json = False
) -> None:
    """The schema version of the shop's database and the migrations not applied yet.

    Example: miri db status --database-url postgresql://miri@db.internal/miri
    """
    settings = settings_for(data_dir, database_url=database_url)
    data = _status(settings)
    emit(
        data,
        as_json,
        lambda d: table(
            "Database",
            ["engine", "database", "version", "latest", "pending"],
            [
                (
                    d["engine"],
                    d["database"],
                    d["version"],
                    d["latest"],
                    ", ".join(map(str, d["pending"])) or "none",
                )
            ],
        ),
    )


@app.command("migrate")
def migrate_command(
    data_dir: DataDir = None, database_url: DatabaseUrl = None, as_json: Json = False
) -> None:
    """Apply the migrations not applied yet (``miri serve`` also does this when it starts).

    Example: miri db migrate --database-url postgresql://miri@db.internal/miri
    """
    settings = settings_for(data_dir, database_url=database_url)
    before = _status(settings)
    if settings.database_url:
        from miri.infra.postgres import migrate as pg_migrate

        version = pg_migrate(settings.database_url)
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        conn = connect(settings.db_path)
        try:
            version = migrate(conn)
        finally:
            conn.close()
    data = {"engine": before["engine"], "from": before["version"], "to": version}
    emit(
        data,
        as_json,
        lambda d: console.print(f"{d['engine']}: schema version {d['from']} -> {d['to']}"),
    )


def _sqlite_columns(conn: sqlite3.Connection, name: str) -> list[str]:
    return [r["name"] for r in conn.execute(f"PRAGMA table_info({name})").fetchall()]


def copy_to_postgres(settings: Settings, url: str, *, progress: bool = True) -> dict[str, int]:
    """Every table of the data dir's SQLite file into an empty PostgreSQL database.

    Returns the rows copied per table; raises ``CopyRefused`` when the target already holds a
    shop, ``CopyMismatch`` when a table's row count differs after the copy.
    """
    import psycopg

    from miri.infra.postgres import migrate as pg_migrate
    from miri.infra.postgres import schema_version

    if not settings.db_path.exists():
        raise CopyRefused(f"no shop to copy: {settings.db_path} does not exist")
    if schema_version(url) > 0:
        raise CopyRefused(
            "the target database already holds a shop (it has Miri's tables); "
            "copy into an empty database"
        )
    source = connect(settings.db_path, readonly=True)
    counts = {t: source.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
    pg_migrate(url)
    copied: dict[str, int] = {}
    with (
        psycopg.connect(url) as target,
        Progress(
            TextColumn("{task.description:<20}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            disable=not progress,
        ) as bar,
    ):
        with target.transaction():
            for name in TABLES:
                columns = _sqlite_columns(source, name)
                task = bar.add_task(name, total=counts[name])
                cols = ", ".join(columns)
                with target.cursor().copy(f"COPY {name} ({cols}) FROM STDIN") as copy:
                    rows = source.execute(f"SELECT {cols} FROM {name} ORDER BY rowid")
                    while chunk := rows.fetchmany(COPY_BATCH):
                        for row in chunk:
                            copy.write_row(tuple(row))
                        bar.advance(task, len(chunk))
                for id_table in (name,) if name in ID_TABLES else ():
                    target.execute(
                        f"SELECT setval(pg_get_serial_sequence('{id_table}', 'id'),"
                        f" COALESCE((SELECT MAX(id) FROM {id_table}), 0) + 1, false)"
                    )
        for name in TABLES:
            copied[name] = target.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
    source.close()
    wrong = {t: (counts[t], copied[t]) for t in TABLES if counts[t] != copied[t]}
    if wrong:
        raise CopyMismatch(f"row counts differ after the copy (sqlite, postgresql): {wrong}")
    return copied


class CopyRefused(Exception):
    """The copy cannot start (no source, or the target already holds a shop)."""


class CopyMismatch(Exception):
    """The copy finished but a table's row count differs."""


@app.command("copy")
def copy_command(
    to: Annotated[str, typer.Option("--to", help="The empty PostgreSQL database to fill.")],
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Move an embedded shop (the SQLite file in the data dir) into PostgreSQL.

    Stop every `miri serve` on the data dir first. Every table is copied in one transaction,
    ids kept, then row counts are compared and the stock check (as `miri doctor`) runs
    against the new database. Afterwards set MIRI_DATABASE_URL to the target.

    Example: miri db copy --data-dir ./shop-data --to postgresql://miri@db.internal/miri
    """
    if not is_postgres(to):
        raise typer.BadParameter("must be a postgresql:// URL", param_hint="--to")
    settings = settings_for(data_dir, redis_url=redis_url)
    try:
        copied = copy_to_postgres(settings, to, progress=not as_json)
    except (CopyRefused, CopyMismatch) as exc:
        err_console.print(f"[red]refused:[/] {exc}")
        raise typer.Exit(1) from None
    report = asyncio.run(_check_stock(settings.replace(database_url=to)))
    data = {
        "rows": copied,
        "stockCheck": {
            "ok": report.ok,
            "checked": report.checked,
            "mismatches": len(report.mismatches),
        },
    }
    emit(
        data,
        as_json,
        lambda d: Group(
            table("Copied rows", ["table", "rows"], list(d["rows"].items())),
            Text(
                f"stock check on PostgreSQL: {d['stockCheck']['checked']} goods,"
                f" {d['stockCheck']['mismatches']} mismatches"
            ),
        ),
    )
    if not report.ok:
        raise typer.Exit(1)


async def _check_stock(settings: Settings) -> Any:
    from miri.shop import open_shop

    async with open_shop(settings) as shop:
        return await shop.goods.check_stock(repair=False)
