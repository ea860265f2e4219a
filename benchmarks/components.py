"""Component benchmarks for the order path, each against its ceiling measured in the same run.

    python benchmarks/components.py [--orders 20000]

- SQLite: the group-commit writer storing orders (order, item, shipping, outbox row, delivery
  row: what one accepted order writes) against plain sqlite3 in one thread, batched the same
  way, with and without a SAVEPOINT per order (the writer's former way to undo one job).
- Tokens: checking an access token with PyJWT against the service's own HS256 fast path.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import jwt
from rich.console import Console
from rich.table import Table

from miri.domain.events import OrderedItem, OrderPlaced
from miri.infra.clock import SystemClock
from miri.infra.sqlite import Database, connect, migrate
from miri.infra.tokens import TokenService

SEED = [
    "INSERT INTO users (email_index, email_enc, name_enc, phone_enc, address_enc, password_hash,"
    " role, created_at, updated_at) VALUES (x'00', x'00', x'00', x'00', x'00', 'h', 'USER', 0, 0)",
    "INSERT INTO goods (seller_id, name, description, price, category, stock_total,"
    " stock_synced, created_at, updated_at) VALUES (1, 'a', 'b', 1, 'ETC', 100, 100, 0, 0)",
]


def store_order(conn: sqlite3.Connection) -> None:
    """What one accepted order writes (see orders.placing.Placing._place_now)."""
    order_id = conn.execute(
        "INSERT INTO orders (user_id, total_price, address_enc, created_at)"
        " VALUES (1, 100, x'0011', 1.0)"
    ).lastrowid
    detail_id = conn.execute(
        "INSERT INTO order_items (order_id, user_id, goods_id, quantity, unit_price, status,"
        " created_at, updated_at) VALUES (?, 1, 1, 1, 100, 'PAYMENT_PENDING', 1.0, 1.0)",
        (order_id,),
    ).lastrowid
    conn.execute(
        "INSERT INTO shipping (order_item_id, status, status_at) VALUES (?, 'PENDING', 1.0)",
        (detail_id,),
    )
    event = OrderPlaced(
        order_id=order_id,
        user_id=1,
        items=[OrderedItem(order_item_id=detail_id, goods_id=1, quantity=1, unit_price=100)],
    )
    conn.execute(
        "INSERT INTO outbox (event_id, type, payload, created_at) VALUES (?, ?, ?, 1.0)",
        (event.event_id, event.name, event.to_json()),
    )
    conn.execute(
        "INSERT INTO deliveries (event_id, consumer, status, attempts, next_attempt_at,"
        " updated_at) VALUES (?, 'payments', 'PENDING', 0, 1.0, 1.0)",
        (event.event_id,),
    )


def fresh(folder: Path, name: str) -> Path:
    path = folder / name
    conn = connect(path)
    migrate(conn)
    for sql in SEED:
        conn.execute(sql)
    conn.close()
    return path


def plain(path: Path, orders: int, batch: int, savepoint: bool) -> float:
    conn = connect(path)
    started = time.perf_counter()
    for n in range(orders):
        if n % batch == 0:
            conn.execute("BEGIN IMMEDIATE")
        if savepoint:
            conn.execute("SAVEPOINT job")
        store_order(conn)
        if savepoint:
            conn.execute("RELEASE job")
        if n % batch == batch - 1 or n == orders - 1:
            conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return orders / elapsed


async def writer(path: Path, orders: int) -> tuple[float, float]:
    db = Database(path)
    started = time.perf_counter()
    await asyncio.gather(*(db.write(store_order) for _ in range(orders)))
    elapsed = time.perf_counter() - started
    per_batch = db.jobs / max(db.batches, 1)
    await db.close()
    return orders / elapsed, per_batch


def tokens(count: int) -> tuple[float, float]:
    service = TokenService("k" * 43, 3600, SystemClock(), cache_size=0)
    token, _ = service.issue(1, "USER")
    options = {"require": ["sub", "exp", "jti", "iat"], "verify_exp": False, "verify_iat": False}
    started = time.perf_counter()
    for _ in range(count):
        jwt.decode(token, "k" * 43, algorithms=["HS256"], options=options)
    slow = (time.perf_counter() - started) / count
    started = time.perf_counter()
    for _ in range(count):
        service._cache.clear()
        service.decode(token)
    fast = (time.perf_counter() - started) / count
    return slow * 1e6, fast * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="miri-components-"))
    try:
        ceiling = plain(fresh(folder, "a.sqlite3"), args.orders, 500, savepoint=False)
        with_savepoint = plain(fresh(folder, "b.sqlite3"), args.orders, 500, savepoint=True)
        grouped, per_batch = asyncio.run(writer(fresh(folder, "c.sqlite3"), args.orders))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    slow_us, fast_us = tokens(20_000)

    table = Table(title=f"order path components ({args.orders:,} orders)")
    for column in ("what", "figure", "ratio to ceiling"):
        table.add_column(column)
    table.add_row(
        "sqlite3, one thread, 500 orders per commit (ceiling)", f"{ceiling:,.0f} orders/s", "1.00"
    )
    table.add_row(
        "  … with a SAVEPOINT per order",
        f"{with_savepoint:,.0f} orders/s",
        f"{with_savepoint / ceiling:.2f}",
    )
    table.add_row(
        f"group-commit writer from asyncio ({per_batch:.0f} jobs per commit)",
        f"{grouped:,.0f} orders/s",
        f"{grouped / ceiling:.2f}",
    )
    table.add_row(
        "token check: own-token fast path, HMAC + orjson (ceiling)", f"{fast_us:.1f} µs", "1.00"
    )
    table.add_row(
        "token check: PyJWT decode (the former path)",
        f"{slow_us:.1f} µs",
        f"{slow_us / fast_us:.2f}× the time",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
